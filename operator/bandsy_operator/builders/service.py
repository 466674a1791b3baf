"""Objects of one service in one environment (owner: the BandsyService). SPEC §4."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import naming
from ..constants import (
    CLUSTER_ISSUER_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    ENVIRONMENT_LABEL,
    EXTERNAL_LABEL,
    MIGRATION_LABEL,
    PRODUCTION,
    SERVICE_KIND,
)
from ..models import EgressTarget, Environment, Quantity, Service
from ..promotion import Image
from .environment import egress_peer
from .meta import (
    Manifest,
    object_meta,
    owner_reference,
    selector_labels,
    service_labels,
    stamp_applied_hash,
)

CONTAINER_PORT_NAME = "http"
SecretGenerator = Callable[[int], str]


@dataclass(frozen=True)
class DatabasePeer:
    """Where a database the service uses lives, for NetworkPolicy egress."""

    port: int
    egress_to: EgressTarget | None


@dataclass(frozen=True)
class BackupPlan:
    """What the backup CronJob needs beyond the CRs: the image that runs it (the operator's
    own) and the scratch database its verify step restores into."""

    image: str
    scratch_database: str


@dataclass(frozen=True)
class ServiceInputs:
    """Everything, besides the two CRs, that decides a service's objects in one environment."""

    service: Service
    env: Environment
    image: Image  # what the gates let through, or what runs while they hold a new one
    hash_key: bytes  # keys the pods' config hash (see config_hash)
    dependency_ports: Mapping[str, int] = field(default_factory=dict)  # dependency -> its port
    dependents: Sequence[str] = ()  # services in this environment that depend on this one
    existing_secrets: Mapping[str, str] = field(default_factory=dict)  # live <svc>-secrets values
    # backend ("postgres", "redis", "mongo") -> keys of the <svc>-<backend> Secret
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    database_peers: Sequence[DatabasePeer] = ()
    backup: BackupPlan | None = None  # the environment backs up this service's database

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def namespace(self) -> str:
        return self.env.namespace

    @property
    def exposed(self) -> bool:
        return self.service.spec.external and self.name in self.env.spec.ingress.allowed_services

    def meta(self, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        return object_meta(
            name,
            service_labels(self.name, self.env.name),
            owner_reference(SERVICE_KIND, self.service.meta),
            namespace=self.namespace,
            annotations=annotations,
        )


def layered_config(inputs: ServiceInputs) -> dict[str, str]:
    """env.config < svc.config < svc.environments.<env>.config, then the injected keys."""
    spec = inputs.service.spec
    data = {
        **inputs.env.spec.config,
        **spec.config,
        **spec.environments[inputs.env.name].config,
        "BANDSY_ENVIRONMENT": inputs.env.name,
        "BANDSY_SERVICE": inputs.name,
    }
    for dependency, port in sorted(inputs.dependency_ports.items()):
        data[naming.dependency_url_key(dependency)] = naming.internal_url(
            dependency, inputs.namespace, port
        )
    if inputs.exposed:
        data["PUBLIC_URL"] = naming.public_url(
            inputs.env.name, inputs.name, inputs.env.spec.ingress.domain
        )
    return dict(sorted(data.items()))


def build_config_map(inputs: ServiceInputs) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": inputs.meta(naming.config_map(inputs.name)),
        "data": layered_config(inputs),
    }


def secret_values(inputs: ServiceInputs, generate: SecretGenerator) -> dict[str, str]:
    """Generated keys are kept once they exist; provided keys get an empty placeholder only
    while nobody has filled them in, so a value a person set is never part of our apply."""
    values: dict[str, str] = {}
    for key in inputs.service.spec.secrets:
        existing = inputs.existing_secrets.get(key.name)
        if key.generate is not None:
            values[key.name] = existing or generate(key.generate.length)
        elif not existing:
            values[key.name] = ""
    return values


def encode_secret_data(values: Mapping[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}


def build_secret(inputs: ServiceInputs, values: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": inputs.meta(naming.secrets(inputs.name)),
        "data": encode_secret_data(values),
    }


def missing_provided_secrets(inputs: ServiceInputs) -> list[str]:
    return [
        key.name
        for key in inputs.service.spec.secrets
        if key.generate is None and not inputs.existing_secrets.get(key.name)
    ]


def _resources(inputs: ServiceInputs) -> dict[str, dict[str, Quantity]]:
    spec = inputs.service.spec
    override = spec.environments[inputs.env.name].resources
    chosen = override if override is not None else spec.resources
    resources: dict[str, dict[str, Quantity]] = {}
    if chosen.requests:
        resources["requests"] = {k: str(v) for k, v in sorted(chosen.requests.items())}
    if chosen.limits:
        resources["limits"] = {k: str(v) for k, v in sorted(chosen.limits.items())}
    return resources


def _probes(inputs: ServiceInputs) -> dict[str, Any]:
    check = inputs.service.spec.health_check
    if check is None or inputs.service.spec.port is None:
        return {}
    http_get = {"path": check.path, "port": CONTAINER_PORT_NAME}
    return {
        # Checked every second until it answers (up to 2 min): a slow start is not killed by
        # liveness, and a fast one is Ready in about a second instead of a readiness period.
        "startupProbe": {"httpGet": http_get, "periodSeconds": 1, "failureThreshold": 120},
        "readinessProbe": {"httpGet": http_get, "periodSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"httpGet": http_get, "periodSeconds": 20, "failureThreshold": 3},
    }


def _anti_affinity(inputs: ServiceInputs) -> dict[str, Any]:
    if inputs.env.name != PRODUCTION:
        return {}
    return {
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": selector_labels(inputs.name, inputs.env.name)
                            },
                        },
                    }
                ]
            }
        }
    }


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
    if resources := _resources(inputs):
        container["resources"] = resources
    return container


def restricted_pod_spec() -> dict[str, Any]:
    """What every generated pod's spec starts with: no API token, Pod Security ``restricted``."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }


def build_deployment(inputs: ServiceInputs, config_hash: str) -> Manifest:
    spec = inputs.service.spec
    env_spec = spec.environments[inputs.env.name]
    selector = selector_labels(inputs.name, inputs.env.name)
    pod_labels = {**service_labels(inputs.name, inputs.env.name)}
    if inputs.exposed:
        pod_labels[EXTERNAL_LABEL] = "true"
    container: dict[str, Any] = {
        **service_container(inputs, inputs.image, inputs.name),
        **_probes(inputs),
    }
    if spec.port is not None:
        container["ports"] = [
            {"name": CONTAINER_PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "replicas": env_spec.replicas if env_spec.replicas is not None else spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
                },
                "spec": {
                    **restricted_pod_spec(),
                    "containers": [container],
                    **_anti_affinity(inputs),
                },
            },
        },
    }


def build_service(inputs: ServiceInputs) -> Manifest | None:
    port = inputs.service.spec.port
    if port is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(inputs.name, inputs.env.name),
            "ports": [
                {
                    "name": CONTAINER_PORT_NAME,
                    "port": port,
                    "targetPort": CONTAINER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def build_ingress(inputs: ServiceInputs) -> Manifest | None:
    if not inputs.exposed or inputs.service.spec.port is None:
        return None
    ingress = inputs.env.spec.ingress
    host = naming.external_host(inputs.env.name, inputs.name, ingress.domain)
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


def build_network_policy(inputs: ServiceInputs) -> Manifest:
    """Ingress from the services that depend on this one; egress to its dependencies and
    databases. Everything else stays closed by the environment's default-deny policy."""
    port = inputs.service.spec.port
    ingress: list[dict[str, Any]] = []
    if port is not None and inputs.dependents:
        ingress.append(
            {
                "from": [
                    {"podSelector": {"matchLabels": selector_labels(dependent, inputs.env.name)}}
                    for dependent in sorted(inputs.dependents)
                ],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        )
    egress: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": selector_labels(dep, inputs.env.name)}}],
            "ports": [{"protocol": "TCP", "port": dep_port}],
        }
        for dep, dep_port in sorted(inputs.dependency_ports.items())
    ]
    egress += database_egress(inputs)
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector_labels(inputs.name, inputs.env.name)},
        "policyTypes": ["Ingress", "Egress"],
    }
    # An empty rule list is left out, as the API server stores it (so a rendered manifest diffs
    # clean); a rule someone adds by hand is still drift (apply.EXCLUSIVE_LISTS).
    if ingress:
        spec["ingress"] = ingress
    if egress:
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": inputs.meta(inputs.name),
        "spec": spec,
    }


def database_egress(inputs: ServiceInputs) -> list[dict[str, Any]]:
    return [
        {"to": [egress_peer(peer.egress_to)], "ports": [{"protocol": "TCP", "port": peer.port}]}
        for peer in inputs.database_peers
        if peer.egress_to is not None
    ]


def build_migration_network_policy(inputs: ServiceInputs) -> Manifest | None:
    """The service's migration pods reach its databases (DNS comes from the environment's
    policy) and nothing else; nothing reaches them."""
    if inputs.service.spec.migrations is None:
        return None
    spec: dict[str, Any] = {
        "podSelector": {
            "matchLabels": {ENVIRONMENT_LABEL: inputs.env.name, MIGRATION_LABEL: inputs.name}
        },
        "policyTypes": ["Ingress", "Egress"],
    }
    if egress := database_egress(inputs):
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": inputs.meta(naming.migration_policy(inputs.name)),
        "spec": spec,
    }


def config_hash(
    key: bytes,
    config_map: Manifest,
    secrets: Mapping[str, str],
    credentials: Sequence[Manifest],
) -> str:
    """Changes whenever any configuration or credential the pods read changes, including a
    provided secret a person filled in (which is not part of our apply). Keyed (HMAC-SHA256 with
    a key only the operator's namespace holds): the annotation is readable by anyone who may
    view the Deployment, and a plain hash would let them test guesses of a short secret."""
    content = [config_map["data"], dict(sorted(secrets.items())), *(c["data"] for c in credentials)]
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, encoded, hashlib.sha256).hexdigest()[:16]


def build_credential_secrets(inputs: ServiceInputs) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": inputs.meta(naming.backend_secret(inputs.name, backend)),
            "data": encode_secret_data(inputs.credentials[backend]),
        }
        for backend in sorted(inputs.credentials)
    ]


def build_service_objects(inputs: ServiceInputs, generate: SecretGenerator) -> list[Manifest]:
    config_map = build_config_map(inputs)
    values = secret_values(inputs, generate)
    pod_secrets = {**inputs.existing_secrets, **values}
    credentials = build_credential_secrets(inputs)
    objects = [
        config_map,
        build_secret(inputs, values),
        *credentials,
        build_deployment(
            inputs, config_hash(inputs.hash_key, config_map, pod_secrets, credentials)
        ),
        build_service(inputs),
        build_ingress(inputs),
        build_network_policy(inputs),
        build_migration_network_policy(inputs),
        *build_backup_objects(inputs),
    ]
    return [stamp_applied_hash(obj) for obj in objects if obj is not None]


def build_backup_objects(inputs: ServiceInputs) -> list[Manifest]:
    backups = inputs.env.spec.backups
    if inputs.backup is None or backups is None:
        return []
    # Imported here: builders.backup builds on this module's container and policy helpers.
    from .backup import build_backup_cronjob, build_backup_network_policy

    return [
        build_backup_cronjob(inputs, backups, inputs.backup.image, inputs.backup.scratch_database),
        build_backup_network_policy(inputs, backups),
    ]
