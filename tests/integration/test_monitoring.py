"""Monitoring (SPEC §12) on the real control plane with the session's operator: nothing of the
Prometheus Operator's until its CRDs (its published ones, bandsy_dev.monitoring_crds) exist,
then a ServiceMonitor and the operator's PrometheusRule without a restart, each accepted by the
API server's strict field validation; and every alert and dashboard query names a metric the
running operator serves."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bandsy_dev.crd_files import crd_names, install, remove
from bandsy_dev.kubelet import make_deployment_ready
from bandsy_dev.monitoring_crds import crd_files
from bandsy_operator.apply import is_subset
from bandsy_operator.builders.inputs import ServedKinds, ServiceInputs
from bandsy_operator.builders.monitoring import (
    ALERTS,
    PROMETHEUS_RULE_NAME,
    build_prometheus_rule,
    build_service_monitor,
)
from bandsy_operator.constants import (
    MONITORING_API_VERSION,
    PROMETHEUS_RULE_KIND,
    SERVICE_MONITOR_KIND,
)
from bandsy_operator.kube import KubeApi, Manifest, ObjectRef
from bandsy_operator.manifest_yaml import dump_all
from bandsy_operator.models import parse_environment, parse_service
from bandsy_operator.promotion import Image
from bandsy_operator.settings import OperatorSettings
from conftest import REPO_ROOT, KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from promql import metric_names, served_names
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

OPERATOR_NAMESPACE = OperatorSettings().operator_namespace
MONITORING = REPO_ROOT / "deploy" / "monitoring"


@pytest.fixture
def crds_later(kubectl: KubectlRunner) -> Iterator[list[Path]]:
    """The CRD files, not installed yet; whatever the test installed is removed afterwards
    (with the objects of those kinds): other tests run without them."""
    files = crd_files()
    names = crd_names(files)
    assert kubectl("get", *names, check=False).returncode != 0, "installed before the test"
    yield files
    remove(kubectl, files)


def condition(body: Manifest | None, type_: str) -> dict[str, Any]:
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conditions if c["type"] == type_), {})


async def test_monitoring_objects_follow_the_crds(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess, crds_later: list[Path]
) -> None:
    env, name = f"mon-{uuid.uuid4().hex[:5]}", f"mon-{uuid.uuid4().hex[:5]}"
    kubectl.apply(environment_body(env, deletionPolicy="Delete"))
    body = service_body(name, tags(**{env: "v1"}), port=8080, metrics={"port": 9102})
    kubectl.apply(body)
    service_ref = ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name)
    monitor_ref = ObjectRef(MONITORING_API_VERSION, SERVICE_MONITOR_KIND, env, name)
    rule_ref = ObjectRef(
        MONITORING_API_VERSION, PROMETHEUS_RULE_KIND, OPERATOR_NAMESPACE, PROMETHEUS_RULE_NAME
    )

    async def converged() -> Manifest:
        """Ready, with the simulated kubelet reporting each new template ready."""
        await make_deployment_ready(kube, env, name)
        found = await kube.get(service_ref)
        assert found is not None
        assert found["status"].get("observedGeneration") == found["metadata"]["generation"]
        assert condition(found, "Ready")["status"] == "True", condition(found, "Ready")
        return found

    # Without the CRDs: Ready, its Service serves the metrics port, no ServiceMonitor attempted.
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", env, name)))
    found = await eventually(converged)
    assert not [e for e in found["status"]["inventory"] if SERVICE_MONITOR_KIND in e]
    svc = await kube.get(ObjectRef("v1", "Service", env, name))
    assert svc is not None
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8080, "metrics": 9102}

    # The CRDs installed while the operator runs: within a resync, no restart.
    pid = operator.pid
    install(kubectl, crds_later)
    monitor = await eventually(lambda: kube.get(monitor_ref))
    rule = await eventually(lambda: kube.get(rule_ref))
    assert operator.pid == pid
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics"}]
    assert monitor["metadata"]["ownerReferences"][0]["name"] == name

    # What the builders make is what the API server stored (nothing pruned by the CRDs'
    # schemas), and a server-side dry run with strict field validation accepts it as it is.
    stored = parse_service(await converged())
    environment = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env))
    inputs = ServiceInputs(
        stored,
        parse_environment(environment or {}),
        Image(stored.spec.image.repository, "v1"),
        b"key",
        kinds=ServedKinds(service_monitors=True),
    )
    built = [build_service_monitor(inputs), build_prometheus_rule(OPERATOR_NAMESPACE)]
    for desired, live in zip(built, (monitor, rule), strict=True):
        assert desired is not None
        assert is_subset(desired["spec"], live["spec"]), desired["kind"]
    dry_run = ("apply", "--server-side", "--dry-run=server", "--validate=strict")
    kubectl(*dry_run, "--field-manager=test-monitoring", "-f", "-", input=dump_all(built))
    # deploy/monitoring (the operator's PodMonitor, the dashboard's ConfigMap) applies too.
    shipped = kubectl(*dry_run, "--field-manager=test-monitoring", "-k", str(MONITORING))
    assert "podmonitor.monitoring.coreos.com/bandsy-operator" in shipped.stdout

    # spec.metrics removed: the ServiceMonitor is pruned, the Service loses the port.
    del body["spec"]["metrics"]
    kubectl.apply(body)

    async def pruned() -> bool:
        assert await kube.get(monitor_ref) is None
        live = await kube.get(ObjectRef("v1", "Service", env, name))
        return [p["name"] for p in (live or {})["spec"]["ports"]] == ["http"]

    await eventually(pruned)
    await eventually(converged)

    # Metrics again, then the CRDs removed under it and its ServiceMonitor changed at once
    # (its apply may meet the kind gone before a resync notices): the inventory's
    # ServiceMonitor is gone with them and the service converges again.
    body["spec"]["metrics"] = {"port": 9102}
    kubectl.apply(body)
    await eventually(lambda: kube.get(monitor_ref))
    remove(kubectl, crds_later)
    body["spec"]["metrics"]["path"] = "/internal/metrics"
    kubectl.apply(body)

    async def without_monitor() -> Manifest:
        found = await converged()
        assert not [e for e in found["status"]["inventory"] if SERVICE_MONITOR_KIND in e]
        return found

    await eventually(without_monitor)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


def scrape(port: int) -> str:
    """The whole page, its # TYPE lines too (OperatorProcess.metrics keeps the samples)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_alerts_and_dashboard_name_metrics_the_operator_serves(
    operator: OperatorProcess,
) -> None:
    served = served_names(await asyncio.to_thread(scrape, operator.metrics_port))
    dashboard = json.loads((MONITORING / "bandsy-operator-dashboard.json").read_text())
    queries = {
        f"panel {panel['title']!r}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    queries.update({f"alert {alert['alert']}": alert["expr"] for alert in ALERTS})
    for where, expr in queries.items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= served, f"{where}: {sorted(names - served)} not on /metrics"
    assert len(queries) >= 16
