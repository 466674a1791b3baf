"""What the benchmark observes: API server write counters, SQL writes, readiness, idleness."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bandsy_operator.constants import API_VERSION

from ..operator_process import KubectlRunner, OperatorProcess

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# The API server renews its own identity lease every few seconds; nobody else writes leases.
IGNORED_RESOURCES = frozenset({"leases"})
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def api_writes(kubectl: KubectlRunner) -> Counter[str]:
    """Write requests the API server has served, by ``verb resource[/subresource]``."""
    counts: Counter[str] = Counter()
    for line in kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        if labels.get("verb") not in WRITE_VERBS or labels.get("resource") in IGNORED_RESOURCES:
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[f"{labels['verb']} {resource}"] += int(float(match.group("value")))
    return counts


def difference(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {key: n - before[key] for key, n in sorted(after.items()) if n > before[key]}


# Reads and session housekeeping (a pooled connection's reset sends CLOSE ALL, UNLISTEN *).
READ_ONLY_SQL = re.compile(
    r"^\s*(select|show|begin|commit|rollback|set|reset|close|unlisten|discard|deallocate)\b",
    re.IGNORECASE,
)


async def sql_writes(connect: Callable[[], Awaitable[asyncpg.Connection]]) -> Counter[str]:
    """Statements other than reads the Postgres server has run (pg_stat_statements)."""
    conn = await connect()
    try:
        rows = await conn.fetch("SELECT query, calls FROM pg_stat_statements")
    finally:
        await conn.close()
    counts: Counter[str] = Counter()
    for row in rows:
        if not READ_ONLY_SQL.match(row["query"]):
            counts[" ".join(row["query"].split())[:80]] += int(row["calls"])
    return counts


def ready_environments(service: dict[str, Any]) -> int:
    environments = (service.get("status") or {}).get("environments") or {}
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in env.get("conditions") or [])
        for env in environments.values()
    )


async def wait_until(
    probe: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.5
) -> float:
    """Seconds until ``probe`` is true; raises TimeoutError naming ``what`` after ``within``."""
    started = time.perf_counter()
    while not await probe():
        if time.perf_counter() - started > within:
            raise TimeoutError(f"not {what} after {within:.0f} s")
        await asyncio.sleep(interval)
    return time.perf_counter() - started


async def count_ready(list_services: Callable[[], Awaitable[list[dict[str, Any]]]]) -> int:
    return sum(ready_environments(s) for s in await list_services())


def idle(operator: OperatorProcess, reconciles_at_least: float = 0) -> bool:
    """Nothing queued or running, and at least ``reconciles_at_least`` reconciles done."""
    samples = operator.metrics()
    done = sum(v for k, v in samples.items() if k.startswith("bandsy_reconciles_total{"))
    return samples.get("bandsy_work_queue_depth", 1) == 0 and done >= reconciles_at_least


def reconciles(operator: OperatorProcess) -> float:
    samples = operator.metrics()
    return sum(v for k, v in samples.items() if k.startswith("bandsy_reconciles_total{"))


SERVICES = (API_VERSION, "BandsyService")
