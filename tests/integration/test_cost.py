"""An environment's cost (SPEC §12) as the operator reports it, on the real control plane with
the session's operator: status.cost, the COST column, BudgetExceeded and its Event, the metric,
and `bandsyctl cost`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body
from recorded_events import events_about
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BIN = Path(sys.executable).parent


async def environment_status(kube: KubeApi, env: str) -> dict[str, Any]:
    found = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env))
    return dict((found or {}).get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in status.get("conditions") or [] if c["type"] == type_), {})


async def test_cost_follows_the_services_and_the_budget(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], operator: OperatorProcess
) -> None:
    env, name = f"cost-{uuid.uuid4().hex[:5]}", f"cost-{uuid.uuid4().hex[:5]}"
    prices = {"cpuCoreHour": 0.04, "memoryGiBHour": 0.005, "monthlyBudget": 100}
    kubectl.apply(environment_body(env, cost=prices, deletionPolicy="Delete"))
    requests = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    body = service_body(name, {env: {"image": {"tag": "v1"}, "replicas": 2}}, resources=requests)
    kubectl.apply(body)

    async def costs(monthly: str) -> dict[str, Any]:
        status = await environment_status(kube, env)
        cost = status.get("cost") or {}
        assert cost.get("monthly") == monthly, cost
        return status

    # (0.5 x 0.04 + 0.5 x 0.005) x 730 x 2
    status = await eventually(lambda: costs("32.85"))
    assert status["cost"]["byService"][name]["replicas"] == 2
    assert status["cost"]["prices"]["source"] == "spec.cost"
    assert condition(status, "BudgetExceeded")["reason"] == "WithinBudget"
    listed = kubectl("get", "benv", env, "-o", "wide").stdout
    assert "COST" in listed.splitlines()[0]
    assert "32.85" in listed
    assert "100.00" in listed  # the budget, in the wide columns

    # Scaling the service is seen through its watch: the environment is reconciled again.
    body["spec"]["environments"][env]["replicas"] = 8
    kubectl.apply(body)
    status = await eventually(lambda: costs("131.40"))
    exceeded = condition(status, "BudgetExceeded")
    assert (exceeded["status"], exceeded["reason"]) == ("True", "BudgetExceeded")
    assert name in exceeded["message"]
    warned = await eventually(lambda: events_about(kube, env, "BudgetExceeded"))
    assert warned[0]["type"] == "Warning"
    metrics = operator.metrics()
    assert metrics[f'bandsy_environment_cost_monthly{{environment="{env}"}}'] == 131.4

    shown = subprocess.run(
        [str(BIN / "bandsyctl"), "cost", "--env", env, "-o", "json"],
        env={**os.environ, "KUBECONFIG": servers["KUBECONFIG"]},
        capture_output=True,
        text=True,
        check=True,
    )
    unknown = subprocess.run(
        [str(BIN / "bandsyctl"), "cost", "--env", "nowhere"],
        env={**os.environ, "KUBECONFIG": servers["KUBECONFIG"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (unknown.returncode, "no BandsyEnvironment 'nowhere'" in unknown.stderr) == (1, True)
    rows = json.loads(shown.stdout)
    assert [(r["service"], r["monthly"]) for r in rows] == [(name, "131.40"), ("(total)", "131.40")]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    await eventually(lambda: costs("0.00"))
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
