"""What ``bandsyctl status`` says of an exposed service's way in: whether the Gateway accepted
its HTTPRoute and whether its certificate is Ready, from those objects' own status conditions
(written by the Gateway's controller and cert-manager), read as the caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightkube import ApiError

from . import naming
from .constants import (
    CERT_MANAGER_API_VERSION,
    CERTIFICATE_KIND,
    GATEWAY_API_VERSION,
    HTTP_ROUTE_KIND,
)
from .kube import KubeApi, Manifest, ObjectRef
from .models import Environment

UNKNOWN = "unknown"  # the caller may not read it
ABSENT = "absent"


def condition_text(conditions: Sequence[Mapping[str, Any]], type_: str) -> str:
    """``True``, ``False: Reason``, or ``pending`` before the controller said anything."""
    found = next((c for c in conditions if c.get("type") == type_), None)
    if found is None:
        return "pending"
    if found.get("status") == "True":
        return "True"
    return f"{found.get('status')}: {found.get('reason', '')}".rstrip(": ")


def route_accepted(route: Manifest | None) -> str:
    """Accepted by its Gateway (the parent entry the Gateway's controller wrote)."""
    if route is None:
        return ABSENT
    parents = (route.get("status") or {}).get("parents") or []
    conditions = [c for parent in parents for c in parent.get("conditions") or []]
    return condition_text(conditions, "Accepted")


def certificate_ready(certificate: Manifest | None) -> str:
    if certificate is None:
        return ABSENT
    return condition_text((certificate.get("status") or {}).get("conditions") or [], "Ready")


def exposure_refs(env: Environment, service: str) -> tuple[ObjectRef, ObjectRef | None]:
    """The service's HTTPRoute, and the Certificate of its host (None: not the operator's,
    the Gateway's listener named in ``sectionName`` has its owner's)."""
    route = ObjectRef(GATEWAY_API_VERSION, HTTP_ROUTE_KIND, env.namespace, service)
    gateway = env.spec.gateway
    if gateway is None or gateway.section_name is not None:
        return route, None
    name = naming.gateway_certificate(env.name, service)
    return route, ObjectRef(CERT_MANAGER_API_VERSION, CERTIFICATE_KIND, gateway.namespace, name)


async def _read(api: KubeApi, ref: ObjectRef | None) -> Manifest | str | None:
    if ref is None:
        return None
    try:
        return await api.get(ref)
    except ApiError:
        return UNKNOWN


async def exposure_columns(api: KubeApi, env: Environment, service: str) -> dict[str, str]:
    """``route`` and ``certificate`` of a service exposed in ``env`` (Gateway mode)."""
    if env.exposure_mode != "Gateway":
        return {"route": "Ingress", "certificate": ""}
    route_ref, certificate_ref = exposure_refs(env, service)
    route, certificate = await _read(api, route_ref), await _read(api, certificate_ref)
    return {
        "route": route if isinstance(route, str) else route_accepted(route),
        "certificate": (
            certificate
            if isinstance(certificate, str)
            else ""
            if certificate_ref is None
            else certificate_ready(certificate)
        ),
    }
