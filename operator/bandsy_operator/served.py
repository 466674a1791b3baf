"""Whether the cluster serves a kind of another project, from its CRD: established, and serving
the version the operator writes. Asked at start and at every resync (controller), so a CRD
installed or removed later is followed without a restart."""

from __future__ import annotations

from .builders.inputs import ServedKinds
from .concurrently import all_of
from .constants import (
    CERT_MANAGER_API_VERSION,
    CERTIFICATE_PLURAL,
    GATEWAY_API_VERSION,
    HTTP_ROUTE_PLURAL,
    MONITORING_API_VERSION,
    SERVICE_MONITOR_PLURAL,
)
from .kube import KubeApi, Manifest, ObjectRef

CRD_API_VERSION = "apiextensions.k8s.io/v1"


def served(crd: Manifest | None, api_version: str = MONITORING_API_VERSION) -> bool:
    """The CRD is established and serves ``api_version``'s version."""
    if crd is None:
        return False
    version = api_version.rpartition("/")[2]
    conditions = (crd.get("status") or {}).get("conditions") or []
    versions = (crd.get("spec") or {}).get("versions") or []
    return any(
        c.get("type") == "Established" and c.get("status") == "True" for c in conditions
    ) and any(v.get("name") == version and v.get("served") for v in versions)


async def serves(api: KubeApi, plural: str, api_version: str) -> bool:
    group = api_version.partition("/")[0]
    ref = ObjectRef(CRD_API_VERSION, "CustomResourceDefinition", "", f"{plural}.{group}")
    return served(await api.get(ref), api_version)


async def discover(api: KubeApi) -> ServedKinds:
    """The kinds a service's objects may include (raises the client's errors)."""
    monitors, routes, certificates = await all_of(
        serves(api, SERVICE_MONITOR_PLURAL, MONITORING_API_VERSION),
        serves(api, HTTP_ROUTE_PLURAL, GATEWAY_API_VERSION),
        serves(api, CERTIFICATE_PLURAL, CERT_MANAGER_API_VERSION),
    )
    return ServedKinds(service_monitors=monitors, http_routes=routes, certificates=certificates)
