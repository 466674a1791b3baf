"""Objects of one service in one environment (owner: the BandsyService). SPEC §4."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import naming
from ..constants import (
    CONFIG_HASH_ANNOTATION,
    EXTERNAL_LABEL,
    MIRRORED_ANNOTATION,
    PRODUCTION,
    RESTORED_ANNOTATION,
)
from ..models import Environment, Service
from .backup import build_backup_objects
from .exposure import build_exposure_objects
from .inputs import ServiceInputs
from .meta import (
    Manifest,
    selector_labels,
    service_labels,
    stamp_applied_hash,
)
from .migration import build_migration_network_policy
from .monitoring import build_service_monitor
from .pod import (
    CONTAINER_PORT_NAME,
    database_egress,
    named_ports,
    service_container,
    service_pod_spec,
)
from .sessions import build_db_session_network_policy

SecretGenerator = Callable[[int], str]


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


def spreads_pods(service: Service, env: Environment) -> bool:
    """Pods prefer distinct nodes in production (SPEC §4) and wherever two or more run."""
    autoscaling = service.autoscaling_in(env.name)
    most = autoscaling.max_replicas if autoscaling else service.replicas_in(env.name)
    return env.name == PRODUCTION or most >= 2


def has_disruption_budget(service: Service, env: Environment) -> bool:
    """With one replica a budget would block every drain."""
    return service.replicas_in(env.name) >= 2


def _anti_affinity(inputs: ServiceInputs) -> dict[str, Any]:
    if not spreads_pods(inputs.service, inputs.env):
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


def build_deployment(inputs: ServiceInputs, config_hash: str) -> Manifest:
    spec = inputs.service.spec
    selector = selector_labels(inputs.name, inputs.env.name)
    pod_labels = {**service_labels(inputs.name, inputs.env.name)}
    if inputs.exposed:
        pod_labels[EXTERNAL_LABEL] = "true"
    container: dict[str, Any] = {
        **service_container(inputs, inputs.image, inputs.name),
        **_probes(inputs),
    }
    if ports := named_ports(spec):
        container["ports"] = [
            {"name": name, "containerPort": port, "protocol": "TCP"} for name, port in ports
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": inputs.meta(inputs.name),
        "spec": {
            **_replicas(inputs),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": _pod_annotations(inputs, config_hash),
                },
                "spec": {
                    **service_pod_spec(inputs),
                    "containers": [container],
                    **_anti_affinity(inputs),
                },
            },
        },
    }


def _replicas(inputs: ServiceInputs) -> dict[str, int]:
    """None when autoscaled: the HPA owns the field, and stating it would undo its scaling."""
    if inputs.service.autoscaling_in(inputs.env.name) is not None:
        return {}
    return {"replicas": inputs.service.replicas_in(inputs.env.name)}


def _pod_annotations(inputs: ServiceInputs, config_hash: str) -> dict[str, str]:
    """A new config hash, or a restore or mirror swapped in, restarts the pods."""
    annotations = {CONFIG_HASH_ANNOTATION: config_hash}
    if inputs.restored:
        annotations[RESTORED_ANNOTATION] = inputs.restored
    if inputs.mirrored:
        annotations[MIRRORED_ANNOTATION] = inputs.mirrored
    return annotations


def build_service(inputs: ServiceInputs) -> Manifest | None:
    """A worker (no port) has none, unless it serves metrics: then the Service is for them."""
    ports = named_ports(inputs.service.spec)
    if not ports:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(inputs.name, inputs.env.name),
            "ports": [
                {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                for name, port in ports
            ],
        },
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
    egress += declared_egress(inputs)
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


def declared_egress(inputs: ServiceInputs) -> list[dict[str, Any]]:
    """``spec.egress``: a host that never resolved opens nothing (its rule would open all)."""
    rules = []
    for entry in inputs.service.spec.egress:
        if entry.cidr is not None:
            cidrs: Sequence[str] = [entry.cidr]
        else:
            assert entry.host is not None
            cidrs = inputs.egress_addresses.get(entry.host, ())
        if not cidrs:
            continue
        rule: dict[str, Any] = {"to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]}
        if entry.ports:
            rule["ports"] = [{"protocol": entry.protocol, "port": port} for port in entry.ports]
        rules.append(rule)
    return rules


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


def build_disruption_budget(inputs: ServiceInputs) -> Manifest | None:
    """SPEC §12: with two replicas or more, a voluntary disruption (a node drain, an eviction)
    takes at most one pod at a time. Pods that are not Ready may always be evicted, so a
    crash-looping service never blocks a drain."""
    if not has_disruption_budget(inputs.service, inputs.env):
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(inputs.name, inputs.env.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_autoscaler(inputs: ServiceInputs) -> Manifest | None:
    autoscaling = inputs.service.autoscaling_in(inputs.env.name)
    if autoscaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": inputs.name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


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
        build_disruption_budget(inputs),
        build_autoscaler(inputs),
        build_service_monitor(inputs),
        *build_exposure_objects(inputs),
        build_network_policy(inputs),
        build_migration_network_policy(inputs),
        build_db_session_network_policy(inputs),
        *build_backup_objects(inputs),
    ]
    return [stamp_applied_hash(obj) for obj in objects if obj is not None]
