from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

import pytest
from pydantic import ValidationError

from bandsy_operator.backends import scram
from bandsy_operator.backends.scram import scram_sha256_verifier, verifier_matches
from bandsy_operator.builders.inputs import DatabasePeer, ServiceInputs
from bandsy_operator.builders.meta import content_hash
from bandsy_operator.builders.migration import build_migration_job
from bandsy_operator.builders.service import (
    build_service_objects,
    config_hash,
    missing_provided_secrets,
)
from bandsy_operator.constants import (
    APPLIED_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    EXTERNAL_LABEL,
    MANAGED_BY_LABEL,
)
from bandsy_operator.models import EgressTarget, Migrations
from bandsy_operator.promotion import Image
from bandsy_operator.reconcile.databases import DatabaseResult
from bandsy_operator.reconcile.service import service_inputs
from bandsy_operator.world import World
from factories import environment, service, service_body, tags

REPOSITORY = "ghcr.io/feinwaru/web"
HASH_KEY = b"k" * 32


def generator(length: int) -> str:
    return "g" * length


def by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def web_inputs(**overrides: Any) -> ServiceInputs:
    web = service(
        "web",
        {
            "develop": {"image": {"tag": "develop-3f2a9c1"}, "config": {"FEATURE_X": "true"}},
            "production": {"image": {"tag": "release-1.7.2"}, "replicas": 3},
        },
        port=8080,
        external=True,
        healthCheck={"path": "/healthz"},
        config={"FEATURE_X": "false", "LOG_LEVEL": "debug"},
        secrets=[{"name": "SESSION_KEY", "generate": {"length": 48}}, {"name": "STRIPE_API_KEY"}],
        dependsOn=["api"],
    )
    env = environment(
        overrides.pop("env_name", "develop"),
        config={"LOG_LEVEL": "info", "REGION": "eu"},
        ingress={
            "mode": "Ingress",
            "domain": "bandsy.app",
            "className": "nginx",
            "clusterIssuer": "letsencrypt",
        },
    )
    defaults: dict[str, Any] = {
        "service": web,
        "env": env,
        "image": Image(web.spec.image.repository, web.spec.environments[env.name].image.tag),
        "hash_key": HASH_KEY,
        "dependency_ports": {"api": 9000},
    }
    return ServiceInputs(**{**defaults, **overrides})


def test_config_is_layered_and_injected() -> None:
    objects = by_kind(build_service_objects(web_inputs(), generator))
    data = objects[("ConfigMap", "web-config")]["data"]
    assert data == {
        "API_URL": "http://api.develop.svc.cluster.local:9000",
        "BANDSY_ENVIRONMENT": "develop",
        "BANDSY_SERVICE": "web",
        "FEATURE_X": "true",
        "LOG_LEVEL": "debug",
        "PUBLIC_URL": "https://develop.web.bandsy.app",
        "REGION": "eu",
    }


def test_every_object_is_labelled_owned_and_hashed() -> None:
    for obj in build_service_objects(web_inputs(), generator):
        meta = obj["metadata"]
        assert meta["namespace"] == "develop"
        assert meta["labels"][MANAGED_BY_LABEL] == "bandsy-operator"
        assert meta["labels"]["bandsy.app/service"] == "web"
        assert meta["labels"]["bandsy.app/environment"] == "develop"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "bandsy.app/v1alpha1",
                "kind": "BandsyService",
                "name": "web",
                "uid": "uid-svc-web",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ]
        assert "namespace" not in meta["ownerReferences"][0]
        assert len(meta["annotations"][APPLIED_HASH_ANNOTATION]) == 16


def test_generated_secrets_are_kept_and_provided_ones_never_overwritten() -> None:
    fresh = by_kind(build_service_objects(web_inputs(), generator))
    data = fresh[("Secret", "web-secrets")]["data"]
    assert base64.b64decode(data["SESSION_KEY"]).decode() == "g" * 48
    assert data["STRIPE_API_KEY"] == ""

    kept = by_kind(
        build_service_objects(
            web_inputs(existing_secrets={"SESSION_KEY": "old", "STRIPE_API_KEY": "sk_live"}),
            generator,
        )
    )
    data = kept[("Secret", "web-secrets")]["data"]
    assert base64.b64decode(data["SESSION_KEY"]).decode() == "old"
    assert "STRIPE_API_KEY" not in data  # a person's value is not ours to apply


def test_filling_in_a_provided_secret_rolls_the_deployment() -> None:
    def template_hash(inputs: ServiceInputs) -> str:
        objects = by_kind(build_service_objects(inputs, generator))
        template = objects[("Deployment", "web")]["spec"]["template"]
        return str(template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    before = template_hash(web_inputs(existing_secrets={"SESSION_KEY": "s"}))
    after = template_hash(web_inputs(existing_secrets={"SESSION_KEY": "s", "STRIPE_API_KEY": "x"}))
    assert before != after
    assert before == template_hash(web_inputs(existing_secrets={"SESSION_KEY": "s"}))


def test_the_config_hash_is_keyed() -> None:
    """Anyone who may view the Deployment reads the hash: without the key it must not let
    them test guesses of a secret value (a plain hash of the values would)."""
    inputs = web_inputs(existing_secrets={"SESSION_KEY": "s", "STRIPE_API_KEY": "sk"})
    objects = by_kind(build_service_objects(inputs, generator))
    template = objects[("Deployment", "web")]["spec"]["template"]
    annotation = template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    values = {"SESSION_KEY": "s", "STRIPE_API_KEY": "sk"}
    unkeyed = content_hash([objects[("ConfigMap", "web-config")]["data"], values])
    assert annotation != unkeyed
    assert annotation == config_hash(HASH_KEY, objects[("ConfigMap", "web-config")], values, [])
    other_key = dataclasses.replace(inputs, hash_key=b"another key")
    other = by_kind(build_service_objects(other_key, generator))[("Deployment", "web")]
    assert other["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != (
        annotation
    )


def test_network_policy_states_no_empty_rule_list() -> None:
    """The API server stores an empty rule list as absent: the built policy says the same,
    so a server-side diff of a rendered policy is empty."""
    policy = by_kind(build_service_objects(web_inputs(dependency_ports={}), generator))
    spec = policy[("NetworkPolicy", "web")]["spec"]
    assert "ingress" not in spec
    assert "egress" not in spec
    assert spec["policyTypes"] == ["Ingress", "Egress"]


def test_missing_provided_secrets() -> None:
    assert missing_provided_secrets(web_inputs()) == ["STRIPE_API_KEY"]
    filled = web_inputs(existing_secrets={"STRIPE_API_KEY": "x"})
    assert missing_provided_secrets(filled) == []


def test_deployment() -> None:
    deployment = by_kind(build_service_objects(web_inputs(), generator))[("Deployment", "web")]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "affinity" not in pod
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/feinwaru/web:develop-3f2a9c1"
    assert container["envFrom"] == [
        {"configMapRef": {"name": "web-config"}},
        {"secretRef": {"name": "web-secrets"}},
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["template"]["metadata"]["labels"][EXTERNAL_LABEL] == "true"


def test_production_spreads_pods_and_uses_its_replicas() -> None:
    inputs = web_inputs(env_name="production", image=Image(REPOSITORY, "release-1.7.2"))
    deployment = by_kind(build_service_objects(inputs, generator))[("Deployment", "web")]
    assert deployment["spec"]["replicas"] == 3
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_two_replicas_or_more_get_a_disruption_budget() -> None:
    inputs = web_inputs(env_name="production", image=Image(REPOSITORY, "release-1.7.2"))
    budget = by_kind(build_service_objects(inputs, generator))[("PodDisruptionBudget", "web")]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "web",
                "bandsy.app/environment": "production",
            }
        },
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    assert budget["metadata"]["ownerReferences"][0]["kind"] == "BandsyService"
    # One replica (develop): a budget would block every drain.
    kinds = {kind for kind, _ in by_kind(build_service_objects(web_inputs(), generator))}
    assert "PodDisruptionBudget" not in kinds


def test_ingress_only_when_external_and_allowed_in_ingress_mode() -> None:
    objects = by_kind(build_service_objects(web_inputs(), generator))
    ingress = objects[("Ingress", "web")]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["develop.web.bandsy.app"], "secretName": "web-tls"}
    ]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"

    closed = environment("develop", ingress={"mode": "Ingress", "allowedServices": ["api"]})
    objects = by_kind(build_service_objects(web_inputs(env=closed), generator))
    assert ("Ingress", "web") not in objects
    assert "PUBLIC_URL" not in objects[("ConfigMap", "web-config")]["data"]


def test_worker_without_port_has_no_service_and_no_probes() -> None:
    worker = service("worker", tags(develop="develop-1"))
    inputs = ServiceInputs(
        service=worker,
        env=environment("develop"),
        image=Image("ghcr.io/feinwaru/worker", "develop-1"),
        hash_key=HASH_KEY,
    )
    objects = by_kind(build_service_objects(inputs, generator))
    assert set(objects) == {
        ("ConfigMap", "worker-config"),
        ("Secret", "worker-secrets"),
        ("Deployment", "worker"),
        ("NetworkPolicy", "worker"),
    }
    (container,) = objects[("Deployment", "worker")]["spec"]["template"]["spec"]["containers"]
    assert "ports" not in container
    assert "readinessProbe" not in container


def test_network_policy_follows_dependencies_and_databases() -> None:
    inputs = web_inputs(
        dependents=["admin"],
        database_peers=[
            DatabasePeer(5432, EgressTarget(namespace="default", pod_selector={"app": "spilo"})),
            DatabasePeer(6379, EgressTarget(cidr="10.0.0.0/24")),
        ],
    )
    policy = by_kind(build_service_objects(inputs, generator))[("NetworkPolicy", "web")]["spec"]
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": "admin",
                            "bandsy.app/environment": "develop",
                        }
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8080}],
        }
    ]
    assert policy["egress"][0]["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert policy["egress"][1]["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}},
            "podSelector": {"matchLabels": {"app": "spilo"}},
        }
    ]
    assert policy["egress"][2]["to"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]


@pytest.mark.parametrize("field", ["config", "replicas"])
def test_any_change_changes_the_applied_hash(field: str) -> None:
    base = by_kind(build_service_objects(web_inputs(), generator))
    web = web_inputs().service
    changed_spec = web.spec.model_copy(
        update={"config": {"NEW": "1"}} if field == "config" else {"replicas": 2}
    )
    changed = by_kind(
        build_service_objects(
            web_inputs(service=web.model_copy(update={"spec": changed_spec})), generator
        )
    )
    kind = ("ConfigMap", "web-config") if field == "config" else ("Deployment", "web")
    annotations = [
        obj[kind]["metadata"]["annotations"][APPLIED_HASH_ANNOTATION] for obj in (base, changed)
    ]
    assert annotations[0] != annotations[1]


def test_scram_verifier_matches_only_its_password() -> None:
    verifier = scram_sha256_verifier("correct-horse")
    assert verifier_matches("correct-horse", verifier)
    assert not verifier_matches("wrong-horse", verifier)
    assert not verifier_matches("correct-horse", "md5abcdef")
    assert not verifier_matches("correct-horse", "SCRAM-SHA-256$4096:!!$x:y")
    # Remembered answers stay right: asked again, and after the verifier changes by hand.
    assert verifier_matches("correct-horse", verifier)
    assert not verifier_matches("wrong-horse", verifier)
    changed = scram_sha256_verifier("changed-by-hand")
    assert not verifier_matches("correct-horse", changed)
    assert verifier_matches("changed-by-hand", changed)


def test_a_verifier_made_here_is_known_to_match_without_the_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The role just created with it is checked by the next reconcile: no PBKDF2 again."""
    verifier = scram_sha256_verifier("fresh-horse")

    def recomputed(password: str, verifier: str) -> bool:
        raise AssertionError("PBKDF2 rounds run again for a verifier made here")

    monkeypatch.setattr(scram, "_compute_match", recomputed)
    assert verifier_matches("fresh-horse", verifier)
    with pytest.raises(AssertionError, match="rounds run again"):
        verifier_matches("other-horse", verifier)


def test_service_inputs_skip_a_dependency_deleted_since_validation() -> None:
    web = service("web", tags(develop="v1"), dependsOn=["api", "db"], port=8080)
    world = World()
    body = service_body("db", tags(develop="v1"), port=5432)
    world.observe_service({**body, "metadata": {**body["metadata"], "uid": "u", "generation": 1}})
    inputs = service_inputs(
        web, environment("develop"), world, None, DatabaseResult(), Image(REPOSITORY, "v1"), b"k"
    )  # "api" is gone
    assert inputs.dependency_ports == {"db": 5432}


def autoscaled_inputs(env_name: str = "develop", **entry: Any) -> ServiceInputs:
    web = service(
        "web",
        {env_name: {"image": {"tag": "v1"}, **entry}},
        port=8080,
        autoscaling={"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilization": 70},
    )
    env = environment(env_name, imagePullSecrets=["ghcr-pull"])
    return ServiceInputs(web, env, Image(REPOSITORY, "v1"), HASH_KEY)


def test_an_autoscaled_deployment_leaves_its_replicas_to_the_autoscaler() -> None:
    objects = by_kind(build_service_objects(autoscaled_inputs(), generator))
    assert "replicas" not in objects[("Deployment", "web")]["spec"]
    hpa = objects[("HorizontalPodAutoscaler", "web")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    # Two replicas at the least: a disruption budget, and pods spread across nodes.
    assert ("PodDisruptionBudget", "web") in objects
    assert "affinity" in objects[("Deployment", "web")]["spec"]["template"]["spec"]


def test_an_environment_setting_replicas_turns_autoscaling_off_there() -> None:
    objects = by_kind(build_service_objects(autoscaled_inputs(replicas=1), generator))
    assert objects[("Deployment", "web")]["spec"]["replicas"] == 1
    assert ("HorizontalPodAutoscaler", "web") not in objects
    assert ("PodDisruptionBudget", "web") not in objects
    # ... and one setting its own autoscaling uses it.
    own = {"minReplicas": 3, "maxReplicas": 3}
    objects = by_kind(build_service_objects(autoscaled_inputs(autoscaling=own), generator))
    assert objects[("HorizontalPodAutoscaler", "web")]["spec"]["minReplicas"] == 3


def test_pods_of_the_service_image_pull_with_the_environment_secrets() -> None:
    inputs = autoscaled_inputs()
    pod = by_kind(build_service_objects(inputs, generator))[("Deployment", "web")]["spec"]
    assert pod["template"]["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    migration = build_migration_job(inputs, Migrations(), Image(REPOSITORY, "v2"))
    assert migration["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    plain = by_kind(build_service_objects(web_inputs(), generator))[("Deployment", "web")]
    assert "imagePullSecrets" not in plain["spec"]["template"]["spec"]


def test_declared_egress_opens_exactly_its_addresses() -> None:
    web = service(
        "web",
        {"develop": {"image": {"tag": "v1"}}},
        egress=[
            {"cidr": "203.0.113.0/24", "ports": [443]},
            {"host": "api.stripe.com", "ports": [443, 8443]},
            {"host": "ntp.example", "ports": [123], "protocol": "UDP"},
            {"host": "never.resolved.example"},
        ],
    )
    inputs = ServiceInputs(
        web,
        environment("develop"),
        Image(REPOSITORY, "v1"),
        HASH_KEY,
        egress_addresses={
            "api.stripe.com": ("198.51.100.7/32", "2001:db8::7/128"),
            "ntp.example": ("192.0.2.1/32",),
            "never.resolved.example": (),
        },
    )
    policy = by_kind(build_service_objects(inputs, generator))[("NetworkPolicy", "web")]
    assert policy["spec"]["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        },
        {
            "to": [
                {"ipBlock": {"cidr": "198.51.100.7/32"}},
                {"ipBlock": {"cidr": "2001:db8::7/128"}},
            ],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8443}],
        },
        {
            "to": [{"ipBlock": {"cidr": "192.0.2.1/32"}}],
            "ports": [{"protocol": "UDP", "port": 123}],
        },
        # A host that never resolved opens nothing: a rule without peers would open everything.
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}, "may not exceed maxReplicas"),
        ({"egress": [{"cidr": "10.0.0.0/8", "host": "a.example"}]}, "exactly one of"),
        ({"egress": [{"ports": [443]}]}, "exactly one of"),
        ({"egress": [{"cidr": "10.0.0.300/8"}]}, "does not appear to be an IPv4 or IPv6"),
        ({"egress": [{"cidr": "10.0.0.0/8", "ports": [70000]}]}, "ports are 1-65535"),
    ],
)
def test_bad_autoscaling_and_egress_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        service("web", {"develop": {"image": {"tag": "v1"}}}, **spec)


def test_the_applied_hash_is_that_of_json_dumps_so_no_recorded_hash_changes() -> None:
    """Hashes recorded on live objects by earlier versions (json.dumps, sorted keys, compact,
    non-ASCII escaped) must still match: a different hash re-applies every object once."""

    def recorded(value: object) -> str:
        encoded = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    svc = service("web", tags(develop="v1"), port=8000, config={"GREETING": "grüß dich"})
    inputs = ServiceInputs(
        svc, environment("develop"), Image(svc.spec.image.repository, "v1"), b"k"
    )
    manifests = build_service_objects(inputs, lambda length: "g" * length)
    values: list[object] = [*manifests, {"b": [1, 2.5, None, True], "a": 'q"\\/\n\t\x01'}, "ü"]
    assert any("grüß" in json.dumps(m, ensure_ascii=False) for m in manifests)
    for value in values:
        assert content_hash(value) == recorded(value)
