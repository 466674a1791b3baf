"""The bench's comparison of operator and floor runs (pure)."""

from __future__ import annotations

from typing import Any

from bandsy_dev.bench.compare import median_run, summary


def run(seconds: float, machine: float, api: float, postgres: float = 0.0) -> dict[str, Any]:
    cpu = {"machine busy": machine, "kube-apiserver": api, "postgres backends": postgres}
    return {"seconds": seconds, "cpu_seconds": cpu}


def test_the_median_run_is_the_middle_one_and_the_lower_middle_of_an_even_count() -> None:
    assert median_run([run(3, 0, 0), run(1, 0, 0), run(2, 0, 0)])["seconds"] == 2
    assert median_run([run(4, 0, 0), run(1, 0, 0), run(3, 0, 0), run(2, 0, 0)])["seconds"] == 2


def test_medians_are_compared_with_spread_and_cpu_beside_them() -> None:
    operator = [run(12.0, 30, 10), run(11.0, 28, 9), run(20.0, 50, 16)]
    floor = [run(10.0, 20, 5), run(14.0, 26, 7), run(9.0, 19, 4)]
    result = summary(operator, floor, bar=1.2)
    assert result["operator_seconds"] == 12.0
    assert result["floor_seconds"] == 10.0
    assert result["ratio"] == 1.2
    assert result["passed"]
    assert result["operator_spread_seconds"] == [11.0, 20.0]
    assert result["floor_spread_seconds"] == [9.0, 14.0]
    assert result["machine_cpu_ratio"] == 1.5  # 30 / 20
    assert result["api_server_cpu_ratio"] == 2.0  # medians: 10 / 5
    assert not summary(operator, floor, bar=1.1)["passed"]


def test_cpu_outside_postgresql_is_compared_too() -> None:
    # Operator side: 40 - 20 = 20 outside PostgreSQL; floor: 30 - 15 = 15.
    operator = [run(20.0, 40, 12, postgres=20), run(21.0, 44, 13, postgres=26)]
    floor = [run(15.0, 30, 8, postgres=15), run(16.0, 33, 9, postgres=14)]
    result = summary(operator, floor, bar=1.2)
    assert result["outside_postgres_cpu_ratio"] == round(18 / 15, 2)  # medians of 20, 18 / 15, 19
    assert result["machine_cpu_ratio"] == round(40 / 30, 2)
