from __future__ import annotations

from bandsy_operator.builders.environment import build_environment_objects, rbac_subject
from bandsy_operator.builders.meta import Manifest
from bandsy_operator.models import Environment
from factories import environment


def test_minimal_environment() -> None:
    objects = build_environment_objects(environment("develop"))
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    # Gateway mode (the default) without a Gateway: nothing comes in from outside.
    assert names == [
        ("Namespace", "develop"),
        ("NetworkPolicy", "bandsy-default-deny"),
        ("NetworkPolicy", "bandsy-allow-dns"),
    ]
    namespace = objects[0]
    assert "namespace" not in namespace["metadata"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert namespace["metadata"]["labels"]["bandsy.app/environment"] == "develop"
    deny = objects[1]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def entry_policy(env: Environment) -> Manifest:
    objects = {o["metadata"]["name"]: o for o in build_environment_objects(env)}
    return objects["bandsy-allow-ingress-controller"]


def test_external_services_are_let_in_from_the_gateways_namespace() -> None:
    gateway = environment("develop", gateway={"name": "shared", "namespace": "gateway-system"})
    policy = entry_policy(gateway)
    assert policy["spec"] == {
        "podSelector": {"matchLabels": {"bandsy.app/external": "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}
                        }
                    }
                ]
            }
        ],
    }


def test_in_ingress_mode_from_the_ingress_controllers_namespace() -> None:
    # The Gateway named too (a migration half done): the mode decides.
    env = environment(
        "develop",
        ingress={"mode": "Ingress"},
        gateway={"name": "shared", "namespace": "gateway-system"},
    )
    controller = entry_policy(env)["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
    assert controller == {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}


def test_full_environment() -> None:
    env = environment(
        "production",
        namespace="prod",
        podSecurity="restricted",
        networkPolicy={"allowFromNamespaces": ["monitoring"]},
        access={"viewers": ["devs"], "editors": ["devops"]},
        quota={"requests.cpu": "8", "pods": 60},
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in build_environment_objects(env)}
    assert (
        objects[("Namespace", "prod")]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )
    assert objects[("ResourceQuota", "bandsy-quota")]["spec"]["hard"] == {
        "pods": "60",
        "requests.cpu": "8",
    }
    viewers = objects[("RoleBinding", "bandsy-viewers")]
    assert viewers["roleRef"]["name"] == "view"
    assert viewers["subjects"][0]["name"] == "devs"
    assert objects[("RoleBinding", "bandsy-editors")]["roleRef"]["name"] == "edit"
    allow = objects[("NetworkPolicy", "bandsy-allow-from-namespaces")]["spec"]["ingress"]
    assert allow[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    for obj in objects.values():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "prod"
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "BandsyEnvironment"


def test_container_defaults_become_a_limit_range() -> None:
    env = environment(
        "production",
        quota={"requests.cpu": "8"},
        defaults={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in build_environment_objects(env)}
    limit_range = objects[("LimitRange", "bandsy-defaults")]
    assert limit_range["metadata"]["namespace"] == "production"
    assert limit_range["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "bandsy-operator"
    assert limit_range["metadata"]["ownerReferences"][0]["kind"] == "BandsyEnvironment"
    assert limit_range["spec"] == {
        "limits": [
            {
                "type": "Container",
                "default": {"memory": "256Mi"},
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            }
        ]
    }
    requests_only = environment("develop", defaults={"requests": {"cpu": 1}})
    (limit_range,) = [
        o for o in build_environment_objects(requests_only) if o["kind"] == "LimitRange"
    ]
    assert limit_range["spec"]["limits"] == [{"type": "Container", "defaultRequest": {"cpu": "1"}}]
    # A default limit without a default request is the request too (as the API server has it).
    limits_only = environment("develop", defaults={"limits": {"memory": "1Gi", "cpu": "1"}})
    (limit_range,) = [
        o for o in build_environment_objects(limits_only) if o["kind"] == "LimitRange"
    ]
    assert limit_range["spec"]["limits"][0]["defaultRequest"] == {"cpu": "1", "memory": "1Gi"}
    for without in (environment("develop"), environment("develop", defaults={"limits": {}})):
        assert "LimitRange" not in {o["kind"] for o in build_environment_objects(without)}


def test_the_operator_may_list_secrets_in_the_environment_namespace_by_its_own_binding() -> None:
    account = rbac_subject("system:serviceaccount:bandsy-system:bandsy-operator")
    assert account == {
        "kind": "ServiceAccount",
        "name": "bandsy-operator",
        "namespace": "bandsy-system",
    }
    # A local run, as a person or a certificate's user: bound as that user.
    for username in ("kubernetes-admin", "system:serviceaccount:", "system:kube-controller"):
        assert rbac_subject(username) == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "User",
            "name": username,
        }
    env = environment("preprod")
    objects = {
        (o["kind"], o["metadata"]["name"]): o for o in build_environment_objects(env, None, account)
    }
    binding = objects[("RoleBinding", "bandsy-operator-secrets")]
    assert binding["metadata"]["namespace"] == "preprod"
    assert binding["metadata"]["ownerReferences"][0]["kind"] == "BandsyEnvironment"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "bandsy-operator-secret-lister",
    }
    assert binding["subjects"] == [account]
    # Unknown who it is: no binding (its Secrets are read by name).
    assert "RoleBinding" not in {o["kind"] for o in build_environment_objects(env)}
