"""The kustomize base in deploy/ (SPEC §8) against the real API server.

It must apply (server-side dry run, so the API server validates and admits every object) and keep
its promises: a restricted, read-only, non-root operator pod in two replicas (one leads), a
ClusterRole without wildcards that still covers every kind the builders produce, and the Lease
granted in the operator's namespace only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.core.resource_registry import resource_registry

from bandsy_operator.builders.environment import build_environment_objects, rbac_subject
from bandsy_operator.builders.inputs import ServedKinds, ServiceInputs
from bandsy_operator.builders.monitoring import build_prometheus_rule
from bandsy_operator.builders.service import build_service_objects
from bandsy_operator.constants import (
    API_VERSION,
    ENVIRONMENT_KIND,
    ENVIRONMENT_PLURAL,
    GROUP,
    SERVICE_KIND,
    SERVICE_PLURAL,
)
from bandsy_operator.kube import UNLISTED_KINDS
from bandsy_operator.models import Metrics, parse_environment, parse_service
from bandsy_operator.naming import SECRET_LISTER_CLUSTER_ROLE
from bandsy_operator.promotion import Image
from bandsy_operator.settings import OperatorSettings
from conftest import REPO_ROOT, KubectlRunner

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "deploy"
SAMPLES = DEPLOY / "samples"
Manifest = dict[str, Any]
FIELD_MANAGER = "test-deploy-manifests"


@pytest.fixture(scope="module")
def rendered(kubectl: KubectlRunner) -> list[Manifest]:
    """What `kubectl apply -k deploy/` sends, rendered by the same kubectl."""
    output = kubectl("kustomize", str(DEPLOY)).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def qualified_name(obj: Manifest) -> str:
    """``kind.group/name``, as ``kubectl -o name`` prints it."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower() + (f".{group}" if group else "")
    return f"{kind}/{obj['metadata']['name']}"


def only(objects: list[Manifest], kind: str) -> Manifest:
    matches = [obj for obj in objects if obj["kind"] == kind]
    assert len(matches) == 1, f"expected exactly one {kind}, got {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def operator_namespace(kubectl: KubectlRunner, rendered: list[Manifest]) -> Iterator[str]:
    """The shipped Namespace, applied for real: a dry run cannot create objects in a namespace
    that does not exist yet, and Pod Security admission evaluates the Deployment against the live
    namespace's labels (an operator started earlier may have created it without them).

    Afterwards the namespace is deleted when this module created it, waiting until it is gone (an
    operator started later creates it at start and must not find it terminating); otherwise only
    the labels this module's field manager added are given back."""
    namespace = only(rendered, "Namespace")
    name: str = namespace["metadata"]["name"]
    existed = kubectl("get", "namespace", name, check=False).returncode == 0
    apply = ("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-")
    kubectl(*apply, input=yaml.safe_dump(namespace))
    yield name
    if existed:
        bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        kubectl(*apply, input=yaml.safe_dump(bare))
    else:
        kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s")


@pytest.mark.parametrize("mode", [[], ["--server-side"]], ids=["client-side", "server-side"])
def test_base_applies_with_a_server_dry_run(
    kubectl: KubectlRunner,
    crds: None,
    operator_namespace: str,
    rendered: list[Manifest],
    mode: list[str],
) -> None:
    result = kubectl("apply", *mode, "-k", str(DEPLOY), "--dry-run=server", "-o", "name")
    assert set(result.stdout.split()) == {qualified_name(obj) for obj in rendered}
    # The namespace has pod-security.kubernetes.io/warn=restricted: a violation is a warning.
    assert "PodSecurity" not in result.stderr, result.stderr


def test_base_includes_the_crds_from_crds_dir(rendered: list[Manifest]) -> None:
    """crds/ stays the single source of truth: the base ships exactly those definitions."""
    shipped = {
        doc["metadata"]["name"]: doc["spec"]
        for path in sorted(Path(REPO_ROOT / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    }
    in_base = {
        obj["metadata"]["name"]: obj["spec"]
        for obj in rendered
        if obj["kind"] == "CustomResourceDefinition"
    }
    assert in_base == shipped


def test_operator_deployment_is_hardened(rendered: list[Manifest]) -> None:
    namespace = only(rendered, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    deployment = only(rendered, "Deployment")
    assert deployment["metadata"]["namespace"] == namespace["metadata"]["name"]
    spec = deployment["spec"]
    # Two replicas, one leader (docs/performance.md "High availability"): a new pod comes up as
    # a standby before an old one goes, a drain takes one at a time, the scheduler spreads them.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    budget = only(rendered, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == spec["selector"]
    pod = spec["template"]["spec"]
    (spread,) = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spread["podAffinityTerm"]["labelSelector"] == spec["selector"]
    assert pod["serviceAccountName"] == only(rendered, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"

    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The one writable path on a read-only root filesystem.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"]
    assert "emptyDir" in volume

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["resources"]["limits"]["memory"] == "256Mi"

    env = {var["name"]: var for var in container["env"]}
    assert env["BANDSY_OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )
    assert env["BANDSY_LOG_FORMAT"]["value"] == "json"
    assert env["BANDSY_LEADER_ELECTION"]["value"] == "true"
    assert env["BANDSY_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_lease_is_granted_in_the_operators_namespace_only(rendered: list[Manifest]) -> None:
    """Leader election needs the Lease (get, create, update: the official elector's requests)
    in its own namespace, by a Role: never cluster-wide."""
    account = only(rendered, "ServiceAccount")
    namespace = account["metadata"]["namespace"]
    for role in (obj for obj in rendered if obj["kind"] == "ClusterRole"):
        assert not granted(role, "coordination.k8s.io", "leases"), role["metadata"]["name"]
    (role,) = [
        obj
        for obj in rendered
        if obj["kind"] == "Role" and any("leases" in rule["resources"] for rule in obj["rules"])
    ]
    assert role["metadata"]["namespace"] == namespace == OperatorSettings().operator_namespace
    assert granted(role, "coordination.k8s.io", "leases") == {"create"}
    (named,) = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert named["resourceNames"] == [OperatorSettings().lease_name]
    assert set(named["verbs"]) == {"get", "update"}
    (binding,) = [
        obj
        for obj in rendered
        if obj["kind"] == "RoleBinding" and obj["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["metadata"]["namespace"] == namespace
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]


def operator_role(objects: list[Manifest]) -> Manifest:
    """The operator's ClusterRole (the base also ships the roles of SPEC §10, deploy/policies)."""
    binding = only(objects, "ClusterRoleBinding")
    (role,) = [
        obj
        for obj in objects
        if obj["kind"] == "ClusterRole" and obj["metadata"]["name"] == binding["roleRef"]["name"]
    ]
    return role


def test_cluster_roles_have_no_wildcards(rendered: list[Manifest]) -> None:
    roles = [obj for obj in rendered if obj["kind"] == "ClusterRole"]
    for shipped in roles:
        assert "aggregationRule" not in shipped
        for rule in shipped["rules"]:
            assert "nonResourceURLs" not in rule, rule
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in value for value in rule.get(field, [])), rule
            # Powers that would let a holder grant itself more than its role.
            assert not {"escalate", "impersonate"} & set(rule["verbs"]), rule
            if "bind" in rule["verbs"]:
                assert rule["resources"] == ["clusterroles"]
                assert set(rule["resourceNames"]) <= {"view", "edit", SECRET_LISTER_CLUSTER_ROLE}
    role = operator_role(rendered)
    # Secrets are never listed or watched cluster-wide ...
    assert not {"list", "watch"} & granted(role, "", "secrets")
    # ... only where the operator binds this role (environment namespaces): it holds no more.
    (lister,) = [r for r in roles if r["metadata"]["name"] == SECRET_LISTER_CLUSTER_ROLE]
    assert lister["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]

    binding = only(rendered, "ClusterRoleBinding")
    account = only(rendered, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def granted(role: Manifest, group: str, resource: str) -> set[str]:
    """Verbs the role grants on every object of one resource (rules without resourceNames)."""
    verbs: set[str] = set()
    for rule in role["rules"]:
        applies = group in rule["apiGroups"] and resource in rule["resources"]
        if applies and not rule.get("resourceNames"):
            verbs |= set(rule["verbs"])
    return verbs


def _stored(body: Manifest) -> Manifest:
    meta = body["metadata"]
    return {**body, "metadata": {**meta, "uid": f"uid-{meta['name']}", "generation": 1}}


def test_cluster_role_covers_every_kind_the_builders_produce(rendered: list[Manifest]) -> None:
    """A builder that starts producing a new kind must come with its RBAC rule."""
    environments = [
        parse_environment(_stored(doc))
        for doc in yaml.safe_load_all((SAMPLES / "environments.yaml").read_text())
    ]
    services = [
        parse_service(_stored(doc))
        for doc in yaml.safe_load_all((SAMPLES / "services.yaml").read_text())
    ]
    operator = rbac_subject("system:serviceaccount:bandsy-system:bandsy-operator")
    objects = [
        obj for env in environments for obj in build_environment_objects(env, None, operator)
    ]
    for svc in services:
        for env in environments:
            if env.name in svc.spec.environments:
                tag = svc.spec.environments[env.name].image.tag
                # Where the Prometheus Operator's CRDs exist, with metrics (the samples have none).
                metered = svc.model_copy(
                    update={"spec": svc.spec.model_copy(update={"metrics": Metrics(port=9102)})}
                )
                inputs = ServiceInputs(
                    metered,
                    env,
                    Image(svc.spec.image.repository, tag),
                    b"key",
                    kinds=ServedKinds(service_monitors=True, http_routes=True, certificates=True),
                )
                objects += build_service_objects(inputs, lambda length: "x" * length)
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects}
    assert len(kinds) >= 10, kinds  # the samples exercise every builder

    role = operator_role(rendered)
    for api_version, kind in sorted(kinds):
        info = resource_registry.load(api_version, kind)._api_info
        # A pass lists what it reads everywhere (Secrets: in environment namespaces, by the
        # lister role).
        listed = set() if (api_version, kind) in UNLISTED_KINDS else {"list"}
        missing = {"get", "create", "patch", "delete", *listed} - granted(
            role, info.resource.group, info.plural
        )
        assert not missing, f"{kind}: the ClusterRole lacks {sorted(missing)}"
    # No reference blocks its owner's deletion: under the OwnerReferencesPermissionEnforcement
    # admission plugin that needs "update" on the owner's finalizers, and a lookup of the owner's
    # kind that can fail for 30 s after the API server restarts (test_owner_reference_permission).
    plurals = {ENVIRONMENT_KIND: ENVIRONMENT_PLURAL, SERVICE_KIND: SERVICE_PLURAL}
    owners = {
        (ref["apiVersion"], ref["kind"], ref.get("blockOwnerDeletion"))
        for obj in objects
        for ref in obj["metadata"].get("ownerReferences") or []
    }
    assert owners == {(API_VERSION, kind, False) for kind in plurals}, owners
    for plural in sorted(plurals.values()):
        assert not granted(role, GROUP, f"{plural}/finalizers"), plural
    # kopf watches the custom resources, our Deployments and pods; the controller lists the
    # custom resources, and a service's pods when its Deployment is not Ready.
    for group, resource in [
        ("bandsy.app", "bandsyenvironments"),
        ("bandsy.app", "bandsyservices"),
        ("apps", "deployments"),
        ("", "pods"),
    ]:
        assert {"list", "watch"} <= granted(role, group, resource), resource
    # Pods and their ReplicaSets are only read: the deployment controller makes them.
    assert granted(role, "", "pods") == {"list", "watch"}
    assert granted(role, "apps", "replicasets") == {"get"}


def test_the_operator_applies_its_alerts_in_its_namespace(rendered: list[Manifest]) -> None:
    """Its PrometheusRule (SPEC §12), where the CRD exists: a Role in its namespace allows it,
    and it reads the CRDs to know whether they exist."""
    rule = build_prometheus_rule(only(rendered, "Namespace")["metadata"]["name"])
    (own,) = [
        obj
        for obj in rendered
        if obj["kind"] == "Role"
        and obj["metadata"]["namespace"] == rule["metadata"]["namespace"]
        and obj["metadata"]["name"] == "bandsy-operator-self"  # the Lease's Role is another
    ]
    info = resource_registry.load(rule["apiVersion"], rule["kind"])._api_info
    assert granted(own, info.resource.group, info.plural) == {"get", "create", "patch"}
    assert "get" in granted(
        operator_role(rendered), "apiextensions.k8s.io", "customresourcedefinitions"
    )
