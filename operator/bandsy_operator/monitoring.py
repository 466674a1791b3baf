"""Whether the cluster serves the Prometheus Operator's kinds (SPEC §12), asked at start and at
every resync, so a CRD installed (or removed) later is followed without a restart. Where
PrometheusRules are served, the operator's own alerts are applied to its namespace."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .apply import Applier
from .builders.monitoring import PROMETHEUS_RULE_NAME, build_prometheus_rule
from .concurrently import all_of
from .constants import MONITORING_API_VERSION, PROMETHEUS_RULE_PLURAL, SERVICE_MONITOR_PLURAL
from .kube import KubeApi
from .observation import Basis
from .served import serves

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitoringKinds:
    """The Prometheus Operator's kinds the cluster serves now."""

    service_monitors: bool = False
    prometheus_rules: bool = False


async def discover(api: KubeApi) -> MonitoringKinds:
    monitors, rules = await all_of(
        serves(api, SERVICE_MONITOR_PLURAL, MONITORING_API_VERSION),
        serves(api, PROMETHEUS_RULE_PLURAL, MONITORING_API_VERSION),
    )
    return MonitoringKinds(monitors, rules)


class Monitoring:
    """What the cluster serves, as last asked, and the operator's PrometheusRule kept applied."""

    def __init__(self, api: KubeApi, applier: Applier, namespace: str) -> None:
        self.api = api
        self.applier = applier
        self.namespace = namespace
        self.kinds = MonitoringKinds()

    async def follow(self) -> MonitoringKinds:
        """Ask again; the rule is read and, where it differs, applied. Raises the client's
        errors: the caller keeps what it knew and asks again later."""
        kinds = await discover(self.api)
        if kinds != self.kinds:
            log.info("the Prometheus Operator's kinds served: %s", kinds)
            self.kinds = kinds
        if kinds.prometheus_rules:
            applied = await self.applier.ensure(build_prometheus_rule(self.namespace), Basis.READ)
            if applied.refused:
                log.warning(
                    "PrometheusRule %s/%s exists without our managed-by label: left alone",
                    self.namespace,
                    PROMETHEUS_RULE_NAME,
                )
        return kinds
