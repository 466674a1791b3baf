"""Prometheus Operator objects (SPEC §12): a ServiceMonitor per service that declares its
metrics, and the operator's own alerts. Built only while the cluster serves their CRDs.

Every alert reads metrics the operator exports (``metrics``): a test checks each name against
the running operator's ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from ..constants import (
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    MONITORING_API_VERSION,
    NAME_LABEL,
    PROMETHEUS_RULE_KIND,
    SERVICE_MONITOR_KIND,
)
from .inputs import ServiceInputs
from .meta import Manifest, selector_labels, stamp_applied_hash
from .pod import metrics_port_name

PROMETHEUS_RULE_NAME = "bandsy-operator"
# A blocked promotion alerts after this long; a freeze and a soak are waits someone chose.
PROMOTION_BLOCKED_ALERT_SECONDS = 3600
DELIBERATE_BLOCKS = ("EnvironmentFrozen", "SoakTimeNotElapsed")


def build_service_monitor(inputs: ServiceInputs) -> Manifest | None:
    """Scrapes the service's pods through its Service, on the port its metrics are served."""
    metrics = inputs.service.spec.metrics
    port = metrics_port_name(inputs.service.spec)
    if not inputs.kinds.service_monitors or metrics is None or port is None:
        return None
    return {
        "apiVersion": MONITORING_API_VERSION,
        "kind": SERVICE_MONITOR_KIND,
        "metadata": inputs.meta(inputs.name),
        "spec": {
            "selector": {"matchLabels": selector_labels(inputs.name, inputs.env.name)},
            "endpoints": [{"port": port, "path": metrics.path}],
        },
    }


def _alert(
    name: str, expr: str, severity: str, summary: str, wait: str | None = None
) -> dict[str, Any]:
    """``wait``: how long the condition must hold (Prometheus' ``for``), for flapping ones."""
    alert: dict[str, Any] = {"alert": name, "expr": expr}
    if wait is not None:
        alert["for"] = wait
    return {**alert, "labels": {"severity": severity}, "annotations": {"summary": summary}}


ALERTS: tuple[dict[str, Any], ...] = (
    _alert(
        "BandsyReconcileErrors",
        'sum by (kind) (rate(bandsy_reconciles_total{result="error"}[5m])) > 0',
        "warning",
        "Reconciles of {{ $labels.kind }} keep failing: see the operator's log",
        wait="15m",
    ),
    _alert(
        "BandsyPromotionBlocked",
        "time() - bandsy_promotion_blocked_since_seconds"
        f'{{reason!~"{"|".join(DELIBERATE_BLOCKS)}"}} > {PROMOTION_BLOCKED_ALERT_SECONDS}',
        "warning",
        "{{ $labels.service }} has not been promoted in {{ $labels.environment }} for over an "
        "hour ({{ $labels.reason }}): kubectl describe bsvc {{ $labels.service }}",
    ),
    _alert(
        "BandsyDatabaseUnreachable",
        "bandsy_database_server_up == 0",
        "critical",
        "The {{ $labels.backend }} server {{ $labels.server }} does not answer the operator",
        wait="5m",
    ),
    _alert(
        "BandsyBackupTooOld",
        # The age two of the environment's schedules allow (checks.allowed_backup_age).
        "time() - bandsy_backup_last_verified_timestamp_seconds"
        " > on (service, environment) bandsy_backup_allowed_age_seconds",
        "warning",
        "The newest verified backup of {{ $labels.service }} in {{ $labels.environment }} is "
        "older than two of its schedules: bandsyctl backups {{ $labels.service }}",
    ),
)


def build_prometheus_rule(namespace: str) -> Manifest:
    """The operator's alerts, in its own namespace (no owner: they go with the namespace)."""
    return stamp_applied_hash(
        {
            "apiVersion": MONITORING_API_VERSION,
            "kind": PROMETHEUS_RULE_KIND,
            "metadata": {
                "name": PROMETHEUS_RULE_NAME,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: FIELD_MANAGER, NAME_LABEL: PROMETHEUS_RULE_NAME},
            },
            "spec": {"groups": [{"name": PROMETHEUS_RULE_NAME, "rules": list(ALERTS)}]},
        }
    )
