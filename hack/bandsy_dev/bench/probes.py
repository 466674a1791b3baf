"""What the benchmark observes: API server write counters, SQL writes, readiness, idleness."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from bandsy_operator.constants import API_VERSION, ENVIRONMENT_PLURAL, SERVICE_PLURAL

from ..operator_process import KubectlRunner, OperatorProcess

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# The API server renews its own identity lease every few seconds; nobody else writes leases.
IGNORED_RESOURCES = frozenset({"leases"})
# POSTs that ask a question and store nothing (the operator's SelfSubjectReview at start).
REVIEWS = frozenset(
    {"selfsubjectreviews", "selfsubjectaccessreviews", "subjectaccessreviews", "tokenreviews"}
)
_SAMPLE = re.compile(r"^(?P<name>\w+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _samples(kubectl: KubectlRunner, metric: str) -> Iterator[tuple[dict[str, str], float]]:
    """Labels and value of each sample of one metric in the API server's ``/metrics``."""
    for line in kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = _SAMPLE.match(line)
        if match is not None and match.group("name") == metric:
            yield dict(_LABEL.findall(match.group("labels"))), float(match.group("value"))


def api_requests(kubectl: KubectlRunner, verbs: frozenset[str] | None = None) -> Counter[str]:
    """Requests the API server has served, by ``verb resource[/subresource]`` (only ``verbs``
    when given)."""
    counts: Counter[str] = Counter()
    for labels, value in _samples(kubectl, "apiserver_request_total"):
        if verbs is not None and labels.get("verb") not in verbs:
            continue
        if labels.get("resource") in IGNORED_RESOURCES:
            continue
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[f"{labels['verb']} {resource}"] += int(value)
    return counts


def active_watches(kubectl: KubectlRunner) -> Counter[str]:
    """Watches open right now, by resource (a watch is counted in apiserver_request_total only
    once it ends)."""
    counts: Counter[str] = Counter()
    for labels, value in _samples(kubectl, "apiserver_longrunning_requests"):
        if labels.get("verb") == "WATCH":
            counts[labels.get("resource", "")] += int(value)
    return counts


def api_writes(kubectl: KubectlRunner) -> Counter[str]:
    requests = api_requests(kubectl, WRITE_VERBS)
    return Counter({r: n for r, n in requests.items() if r.partition(" ")[2] not in REVIEWS})


def by_verb(requests: dict[str, int]) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for request, n in requests.items():
        verbs[request.split()[0]] += n
    return dict(verbs.most_common())


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


async def settle_postgres(connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
    """Dead rows in the shared catalogs (an earlier run's 300 dropped databases and roles) and
    dirty buffers vacuumed and written out: without this, the same CREATE DATABASEs cost
    PostgreSQL more CPU after each deletion (30, 39, 43 CPU-seconds in one run). Every measured
    run of either side starts from this state."""
    conn = await connect()
    try:
        await conn.execute("VACUUM")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def sql_time(connect: Callable[[], Awaitable[asyncpg.Connection]]) -> dict[str, float]:
    """Milliseconds the Postgres server has spent executing each kind of statement so far
    (pg_stat_statements), by the statement's first two words."""
    conn = await connect()
    try:
        rows = await conn.fetch("SELECT query, total_exec_time FROM pg_stat_statements")
    finally:
        await conn.close()
    spent: dict[str, float] = {}
    for row in rows:
        kind = " ".join(row["query"].split()[:2]).upper()
        spent[kind] = spent.get(kind, 0.0) + float(row["total_exec_time"])
    return spent


COLLECTOR_VERBS = frozenset({"GET", "DELETE"})


async def settle_garbage_collector(
    kubectl: KubectlRunner, quiet: float = 3.0, within: float = 600.0
) -> None:
    """Wait until nobody has read or deleted an object for ``quiet`` seconds: after a run is
    deleted, the garbage collector goes on deleting what the deleted custom resources owned
    (thousands of objects of services without a finalizer) long after they are gone, and a
    measured run meanwhile would share the API server with it."""

    def collecting() -> Counter[str]:
        # Objects only: not the bench's own scrapes of /metrics (no resource).
        requests = api_requests(kubectl, COLLECTOR_VERBS)
        return Counter(
            {r: n for r, n in requests.items() if r.split(" ", 1)[1][:1] not in ("", "/")}
        )

    started = changed = time.monotonic()
    seen = collecting()
    while time.monotonic() - changed < quiet:
        if time.monotonic() - started > within:
            raise TimeoutError(f"objects still read or deleted after {within:.0f} s")
        await asyncio.sleep(1.0)
        if (now := collecting()) != seen:
            seen, changed = now, time.monotonic()
    if (waited := time.monotonic() - started) > 2 * quiet:
        print(f"bench: the garbage collector settled in {waited:.0f} s", file=sys.stderr)


def ready_environments(service: dict[str, Any]) -> int:
    environments = (service.get("status") or {}).get("environments") or {}
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in env.get("conditions") or [])
        for env in environments.values()
    )


def ready_reasons(service: dict[str, Any]) -> dict[str, str]:
    """Each environment's Ready condition, as ``status/reason``."""
    environments = (service.get("status") or {}).get("environments") or {}
    return {
        env: next(
            (
                f"{c['status']}/{c['reason']}"
                for c in s.get("conditions") or []
                if c["type"] == "Ready"
            ),
            "none",
        )
        for env, s in environments.items()
    }


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


def idle(operator: OperatorProcess, reconciles_at_least: float = 0) -> bool:
    """Nothing queued or running, and at least ``reconciles_at_least`` reconciles done."""
    samples = operator.metrics()
    done = sum(v for k, v in samples.items() if k.startswith("bandsy_reconciles_total{"))
    return samples.get("bandsy_work_queue_depth", 1) == 0 and done >= reconciles_at_least


def reconciles(operator: OperatorProcess) -> float:
    samples = operator.metrics()
    return sum(v for k, v in samples.items() if k.startswith("bandsy_reconciles_total{"))


SERVICES = (API_VERSION, "BandsyService")
CUSTOM_RESOURCES = (ENVIRONMENT_PLURAL, SERVICE_PLURAL)

# The servers on this machine, by process name; everything else is "other".
# (A process name is cut to 15 characters: the controller manager is "kube-controller".)
_COMPONENTS = {
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kube-controller": "kube-controller-manager",
    "redis-server": "redis-server",
}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(operator_pid: int) -> Counter[str]:
    """CPU ticks used so far by each component: live processes with their reaped children
    (a finished Postgres backend is in its postmaster's, a kubectl run in the bench's), so
    the difference of two readings is what each component used in between."""
    ticks: Counter[str] = Counter()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            line = Path(entry.path, "stat").read_text()
        except OSError:  # gone since the listing
            continue
        pid, comm = int(entry.name), line[line.index("(") + 1 : line.rindex(")")]
        fields = line[line.rindex(")") + 2 :].split()
        used = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        if pid == operator_pid:
            ticks["operator"] += used
        elif comm == "postgres":
            ticks[_postgres_part(pid)] += used
        elif pid == os.getpid():
            ticks["bench (kubelet simulation, probes, floor client)"] += used
        else:
            ticks[_COMPONENTS.get(comm, "other")] += used
    total = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    ticks["machine busy"] = sum(int(total[i]) for i in (0, 1, 2, 5, 6, 7))
    return ticks


def _postgres_part(pid: int) -> str:
    """A server process by its title ("postgres: checkpointer"); finished backends are in the
    postmaster's reaped-children time."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "postgres"
    if not title.startswith("postgres: "):
        return "postgres (postmaster, finished backends)"
    if "(" in title:  # "postgres: user db 127.0.0.1(port) ACTION"
        return "postgres backends"
    return "postgres " + title.removeprefix("postgres: ").split()[0]


def cpu_seconds(before: Counter[str], after: Counter[str]) -> dict[str, float]:
    return {
        key: round((after[key] - before[key]) / _TICK, 1)
        for key in sorted(after, key=lambda k: before[k] - after[k])
        if after[key] > before[key]
    }
