"""Exposure in Gateway mode (SPEC §12) on the real control plane, with the Gateway API's and
cert-manager's published CRDs (bandsy_dev.gateway_crds) and the session's operator under the
shipped ClusterRole: nothing is written while the kinds are not served (and the service says
why); once they are, an HTTPRoute, a Certificate and a host listener on the platform's Gateway,
each accepted by the API server's own validation; revoking the exposure takes all three away and
leaves the platform's listener; Ingress mode swaps them for the Ingress; `bandsyctl status`
reads the route's and the certificate's conditions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bandsy_dev.crd_files import crd_names, install, remove
from bandsy_dev.gateway_crds import cert_manager_crd_files, gateway_api_crd_files
from bandsy_dev.traefik import platform_objects
from bandsy_operator.kube import KubeApi, Manifest, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

GATEWAY, GATEWAY_NAMESPACE = "shared", "gateway-system"
BANDSYCTL = Path(sys.executable).parent / "bandsyctl"


@pytest.fixture
def crds_later(kubectl: KubectlRunner) -> Iterator[list[Path]]:
    """The CRD files, not installed yet; removed afterwards (with every object of theirs):
    the other tests run without them."""
    files = [*gateway_api_crd_files(), *cert_manager_crd_files()]
    assert kubectl("get", *crd_names(files), check=False).returncode != 0, "installed before"
    yield files
    remove(kubectl, files)
    kubectl("delete", "namespace", GATEWAY_NAMESPACE, "--ignore-not-found", "--wait=false")
    kubectl("delete", "ingressclass", "traefik", "--ignore-not-found")


def condition(body: Manifest | None, type_: str) -> dict[str, Any]:
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c["type"] == type_), {})


def listener_names(gateway: Manifest | None) -> list[str]:
    return [item["name"] for item in ((gateway or {}).get("spec") or {}).get("listeners") or []]


def status_rows(kubeconfig: str, service: str) -> list[dict[str, str]]:
    done = subprocess.run(
        [str(BANDSYCTL), "status", service, "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        check=True,
    )
    return list(json.loads(done.stdout))


async def test_gateway_exposure_follows_the_crds_the_allowance_and_the_mode(
    kube: KubeApi,
    kubectl: KubectlRunner,
    operator: OperatorProcess,
    servers: dict[str, str],
    crds_later: list[Path],
) -> None:
    env, web = f"gw-{uuid.uuid4().hex[:5]}", f"web-{uuid.uuid4().hex[:5]}"
    host = f"{env}.{web}.example.test"
    ingress = {"domain": "example.test", "clusterIssuer": "local-ca", "allowedServices": [web]}
    gateway = {"name": GATEWAY, "namespace": GATEWAY_NAMESPACE, "port": 8443}
    environment = environment_body(env, ingress=ingress, gateway=gateway, deletionPolicy="Delete")
    kubectl.apply(environment, service_body(web, tags(**{env: "v1"}), port=8080, external=True))
    service_ref = ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", web)
    route_ref = ObjectRef("gateway.networking.k8s.io/v1", "HTTPRoute", env, web)
    certificate_ref = ObjectRef(
        "cert-manager.io/v1", "Certificate", GATEWAY_NAMESPACE, f"{env}.{web}-tls"
    )
    gateway_ref = ObjectRef("gateway.networking.k8s.io/v1", "Gateway", GATEWAY_NAMESPACE, GATEWAY)

    async def exposed(reason: str) -> Manifest:
        found = await kube.get(service_ref)
        cond = condition(found, "Exposed")
        assert cond.get("reason") == reason, cond
        assert found is not None
        return found

    # No Gateway API: the service runs and says what is missing; nothing of the kind is tried.
    found = await eventually(lambda: exposed("GatewayAPINotServed"))
    assert condition(found, "Exposed")["status"] == "False"
    assert not [e for e in found["status"]["inventory"] if "gateway.networking" in e]

    # The CRDs come while the operator runs, the platform's Gateway not yet.
    install(kubectl, crds_later)
    await eventually(lambda: exposed("GatewayNotFound"), timeout=20)
    # Nor a Certificate in a namespace that may not exist yet: the Gateway comes first.
    assert await kube.get(certificate_ref) is None
    kubectl.apply(*platform_objects(GATEWAY, GATEWAY_NAMESPACE, http_port=8000))

    found = await eventually(lambda: exposed("Exposed"), timeout=20)
    assert condition(found, "Exposed")["status"] == "True"
    route = await eventually(lambda: kube.get(route_ref))
    assert route["spec"]["hostnames"] == [host]
    assert route["spec"]["parentRefs"][0]["sectionName"] == host
    certificate = await eventually(lambda: kube.get(certificate_ref))
    assert certificate["spec"]["dnsNames"] == [host]
    live_gateway = await kube.get(gateway_ref)
    assert listener_names(live_gateway) == ["http", host]
    # The listener is applied by a field manager of its own; the platform's stays its own.
    managers = {m["manager"] for m in (live_gateway or {})["metadata"]["managedFields"]}
    assert f"bandsy-operator/{host}" in managers

    # bandsyctl status: the URL, and the conditions of the route and of the certificate.
    (row,) = [r for r in status_rows(servers["KUBECONFIG"], web) if r["environment"] == env]
    assert (row["url"], row["route"], row["certificate"]) == (
        f"https://{host}",
        "pending",
        "pending",
    )
    ready = {"type": "Ready", "status": "True", "reason": "Ready", "message": "issued"}
    kubectl(
        "-n",
        GATEWAY_NAMESPACE,
        "patch",
        "certificate",
        f"{env}.{web}-tls",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [ready]}}),
    )
    (row,) = [r for r in status_rows(servers["KUBECONFIG"], web) if r["environment"] == env]
    assert row["certificate"] == "True"

    # Revoked: the route, the certificate and the listener go; the platform's listener stays.
    kubectl.apply(
        {
            **environment,
            "spec": {**environment["spec"], "ingress": {**ingress, "allowedServices": []}},
        }
    )

    async def closed() -> bool:
        assert await kube.get(route_ref) is None
        assert await kube.get(certificate_ref) is None
        assert listener_names(await kube.get(gateway_ref)) == ["http"]
        return True

    await eventually(closed, timeout=20)
    await eventually(lambda: exposed("ExternalNotAllowed"), timeout=10)

    # Allowed again, in Ingress mode: the Ingress, and nothing of the Gateway's.
    ingress_mode = {**ingress, "mode": "Ingress", "className": "traefik"}
    kubectl.apply({**environment, "spec": {**environment["spec"], "ingress": ingress_mode}})
    found_ingress = await eventually(
        lambda: kube.get(ObjectRef("networking.k8s.io/v1", "Ingress", env, web))
    )
    assert found_ingress["spec"]["rules"][0]["host"] == host
    await eventually(lambda: exposed("Exposed"), timeout=20)
    assert await kube.get(route_ref) is None
    assert listener_names(await kube.get(gateway_ref)) == ["http"]
    (row,) = [r for r in status_rows(servers["KUBECONFIG"], web) if r["environment"] == env]
    assert row["route"] == "Ingress"

    kubectl("delete", "bsvc", web, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
