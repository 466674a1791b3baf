"""The operator against its floor, each run the same number of times, interleaved (issue 18): one
slow stretch of this machine (PostgreSQL's, say) then hits both sides instead of one. Medians
are compared, and the spread and CPU-seconds say how far one run can be trusted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

MACHINE = "machine busy"
API_SERVER = "kube-apiserver"
POSTGRES = "postgres"  # the prefix of PostgreSQL's components (backends, walwriter, ...)


def median_run(runs: Sequence[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    """The run in the middle by ``key`` (the lower middle of an even count)."""
    return sorted(runs, key=lambda run: run[key])[(len(runs) - 1) // 2]


def _cpu(run: dict[str, Any], component: str) -> float:
    return float(run["cpu_seconds"].get(component, 0.0))


def outside_postgres(run: dict[str, Any]) -> float:
    """The machine's busy CPU less PostgreSQL's processes': the same CREATE DATABASEs cost
    PostgreSQL 13 to 22 CPU-seconds from one run to the next, on either side, which the wall
    ratio carries; what is left is the API server's, the clients' and the operator's."""
    postgres = sum(v for k, v in run["cpu_seconds"].items() if k.startswith(POSTGRES))
    return _cpu(run, MACHINE) - float(postgres)


def _median(values: Sequence[float]) -> float:
    return sorted(values)[(len(values) - 1) // 2]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b > 0 else None


def summary(
    operator_runs: Sequence[dict[str, Any]], floor_runs: Sequence[dict[str, Any]], bar: float
) -> dict[str, Any]:
    """Seconds, CPU-seconds and their ratios; passed when the ratio of the medians is within
    ``bar``."""
    operator, floor = median_run(operator_runs), median_run(floor_runs)
    operator_seconds = [float(r["seconds"]) for r in operator_runs]
    floor_seconds = [float(r["seconds"]) for r in floor_runs]
    ratio = _ratio(operator["seconds"], floor["seconds"])

    def cpu_ratio(measure: Callable[[dict[str, Any]], float]) -> float | None:
        return _ratio(
            _median([measure(r) for r in operator_runs]),
            _median([measure(r) for r in floor_runs]),
        )

    return {
        "runs": len(operator_runs),
        "operator_seconds": operator["seconds"],
        "floor_seconds": floor["seconds"],
        "operator_runs_seconds": operator_seconds,
        "floor_runs_seconds": floor_seconds,
        "operator_spread_seconds": [min(operator_seconds), max(operator_seconds)],
        "floor_spread_seconds": [min(floor_seconds), max(floor_seconds)],
        "ratio": ratio,
        # The whole machine's busy CPU, and the API server's, operator side over floor side.
        "machine_cpu_ratio": cpu_ratio(lambda run: _cpu(run, MACHINE)),
        "outside_postgres_cpu_ratio": cpu_ratio(outside_postgres),
        "api_server_cpu_ratio": cpu_ratio(lambda run: _cpu(run, API_SERVER)),
        "operator_run": operator,
        "floor_run": floor,
        "bar": f"ratio <= {bar}",
        "passed": ratio is not None and ratio <= bar,
    }
