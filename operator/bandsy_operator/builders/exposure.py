"""How an external service is reached from outside (SPEC §4, §12), in one of two modes.

Gateway (the default): an ``HTTPRoute`` in the environment's namespace attached to the shared
Gateway the platform team owns. Without ``spec.gateway.sectionName`` the operator adds an HTTPS
listener for the host to that Gateway and a cert-manager ``Certificate`` for it in the Gateway's
namespace (a listener reads Secrets of its own namespace without a ReferenceGrant, and a route
attaching to a Gateway elsewhere needs none either: the listener's ``allowedRoutes`` decides).

Ingress: the Ingress of SPEC §4, for clusters that keep a maintained Ingress controller.
"""

from __future__ import annotations

from typing import Any

from .. import naming
from ..constants import (
    CERT_MANAGER_API_VERSION,
    CERT_MANAGER_GROUP,
    CERTIFICATE_KIND,
    CLUSTER_ISSUER_ANNOTATION,
    GATEWAY_API_VERSION,
    GATEWAY_GROUP,
    GATEWAY_KIND,
    HTTP_ROUTE_KIND,
    NAMESPACE_NAME_LABEL,
    SERVICE_KIND,
)
from ..models import GatewayRef
from .inputs import ServiceInputs
from .meta import Manifest, object_meta, owner_reference, service_labels
from .pod import CONTAINER_PORT_NAME


def _host(inputs: ServiceInputs) -> str:
    return naming.external_host(inputs.env.name, inputs.name, inputs.env.spec.ingress.domain)


def _gateway(inputs: ServiceInputs) -> GatewayRef | None:
    """The Gateway the service's route attaches to (None: not routed through one)."""
    gateway = inputs.env.spec.gateway
    if not inputs.exposed or inputs.service.spec.port is None or gateway is None:
        return None
    if inputs.env.exposure_mode != "Gateway" or not inputs.kinds.http_routes:
        return None
    return gateway


def _listener_name(inputs: ServiceInputs, gateway: GatewayRef) -> str:
    if gateway.section_name is not None:
        return gateway.section_name
    return naming.gateway_listener(inputs.env.name, inputs.name, inputs.env.spec.ingress.domain)


def build_http_route(inputs: ServiceInputs) -> Manifest | None:
    gateway = _gateway(inputs)
    if gateway is None:
        return None
    port = inputs.service.spec.port
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": HTTP_ROUTE_KIND,
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "parentRefs": [
                {
                    "group": GATEWAY_GROUP,
                    "kind": GATEWAY_KIND,
                    "namespace": gateway.namespace,
                    "name": gateway.name,
                    "sectionName": _listener_name(inputs, gateway),
                }
            ],
            "hostnames": [_host(inputs)],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": inputs.name, "port": port}
                    ],
                }
            ],
        },
    }


def _adds_listener(inputs: ServiceInputs) -> GatewayRef | None:
    gateway = _gateway(inputs)
    return gateway if gateway is not None and gateway.section_name is None else None


def build_certificate(inputs: ServiceInputs) -> Manifest | None:
    """The host's certificate, into the Secret its listener reads; issued and renewed by
    cert-manager from the environment's ClusterIssuer."""
    gateway = _adds_listener(inputs)
    issuer = inputs.env.spec.ingress.cluster_issuer
    if gateway is None or issuer is None or not inputs.kinds.certificates:
        return None
    name = naming.gateway_certificate(inputs.env.name, inputs.name)
    return {
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": CERTIFICATE_KIND,
        "metadata": object_meta(
            name,
            service_labels(inputs.name, inputs.env.name),
            owner_reference(SERVICE_KIND, inputs.service.meta),
            namespace=gateway.namespace,
        ),
        "spec": {
            "secretName": name,
            "dnsNames": [_host(inputs)],
            "issuerRef": {"group": CERT_MANAGER_GROUP, "kind": "ClusterIssuer", "name": issuer},
        },
    }


def build_listener(inputs: ServiceInputs) -> Manifest | None:
    """What the operator states of the shared Gateway for this host: one HTTPS listener,
    applied under a field manager of its own (``naming.listener_field_manager``), which only
    routes from the environment's namespace may attach to."""
    gateway = _adds_listener(inputs)
    if gateway is None:
        return None
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": GATEWAY_KIND,
        "metadata": {"name": gateway.name, "namespace": gateway.namespace},
        "spec": {
            "listeners": [
                {
                    "name": _listener_name(inputs, gateway),
                    "hostname": _host(inputs),
                    "port": gateway.port,
                    "protocol": "HTTPS",
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [
                            {
                                "group": "",
                                "kind": "Secret",
                                "name": naming.gateway_certificate(inputs.env.name, inputs.name),
                            }
                        ],
                    },
                    "allowedRoutes": {
                        "namespaces": {
                            "from": "Selector",
                            "selector": {"matchLabels": {NAMESPACE_NAME_LABEL: inputs.namespace}},
                        },
                        "kinds": [{"group": GATEWAY_GROUP, "kind": HTTP_ROUTE_KIND}],
                    },
                }
            ]
        },
    }


def build_ingress(inputs: ServiceInputs) -> Manifest | None:
    if not inputs.exposed or inputs.service.spec.port is None:
        return None
    if inputs.env.exposure_mode != "Ingress":
        return None
    ingress = inputs.env.spec.ingress
    host = _host(inputs)
    annotations = (
        {CLUSTER_ISSUER_ANNOTATION: ingress.cluster_issuer} if ingress.cluster_issuer else None
    )
    spec: dict[str, Any] = {
        "tls": [{"hosts": [host], "secretName": naming.tls_secret(inputs.name)}],
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {
                                    "name": inputs.name,
                                    "port": {"name": CONTAINER_PORT_NAME},
                                }
                            },
                        }
                    ]
                },
            }
        ],
    }
    if ingress.class_name:
        spec["ingressClassName"] = ingress.class_name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": inputs.meta(inputs.name, annotations),
        "spec": spec,
    }


def build_exposure_objects(inputs: ServiceInputs) -> list[Manifest]:
    """The objects of the service's exposure the operator owns (the listener is not one)."""
    built = (build_http_route(inputs), build_certificate(inputs), build_ingress(inputs))
    return [obj for obj in built if obj is not None]


def exposure_problem(inputs: ServiceInputs) -> tuple[str, str] | None:
    """(reason, message) when a service the environment lets out is not reachable from
    outside for want of something in the cluster; None when it is, or is not let out."""
    env = inputs.env
    if not inputs.exposed or env.exposure_mode != "Gateway":
        return None
    if env.spec.gateway is None:
        return (
            "GatewayNotSet",
            f"environment {env.name!r} is in Gateway mode without spec.gateway: name the "
            "shared Gateway there, or set spec.ingress.mode: Ingress",
        )
    if not inputs.kinds.http_routes:
        return (
            "GatewayAPINotServed",
            f"the cluster serves no {HTTP_ROUTE_KIND}s ({GATEWAY_API_VERSION}): install the "
            "Gateway API CRDs",
        )
    wants_certificate = env.spec.gateway.section_name is None and env.spec.ingress.cluster_issuer
    if wants_certificate and not inputs.kinds.certificates:
        return (
            "CertManagerNotServed",
            f"the cluster serves no {CERTIFICATE_KIND}s ({CERT_MANAGER_API_VERSION}): install "
            f"cert-manager, or the host has no certificate",
        )
    return None
