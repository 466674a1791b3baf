"""blockOwnerDeletion under the OwnerReferencesPermissionEnforcement admission plugin, which the
local API server runs (review issue 13, item 13).

Every object the operator builds references its BandsyEnvironment or BandsyService with
blockOwnerDeletion: true. With the plugin on, the API server accepts that only from an identity
that may update the owner's ``finalizers``: the shipped ClusterRole must grant it, and the rule
must be what makes the difference. Both identities are real ServiceAccounts with real tokens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bandsy_dev.kube import REPO_ROOT
from bandsy_dev.operator_process import (
    KubectlRunner,
    kubeconfig_with_token,
    least_privilege_kubeconfig,
)
from bandsy_operator.builders.meta import owner_reference
from bandsy_operator.constants import ENVIRONMENT_KIND, SERVICE_KIND
from bandsy_operator.models import ObjectIdentity
from factories import environment_body, service_body, tags
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

FINALIZERS = "/finalizers"
REDUCED = "bandsy-test-without-finalizers"
REFUSAL = "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set"
Manifest = dict[str, Any]


def shipped_cluster_role() -> Manifest:
    documents = yaml.safe_load_all((REPO_ROOT / "deploy" / "rbac.yaml").read_text())
    (role,) = [doc for doc in documents if doc["kind"] == "ClusterRole"]
    return dict(role)


@pytest.fixture(scope="module")
def namespace(kubectl: KubectlRunner) -> Iterator[str]:
    name = f"owners-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def owners(kubectl: KubectlRunner, crds: None) -> Iterator[dict[str, dict[str, str]]]:
    """One real owner of each kind, as the admin creates them: kind to its name and uid."""
    s = uuid.uuid4().hex[:6]
    environment, service = f"own-{s}", f"own-{s}"
    kubectl.apply(
        environment_body(environment, deletionPolicy="Delete"),
        service_body(service, tags(**{environment: "v1"})),
    )
    found = {}
    for kind, name in ((ENVIRONMENT_KIND, environment), (SERVICE_KIND, service)):
        uid = kubectl("get", kind.lower(), name, "-o", "jsonpath={.metadata.uid}").stdout
        found[kind] = {"name": name, "uid": uid}
    yield found
    kubectl("delete", "bsvc", service, "--wait=false")
    kubectl("delete", "benv", environment, "--wait=false")


@pytest.fixture(scope="module")
def operator_kubectl(
    kubectl: KubectlRunner, servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> KubectlRunner:
    """The operator's ServiceAccount, bound to exactly the shipped ClusterRole."""
    path = tmp_path_factory.mktemp("operator-identity") / "kubeconfig"
    return KubectlRunner(least_privilege_kubeconfig(kubectl, servers["KUBECONFIG"], path))


@pytest.fixture(scope="module")
def reduced_kubectl(
    kubectl: KubectlRunner,
    servers: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KubectlRunner]:
    """A ServiceAccount bound to the shipped ClusterRole minus its finalizers rule."""
    role = shipped_cluster_role()
    rules = [
        rule
        for rule in role["rules"]
        if not any(resource.endswith(FINALIZERS) for resource in rule.get("resources", []))
    ]
    assert len(rules) == len(role["rules"]) - 1, "expected one rule about finalizers"
    kubectl.apply(
        {**role, "metadata": {"name": REDUCED}, "rules": rules},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": REDUCED, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": REDUCED},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": REDUCED,
            },
            "subjects": [{"kind": "ServiceAccount", "name": REDUCED, "namespace": namespace}],
        },
    )
    token = kubectl("-n", namespace, "create", "token", REDUCED, "--duration=1h").stdout.strip()
    path = tmp_path_factory.mktemp("reduced-identity") / "kubeconfig"
    yield KubectlRunner(kubeconfig_with_token(servers["KUBECONFIG"], token, path, REDUCED))
    kubectl("delete", "clusterrolebinding", REDUCED)
    kubectl("delete", "clusterrole", REDUCED)


def config_map(namespace: str, kind: str, owner: dict[str, str], block: bool) -> Manifest:
    """A ConfigMap referencing ``owner`` exactly as the operator's builders do (or, without
    ``block``, the same reference with blockOwnerDeletion false)."""
    reference = owner_reference(kind, ObjectIdentity(name=owner["name"], uid=owner["uid"]))
    reference["blockOwnerDeletion"] = block
    name = f"{kind.lower()}-{'blocking' if block else 'plain'}-{uuid.uuid4().hex[:6]}"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [reference]},
    }


def create(identity: KubectlRunner, manifest: Manifest) -> tuple[bool, str]:
    """Create as ``identity``: whether it was accepted, and kubectl's error output."""
    result = identity("create", "-o", "json", "-f", "-", input=json.dumps(manifest), check=False)
    if result.returncode == 0:
        created = json.loads(result.stdout)
        assert created["metadata"]["ownerReferences"] == manifest["metadata"]["ownerReferences"]
    return result.returncode == 0, result.stderr


async def may_create_plain(
    identity: KubectlRunner, namespace: str, kind: str, owner: dict[str, str]
) -> None:
    """The identity may create ConfigMaps referencing the owner without blockOwnerDeletion (the
    plugin's other check). Polled: a new binding takes a moment to reach the authorizer."""

    async def accepted() -> bool:
        ok, error = create(identity, config_map(namespace, kind, owner, block=False))
        assert ok, error
        return True

    await eventually(accepted)


@pytest.mark.parametrize("kind", [ENVIRONMENT_KIND, SERVICE_KIND])
async def test_the_shipped_role_may_block_its_owners_deletion(
    operator_kubectl: KubectlRunner, namespace: str, owners: dict[str, dict[str, str]], kind: str
) -> None:
    await may_create_plain(operator_kubectl, namespace, kind, owners[kind])
    ok, error = create(operator_kubectl, config_map(namespace, kind, owners[kind], block=True))
    assert ok, error


@pytest.mark.parametrize("kind", [ENVIRONMENT_KIND, SERVICE_KIND])
async def test_without_the_finalizers_rule_it_may_not(
    reduced_kubectl: KubectlRunner, namespace: str, owners: dict[str, dict[str, str]], kind: str
) -> None:
    await may_create_plain(reduced_kubectl, namespace, kind, owners[kind])
    ok, error = create(reduced_kubectl, config_map(namespace, kind, owners[kind], block=True))
    assert not ok, "accepted: is the admission plugin off?"
    assert REFUSAL in error, error
