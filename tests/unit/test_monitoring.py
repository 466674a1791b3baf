"""SPEC §12 monitoring, the pure parts: the ServiceMonitor and the Service's metrics port, the
operator's alerts, whether a CRD is served, and the gauges the alerts read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from bandsy_operator.builders.inputs import ServedKinds, ServiceInputs
from bandsy_operator.builders.monitoring import (
    ALERTS,
    build_prometheus_rule,
    build_service_monitor,
)
from bandsy_operator.builders.service import build_service_objects
from bandsy_operator.constants import APPLIED_HASH_ANNOTATION, MANAGED_BY_LABEL
from bandsy_operator.metrics import WorldCollector
from bandsy_operator.models import server_key
from bandsy_operator.promotion import Image
from bandsy_operator.served import served
from bandsy_operator.world import World
from factories import environment, environment_body, service, service_body, tags
from promql import metric_names, served_names

Manifest = dict[str, Any]
DASHBOARD = (
    Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "bandsy-operator-dashboard.json"
)


def objects(service_monitors: bool = True, **spec: Any) -> dict[str, Manifest]:
    svc = service("metered", tags(develop="v1"), **spec)
    inputs = ServiceInputs(
        svc,
        environment("develop"),
        Image(svc.spec.image.repository, "v1"),
        b"k" * 32,
        kinds=ServedKinds(service_monitors=service_monitors),
    )
    return {o["kind"]: o for o in build_service_objects(inputs, lambda n: "g" * n)}


def test_a_service_monitor_scrapes_the_named_metrics_port() -> None:
    built = objects(port=8080, metrics={"port": 9100, "path": "/internal/metrics"})
    monitor = built["ServiceMonitor"]
    assert (monitor["metadata"]["name"], monitor["metadata"]["namespace"]) == (
        "metered",
        "develop",
    )
    assert monitor["metadata"]["labels"][MANAGED_BY_LABEL] == "bandsy-operator"
    assert monitor["metadata"]["ownerReferences"][0]["kind"] == "BandsyService"
    assert APPLIED_HASH_ANNOTATION in monitor["metadata"]["annotations"]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/internal/metrics"}]
    # It selects the Service by labels the Service carries.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= built["Service"]["metadata"]["labels"].items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in built["Service"]["spec"]["ports"]}
    assert ports == {"http": (8080, "http"), "metrics": (9100, "metrics")}
    (container,) = built["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "metrics": 9100,
    }


def test_metrics_on_the_service_port_or_of_a_worker() -> None:
    same = objects(port=8080, metrics={"port": 8080})
    assert same["ServiceMonitor"]["spec"]["endpoints"] == [{"port": "http", "path": "/metrics"}]
    assert [p["name"] for p in same["Service"]["spec"]["ports"]] == ["http"]
    # A worker has no Service, but for its metrics.
    worker = objects(metrics={"port": 9100})
    assert [(p["name"], p["port"]) for p in worker["Service"]["spec"]["ports"]] == [
        ("metrics", 9100)
    ]
    assert "Service" not in objects()


def test_no_service_monitor_without_metrics_or_without_the_crd() -> None:
    assert "ServiceMonitor" not in objects(port=8080)
    without_crd = objects(service_monitors=False, port=8080, metrics={"port": 9100})
    assert "ServiceMonitor" not in without_crd
    assert (
        len(without_crd["Service"]["spec"]["ports"]) == 2
    )  # the port serves Prometheus all the same
    svc = service("metered", tags(develop="v1"), metrics={"port": 9100})
    inputs = ServiceInputs(svc, environment("develop"), Image("r", "v1"), b"k")
    assert build_service_monitor(inputs) is None


def test_the_operators_alerts() -> None:
    rule = build_prometheus_rule("ops")
    assert (rule["kind"], rule["metadata"]["namespace"]) == ("PrometheusRule", "ops")
    assert rule["metadata"]["labels"][MANAGED_BY_LABEL] == "bandsy-operator"
    (group,) = rule["spec"]["groups"]
    alerts = {alert["alert"]: alert for alert in group["rules"]}
    assert set(alerts) == {
        "BandsyReconcileErrors",
        "BandsyPromotionBlocked",
        "BandsyDatabaseUnreachable",
        "BandsyBackupTooOld",
    }
    assert "> 3600" in alerts["BandsyPromotionBlocked"]["expr"]
    assert (
        'reason!~"EnvironmentFrozen|SoakTimeNotElapsed"' in alerts["BandsyPromotionBlocked"]["expr"]
    )
    assert "bandsy_backup_allowed_age_seconds" in alerts["BandsyBackupTooOld"]["expr"]
    assert alerts["BandsyDatabaseUnreachable"]["for"] == "5m"
    assert "for" not in alerts["BandsyBackupTooOld"]
    assert all(alert["labels"]["severity"] in ("warning", "critical") for alert in ALERTS)


def test_promql_names_are_told_from_labels_functions_and_numbers() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(a_bucket{kind="x"}[5m]))) '
        "> on (kind) group_left b_total or time() - c > 1e3 and d offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def status_with(blocked_since: str, verified_at: str) -> dict[str, Any]:
    blocked = {
        "type": "PromotionBlocked",
        "status": "True",
        "reason": "NotReadyUpstream",
        "lastTransitionTime": blocked_since,
    }
    return {
        "environments": {
            "production": {
                "conditions": [blocked],
                "backup": {"lastVerified": {"at": verified_at}},
            },
            "develop": {"conditions": [{**blocked, "status": "False"}]},
        }
    }


def scrape(world: World) -> str:
    registry = CollectorRegistry()
    registry.register(WorldCollector(world))
    return generate_latest(registry).decode()


def test_the_gauges_the_alerts_read() -> None:
    world = World()
    body = service_body("web", tags(production="v1"))
    body["metadata"].update(uid="u1", resourceVersion="2")
    body["status"] = status_with("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    world.observe_service(body)
    postgres = {"host": "db", "adminSecretRef": {"namespace": "ops", "name": "pg"}}
    storage = {"s3": {"bucket": "b", "credentialsSecretRef": {"namespace": "ops", "name": "s3"}}}
    backups = {"schedule": "0 3 * * 1-5", "storage": storage}  # Friday to Monday: 3 days
    env = environment_body("production", postgres=postgres, backups=backups)
    env["metadata"].update(uid="u2", resourceVersion="3")
    world.observe_environment(env)
    # A server no environment names any more is history: not reported.
    world.note_database_servers(
        [server_key("redis", "gone:6379")], [server_key("postgres", "db:5432")]
    )
    text = scrape(world)
    assert (
        'bandsy_promotion_blocked_since_seconds{environment="production",reason="NotReadyUpstream",'
        'service="web"} 1.7672256e+09' in text
    )
    assert 'environment="develop"' not in text  # not blocked there, no backup there
    assert (
        'bandsy_backup_last_verified_timestamp_seconds{environment="production",service="web"} '
        "1.767312e+09" in text
    )
    assert (
        'bandsy_backup_allowed_age_seconds{environment="production",service="web"} 518400.0' in text
    )
    assert 'bandsy_database_server_up{backend="postgres",server="db:5432"} 0.0' in text
    assert "gone:6379" not in text
    world.note_database_servers([server_key("postgres", "db:5432")], [])
    assert 'bandsy_database_server_up{backend="postgres",server="db:5432"} 1.0' in scrape(world)


def test_a_scrape_computes_the_gauges_again_only_after_the_world_changed() -> None:
    world = World()
    collector = WorldCollector(world)
    registry = CollectorRegistry()
    registry.register(collector)
    first = list(collector.collect())
    assert [id(f) for f in collector.collect()] == [id(f) for f in first]  # nothing new
    body = service_body("web", tags(production="v1"))
    body["metadata"].update(uid="u1", resourceVersion="2")
    body["status"] = {"inventory": ["production|v1|ConfigMap|production|web-config"]}
    world.observe_service(body)
    assert 'bandsy_managed_objects{kind="ConfigMap"} 1.0' in generate_latest(registry).decode()
    world.observe_service(body)  # the same version again: no change
    unchanged = list(collector.collect())
    assert [id(f) for f in collector.collect()] == [id(f) for f in unchanged]
    world.forget_service(body)
    assert "ConfigMap" not in generate_latest(registry).decode()
    postgres = {"host": "db", "adminSecretRef": {"namespace": "ops", "name": "pg"}}
    env = environment_body("production", postgres=postgres)
    env["metadata"].update(uid="u2", resourceVersion="3")
    world.observe_environment(env)
    world.note_database_servers([], [server_key("postgres", "db:5432")])
    assert 'server="db:5432"} 0.0' in generate_latest(registry).decode()
    world.note_database_servers([server_key("postgres", "db:5432")], [])
    assert 'server="db:5432"} 1.0' in generate_latest(registry).decode()


def test_every_alert_and_panel_reads_a_gauge_or_counter_of_the_operator() -> None:
    """The fast check; tests/integration/test_monitoring.py asks the running operator."""
    served = served_names(generate_latest(REGISTRY).decode() + scrape(World()))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [alert["expr"] for alert in ALERTS]
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= served, (expr, names - served)


def test_a_crd_is_served_once_established_with_the_version() -> None:
    crd: Manifest = {
        "spec": {"versions": [{"name": "v1", "served": True}]},
        "status": {"conditions": [{"type": "Established", "status": "True"}]},
    }
    assert served(crd)
    assert not served(None)
    assert not served({**crd, "status": {"conditions": []}})
    assert not served({**crd, "spec": {"versions": [{"name": "v1", "served": False}]}})
    assert not served(crd, "monitoring.coreos.com/v2")
