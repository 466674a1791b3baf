"""Prometheus metrics on ``/metrics`` (SPEC §8, §12): reconciles, their duration, database
operations and servers, the work queue, resyncs, blocked promotions, verified backups, managed
objects and costs. The alerts (``builders.monitoring``) and the dashboard in deploy/monitoring/
read them."""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from . import inventory
from .checks import allowed_backup_age
from .cron import CronError
from .jobs import parse_time
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
LEADER = Gauge(
    "bandsy_leader", "1 while this process holds the Lease and reconciles, 0 while it waits"
)


class WorldCollector(Collector):
    """Gauges read from the operator's view at scrape time, so they are never stale."""

    def __init__(self, world: World) -> None:
        self.world = world
        # The families of the last scrape, and of which world at which revision.
        self._last: tuple[World, int, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # All from the custom resources' statuses: a scrape before the world's next change
        # reuses the last one's (thousands of inventory entries are counted otherwise).
        world, revision = self.world, self.world.revision
        if self._last is None or self._last[:2] != (world, revision):
            self._last = (world, revision, list(self._families(world)))
        yield from self._last[2]

    def _families(self, world: World) -> Iterator[GaugeMetricFamily]:
        blocked = GaugeMetricFamily(
            "bandsy_blocked_promotions", "Service environments whose promotion a gate holds"
        )
        objects = GaugeMetricFamily(
            "bandsy_managed_objects", "Objects in the operators' inventories", labels=["kind"]
        )
        held = 0
        kinds: Tally[str] = Tally()
        # Scrapes run on the HTTP server's thread: sorted() copies the views in one step under
        # the GIL, so the event loop cannot resize them mid-iteration. Each status is decoded
        # once per scrape (the world keeps them packed).
        services = {name: k.status for name, k in sorted(world.services.items())}
        environments = {name: k.status for name, k in sorted(world.environments.items())}
        for status in [*services.values(), *environments.values()]:
            for env in (status.get("environments") or {}).values():
                held += any(
                    c["type"] == "PromotionBlocked" and c["status"] == "True"
                    for c in env.get("conditions") or []
                )
            for entry in status.get("inventory") or []:
                kinds[inventory.type_of(entry)[1]] += 1
        blocked.add_metric([], held)
        for kind, count in sorted(kinds.items()):
            objects.add_metric([kind], count)
        yield blocked
        yield objects
        yield self._costs(environments)
        yield from self._service_environments(world, services)
        yield self._database_servers(world)

    def _service_environments(
        self, world: World, statuses: Mapping[str, Mapping[str, Any]]
    ) -> Iterator[GaugeMetricFamily]:
        """Timestamps from each service's status per environment: since when a gate holds its
        promotion (the PromotionBlocked condition's transition), and its newest verified backup."""
        blocked = GaugeMetricFamily(
            "bandsy_promotion_blocked_since_seconds",
            "Since when (Unix time) a gate holds a service's promotion in an environment",
            labels=["service", "environment", "reason"],
        )
        verified = GaugeMetricFamily(
            "bandsy_backup_last_verified_timestamp_seconds",
            "When (Unix time) the newest verified backup of a service's database finished",
            labels=["service", "environment"],
        )
        allowed = GaugeMetricFamily(
            "bandsy_backup_allowed_age_seconds",
            "How old a service's newest verified backup may be: two of the environment's schedules",
            labels=["service", "environment"],
        )
        environments = world.valid_environments()
        for service, service_status in statuses.items():
            for env, status in sorted((service_status.get("environments") or {}).items()):
                if status.get("backup") and env in environments:
                    with contextlib.suppress(CronError):
                        if (age := allowed_backup_age(environments[env])) is not None:
                            allowed.add_metric([service, env], age.total_seconds())
                for condition in status.get("conditions") or []:
                    if condition["type"] == "PromotionBlocked" and condition["status"] == "True":
                        since = parse_time(condition.get("lastTransitionTime"))
                        if since is not None:
                            labels = [service, env, str(condition.get("reason", ""))]
                            blocked.add_metric(labels, since.timestamp())
                last = ((status.get("backup") or {}).get("lastVerified") or {}).get("at")
                if (at := parse_time(last)) is not None:
                    verified.add_metric([service, env], at.timestamp())
        yield blocked
        yield verified
        yield allowed

    def _database_servers(self, world: World) -> GaugeMetricFamily:
        servers = GaugeMetricFamily(
            "bandsy_database_server_up",
            "Whether a database server an environment names answered the operator last time (1)",
            labels=["backend", "server"],
        )
        for key, up in world.database_servers().items():
            backend, _, server = key.partition("|")
            servers.add_metric([backend, server], 1.0 if up else 0.0)
        return servers

    def _costs(self, statuses: Mapping[str, Mapping[str, Any]]) -> GaugeMetricFamily:
        costs = GaugeMetricFamily(
            "bandsy_environment_cost_monthly",
            "An environment's projected monthly cost (status.cost.monthly, SPEC §12)",
            labels=["environment"],
        )
        for name, status in statuses.items():
            monthly = (status.get("cost") or {}).get("monthly")
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
