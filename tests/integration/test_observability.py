"""The running operator's liveness endpoint and Prometheus metrics, scraped for real."""

from __future__ import annotations

import re
import urllib.request

import pytest

from conftest import OperatorProcess
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return int(response.status), response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{selector}}}" if labels else name) + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


async def test_healthz_and_metrics(operator: OperatorProcess) -> None:
    status, _ = fetch(f"http://127.0.0.1:{operator.liveness_port}/healthz")
    assert status == 200

    async def scraped() -> str:
        _, text = fetch(f"http://127.0.0.1:{operator.metrics_port}/metrics")
        assert sample(text, "bandsy_reconciles_total", kind="BandsyService", result="success") > 0
        assert (
            sample(text, "bandsy_reconciles_total", kind="BandsyEnvironment", result="success") > 0
        )
        assert sample(text, "bandsy_resyncs_total") >= 1  # RESYNC_SECONDS is 2 in tests
        return text

    text = await eventually(scraped, timeout=30)
    assert "bandsy_reconcile_duration_seconds_bucket" in text
    assert sample(text, "bandsy_managed_objects", kind="Deployment") > 0
    assert sample(text, "bandsy_managed_objects", kind="Namespace") > 0
    assert "bandsy_blocked_promotions " in text
    assert "bandsy_work_queue_depth " in text
    assert operator.metrics()["bandsy_work_queue_depth"] >= 0
    assert (
        sample(
            text,
            "bandsy_database_operations_total",
            backend="postgres",
            operation="ensure",
            result="success",
        )
        > 0
    )
