"""``make bench`` at a toy size: the instrument itself works, and the behaviour it measures
(no writes while idle or after a restart) holds. Timings are printed by ``make bench``, never
asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_bench_runs_every_scenario_and_idle_writes_nothing(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bandsy_dev.bench",
            "--services",
            "3",
            "--large",
            "8",
            "--edits",
            "3",
            "--node-services",
            "2",
            "--idle-resync",
            "4",
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "hack")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["machine"]["cpus"] >= 1
    results = report["results"]
    assert set(results) >= {"converge", "converge_large", "idle", "latency", "memory", "restart"}
    converge = results["converge"]
    assert converge["databases"] == 3 * 3
    # Operator and floor run as often as each other; the medians are compared.
    assert len(converge["floor_runs_seconds"]) == len(converge["operator_runs_seconds"]) == 3
    assert converge["floor_seconds"] == sorted(converge["floor_runs_seconds"])[1]
    assert converge["operator_seconds"] == sorted(converge["operator_runs_seconds"])[1]
    large = results["converge_large"]
    assert large["services"] == 8 - 3
    assert large["databases"] == 0
    assert len(large["operator_runs_seconds"]) == 3
    assert results["latency"]["edits"] == 3
    node = results["node_latency"]  # CI runs as root: the node scenario runs
    assert node["edits"] == 3
    assert node["p50_seconds"] > 0
    assert set(results["memory"]) == {"base", "large", "restart"}
    for scenario in ("idle", "restart"):
        assert results[scenario]["api_writes_by_request"] == {}, scenario
        assert results[scenario]["sql_writes_by_statement"] == {}, scenario
    assert results["operator_log_tracebacks"] == 0
    assert "converge" in result.stdout  # the table
