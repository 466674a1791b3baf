"""Prometheus metrics on ``/metrics`` (SPEC §8): reconciles, their duration, database
operations, the work queue, resyncs, blocked promotions and managed objects."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from .kube import ObjectRef
from .world import World

RECONCILES = Counter(
    "bandsy_reconciles_total", "Reconciles by custom resource kind and result", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "bandsy_reconcile_duration_seconds",
    "Time to reconcile one custom resource",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DATABASE_OPERATIONS = Counter(
    "bandsy_database_operations_total",
    "Database account operations by backend, operation and result",
    ["backend", "operation", "result"],
)

WORK_QUEUE_DEPTH = Gauge(
    "bandsy_work_queue_depth", "Custom resources waiting for or in a reconcile (0: idle)"
)
RESYNCS = Counter("bandsy_resyncs_total", "Periodic resyncs that queued every custom resource")


class WorldCollector(Collector):
    """Gauges read from the operator's view at scrape time, so they are never stale."""

    def __init__(self, world: World) -> None:
        self.world = world

    def collect(self) -> Iterator[GaugeMetricFamily]:
        blocked = GaugeMetricFamily(
            "bandsy_blocked_promotions", "Service environments whose promotion a gate holds"
        )
        objects = GaugeMetricFamily(
            "bandsy_managed_objects", "Objects in the operators' inventories", labels=["kind"]
        )
        held = 0
        kinds: Tally[str] = Tally()
        # Scrapes run on the HTTP server's thread: list() copies the views in one step under
        # the GIL, so the event loop cannot resize them mid-iteration.
        statuses = [k.status for k in list(self.world.services.values())]
        statuses += [k.status for k in list(self.world.environments.values())]
        for status in statuses:
            for env in (status.get("environments") or {}).values():
                held += any(
                    c["type"] == "PromotionBlocked" and c["status"] == "True"
                    for c in env.get("conditions") or []
                )
            for entry in status.get("inventory") or []:
                kinds[ObjectRef.parse(entry.partition("|")[2]).kind] += 1
        blocked.add_metric([], held)
        for kind, count in sorted(kinds.items()):
            objects.add_metric([kind], count)
        yield blocked
        yield objects
        yield self._costs()

    def _costs(self) -> GaugeMetricFamily:
        costs = GaugeMetricFamily(
            "bandsy_environment_cost_monthly",
            "An environment's projected monthly cost (status.cost.monthly, SPEC §12)",
            labels=["environment"],
        )
        for name, known in sorted(self.world.environments.items()):
            monthly = (known.status.get("cost") or {}).get("monthly")
            if monthly is not None:
                costs.add_metric([name], float(monthly))
        return costs


class _Exporter:
    """The process's one collector and HTTP server. kopf retries a failed start-up handler in
    the same process, where the registry refuses a second collector of the same metrics and the
    port a second server: the retry only points the collector at its new world."""

    collector: WorldCollector | None = None


def serve(port: int, world: World) -> None:
    """Serve ``/metrics`` on ``port`` (once per process) about ``world`` (the latest given)."""
    if _Exporter.collector is not None:
        _Exporter.collector.world = world
        return
    collector = WorldCollector(world)
    # The server first: should it fail (port taken), nothing is registered and a retry starts over.
    start_http_server(port)
    REGISTRY.register(collector)
    _Exporter.collector = collector
