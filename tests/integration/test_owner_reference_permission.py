"""Owner references under the OwnerReferencesPermissionEnforcement admission plugin, which the
local API server runs (review issue 13, item 13).

Every object the operator builds references its BandsyEnvironment or BandsyService without
blockOwnerDeletion: the API server accepts that from the shipped ClusterRole, which has no rule
about the owners' ``finalizers``. A blocking reference would need that rule, and a lookup of the
owner's kind in the API server's discovery cache, which misses our kinds for up to 30 s after the
server (re)starts: it is refused, as the plugin being on shows. Real ServiceAccount, real token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bandsy_dev.operator_process import (
    KubectlRunner,
    least_privilege_kubeconfig,
)
from bandsy_operator.builders.meta import owner_reference
from bandsy_operator.constants import ENVIRONMENT_KIND, SERVICE_KIND
from bandsy_operator.models import ObjectIdentity
from factories import environment_body, service_body, tags
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

REFUSAL = "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set"
Manifest = dict[str, Any]


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


def config_map(namespace: str, kind: str, owner: dict[str, str], block: bool) -> Manifest:
    """A ConfigMap referencing ``owner`` exactly as the operator's builders do (or, with
    ``block``, the same reference with blockOwnerDeletion true)."""
    reference = owner_reference(kind, ObjectIdentity(name=owner["name"], uid=owner["uid"]))
    if block:
        reference["blockOwnerDeletion"] = True
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


@pytest.mark.parametrize("kind", [ENVIRONMENT_KIND, SERVICE_KIND])
async def test_the_shipped_role_may_reference_its_owners_as_the_builders_do(
    operator_kubectl: KubectlRunner, namespace: str, owners: dict[str, dict[str, str]], kind: str
) -> None:
    """Polled: a new binding takes a moment to reach the authorizer."""

    async def accepted() -> bool:
        ok, error = create(operator_kubectl, config_map(namespace, kind, owners[kind], block=False))
        assert ok, error
        return True

    await eventually(accepted)


@pytest.mark.parametrize("kind", [ENVIRONMENT_KIND, SERVICE_KIND])
async def test_it_may_not_block_their_deletion(
    operator_kubectl: KubectlRunner, namespace: str, owners: dict[str, dict[str, str]], kind: str
) -> None:
    ok, error = create(operator_kubectl, config_map(namespace, kind, owners[kind], block=True))
    assert not ok, "accepted: is the admission plugin off?"
    assert REFUSAL in error, error
