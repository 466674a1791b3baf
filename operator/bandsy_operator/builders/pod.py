"""Pieces every pod the operator generates for a service shares: its container (image,
configuration and Secrets as environment, Pod Security ``restricted``), its named ports, its pod
spec's start, and its egress to the service's databases."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import naming
from ..models import Quantity, ServiceSpec
from ..promotion import Image
from .environment import egress_peer
from .inputs import ServiceInputs
from .meta import Manifest

CONTAINER_PORT_NAME = "http"
METRICS_PORT_NAME = "metrics"


def named_ports(spec: ServiceSpec) -> list[tuple[str, int]]:
    """The pods' ports, as the container and the Service name them: ``http`` (spec.port), and
    ``metrics`` (spec.metrics) when the metrics are served on another port."""
    ports = [(CONTAINER_PORT_NAME, spec.port)] if spec.port is not None else []
    if spec.metrics is not None and spec.metrics.port != spec.port:
        ports.append((METRICS_PORT_NAME, spec.metrics.port))
    return ports


def metrics_port_name(spec: ServiceSpec) -> str | None:
    """The Service port a scrape of the metrics goes to (None: the service declares none)."""
    if spec.metrics is None:
        return None
    return CONTAINER_PORT_NAME if spec.metrics.port == spec.port else METRICS_PORT_NAME


def container_resources(inputs: ServiceInputs) -> dict[str, dict[str, Quantity]]:
    chosen = inputs.service.resources_in(inputs.env.name)
    resources: dict[str, dict[str, Quantity]] = {}
    if chosen.requests:
        resources["requests"] = {k: str(v) for k, v in sorted(chosen.requests.items())}
    if chosen.limits:
        resources["limits"] = {k: str(v) for k, v in sorted(chosen.limits.items())}
    return resources


def service_container(inputs: ServiceInputs, image: Image, name: str) -> dict[str, Any]:
    """A container of the service's image with its configuration and Secrets as environment,
    under Pod Security ``restricted``: the Deployment's, and its migrations' (SPEC §11)."""
    env_from: list[dict[str, Any]] = [
        {"configMapRef": {"name": naming.config_map(inputs.name)}},
        {"secretRef": {"name": naming.secrets(inputs.name)}},
    ]
    env_from += [
        {"secretRef": {"name": naming.backend_secret(inputs.name, backend)}}
        for backend in sorted(inputs.credentials)
    ]
    container: dict[str, Any] = {
        "name": name,
        "image": str(image),
        "envFrom": env_from,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if resources := container_resources(inputs):
        container["resources"] = resources
    return container


def restricted_pod_spec() -> dict[str, Any]:
    """What every generated pod's spec starts with: no API token, Pod Security ``restricted``."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }


def service_pod_spec(inputs: ServiceInputs) -> dict[str, Any]:
    """The start of a spec for pods of the service's image: the environment's pull secrets."""
    spec = restricted_pod_spec()
    if names := inputs.env.spec.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in names]
    return spec


def database_egress(inputs: ServiceInputs) -> list[dict[str, Any]]:
    return [
        {"to": [egress_peer(peer.egress_to)], "ports": [{"protocol": "TCP", "port": peer.port}]}
        for peer in inputs.database_peers
        if peer.egress_to is not None
    ]


def database_client_policy(
    inputs: ServiceInputs, name: str, pod_labels: Mapping[str, str]
) -> Manifest:
    """Pods of the service's database work (a migration, a `bandsyctl db` relay) reach its
    databases (DNS comes from the environment's policy) and nothing else; nothing reaches
    them (a port-forward enters the pod itself, which no NetworkPolicy governs)."""
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": dict(pod_labels)},
        "policyTypes": ["Ingress", "Egress"],
    }
    if egress := database_egress(inputs):
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": inputs.meta(name),
        "spec": spec,
    }
