"""``make bench``: start fresh local servers, run the operator as it ships, measure SPEC §9.

Scenarios, in order, on one node-less cluster: converge (N services x 3 environments with
Postgres, from empty to all Ready) and its floor; idle cost of two forced resyncs; latency of tag
edits; memory at N services; then with the large count (the extra services in one environment,
without databases): memory and a restart. Then, as root, on a real node of its own: tag edit →
new pods Ready. Prints a table; writes JSON with the machine's description.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType

from bandsy_operator.backends.postgres import ssl_argument
from bandsy_operator.kube import BandsyServiceResource, KubeApi, ObjectRef

from .. import rights
from ..kube import REPO_ROOT
from ..kubelet import SimulatedKubelet
from ..local_env import LocalEnvironment, postgres_admin_args
from ..operator_process import KubectlRunner, OperatorProcess, least_privilege_kubeconfig
from . import compare, floor, node_latency, probes, workload

MiB = 1024 * 1024
CONVERGE_TIMEOUT = 1800.0
# A converge with no service newly Ready for this long is reported (who it waits for).
STALL_SECONDS = 30.0
CONVERGE_BAR = 1.2  # operator over floor, medians (issue 18)
MEMORY_BAR_MIB = 150  # peak RSS at the large count (issue 18)
RESTART_BAR_SECONDS = 10.0  # work queue empty after a restart at the large count (issue 18)


class Bench:
    def __init__(self, args: argparse.Namespace, env: LocalEnvironment, workdir: Path) -> None:
        self.args = args
        self.env = env
        self.workdir = workdir
        self.variables = env.variables()
        self.kubectl = KubectlRunner(self.variables["KUBECONFIG"])
        self.results: dict[str, Any] = {}
        self.operator: OperatorProcess | None = None
        self.api: KubeApi
        self.kubeconfig = ""
        # Runs so far, of every scenario: names a run creates are never reused by another, as
        # the API server refuses creates into a namespace of a name being deleted a moment ago.
        self.runs_started = 0

    # -- setup ----------------------------------------------------------------------------------

    def install(self) -> str:
        self.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        # As deployed: a new service that needs the finalizer is created with it.
        rights.wait_until_served(self.kubectl)
        rights.install_finalizer_policy(self.kubectl)
        return least_privilege_kubeconfig(
            self.kubectl, self.variables["KUBECONFIG"], self.workdir / "operator-kubeconfig"
        )

    def start_operator(self, kubeconfig: str, resync: float | None = None) -> OperatorProcess:
        operator = OperatorProcess(
            kubeconfig,
            self.workdir / "operator.log",
            resync_seconds=resync or self.args.resync,
            extra_env={"BANDSY_WORKERS": str(self.args.workers)},
        )
        operator.start()
        self.operator = operator
        return operator

    async def pg(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            **postgres_admin_args(self.variables), ssl=ssl_argument("require")
        )
        return conn

    async def services(self) -> list[dict[str, Any]]:
        return await self.api.list(*probes.SERVICES)

    async def apply_all(self, bodies: list[dict[str, Any]]) -> None:
        limit = asyncio.Semaphore(self.args.workers)

        async def one(body: dict[str, Any]) -> None:
            async with limit:
                await self.api.apply(body)

        await asyncio.gather(*(one(b) for b in bodies))

    async def until_ready(self, names: set[str], service_environments: int, within: float) -> float:
        """Seconds until that many environments of the services ``names`` are Ready, seen
        through a watch of the services: polling with LISTs of all of them would load the API
        server, which the floor's run does not have to share."""
        started = time.perf_counter()
        ready: dict[str, int] = {}
        readiness: dict[str, dict[str, str]] = {}  # service: environment: its Ready's reason
        environments = service_environments // max(len(names), 1)

        async def watch() -> None:
            async for _, obj in self.api.client.watch(BandsyServiceResource):
                body: dict[str, Any] = obj.to_dict()  # type: ignore[no-untyped-call]
                if (name := body["metadata"]["name"]) in names:
                    ready[name] = probes.ready_environments(body)
                    readiness[name] = probes.ready_reasons(body)
                if sum(ready.values()) >= service_environments:
                    return

        async def report_stalls() -> None:
            """A converge that stops short of the end says who it waits for (once per stall),
            so that a slow run can be told from a lost event."""
            progress, reported = -1, -1
            while True:
                await asyncio.sleep(STALL_SECONDS)
                now = sum(ready.values())
                if now == progress and now != reported:
                    waiting = sorted(n for n in names if ready.get(n, 0) < environments)
                    operator = self.operator
                    queued = (
                        operator.metrics().get("bandsy_work_queue_depth")
                        if operator is not None and operator.running()
                        else None
                    )
                    print(
                        f"bench: no progress for {STALL_SECONDS:.0f} s at {now}/"
                        f"{service_environments} Ready (operator's queue: {queued}); "
                        f"waiting for {len(waiting)} services: "
                        + "; ".join(f"{n} {readiness.get(n, {})}" for n in waiting[:10]),
                        file=sys.stderr,
                        flush=True,
                    )
                    reported = now
                progress = now

        reporter = asyncio.create_task(report_stalls())
        try:
            await asyncio.wait_for(watch(), within)
        except TimeoutError:
            raise TimeoutError(f"not {service_environments} Ready after {within:.0f} s") from None
        finally:
            reporter.cancel()
        return time.perf_counter() - started

    async def until_garbage_collector_watches(self) -> None:
        """The controller manager's garbage collector discovers new kinds every 30 s. Until it
        watches our custom resources, every object owned by one costs it a "virtual" owner
        check (GETs of the owner and the object, and CPU), which no cluster whose CRDs were not
        installed a moment ago pays. The operator does not run yet: only the collector watches."""

        async def watched() -> bool:
            watches = probes.active_watches(self.kubectl)
            return all(watches[plural] for plural in probes.CUSTOM_RESOURCES)

        await probes.wait_until(watched, 120, "our custom resources watched by the collector")

    async def until_idle(self, within: float = 600.0, reconciles_at_least: float = 0) -> float:
        operator = self.operator
        assert operator is not None

        async def idle() -> bool:
            return probes.idle(operator, reconciles_at_least)

        # Each probe is a scrape, which costs the operator CPU: not more often than this.
        return await probes.wait_until(idle, within, "idle", interval=0.5)

    # -- scenarios ------------------------------------------------------------------------------

    async def measured(self, work: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """Run ``work`` from a settled PostgreSQL: its seconds, where the machine's CPU went
        (with 2 cores every component competes for them) and the API requests served
        meanwhile, by verb."""
        await probes.settle_garbage_collector(self.kubectl)
        await probes.settle_postgres(self.pg)
        pid = self.operator.pid if self.operator is not None and self.operator.running() else 0
        cpu, requests = probes.cpu_ticks(pid), probes.api_requests(self.kubectl)
        sql = await probes.sql_time(self.pg)
        started = time.perf_counter()
        await work()
        seconds = time.perf_counter() - started
        served = probes.difference(probes.api_requests(self.kubectl), requests)
        sql_ms = {k: v - sql.get(k, 0.0) for k, v in (await probes.sql_time(self.pg)).items()}
        return {
            "seconds": round(seconds, 2),
            "cpu_seconds": probes.cpu_seconds(cpu, probes.cpu_ticks(pid)),
            "api_requests": probes.by_verb(served),
            "api_requests_by_resource": dict(Counter(served).most_common()),
            # Where PostgreSQL's time went, by statement (pg_stat_statements).
            "sql_exec_ms": {
                k: round(v) for k, v in sorted(sql_ms.items(), key=lambda kv: -kv[1]) if round(v)
            },
        }

    async def converge(self) -> None:
        """N services x 3 environments with Postgres, from empty to all Ready."""
        self.results["converge"] = await self.against_floor(
            range(self.args.services), workload.ENVIRONMENTS, postgres=True
        )
        self.memory("base", self.args.services, True, self.results["converge"]["peak_rss_bytes"])

    async def converge_large(self) -> None:
        """Up to the large count of services x 3 environments; the extra services have no
        databases (2700 more would measure PostgreSQL, not the operator)."""
        self.results["converge_large"] = await self.against_floor(
            range(self.args.services, self.args.large), workload.ENVIRONMENTS, postgres=False
        )

    async def set_up_large(self) -> None:
        """``--restart-only``: the large count of services x 3 environments without databases,
        converged once and not measured."""
        envs = list(workload.ENVIRONMENTS)
        bodies = [workload.service(i, envs, postgres=False) for i in range(self.args.large)]
        await self.apply_all([workload.environment(e, self.variables) for e in envs])
        await self.apply_all(bodies)
        names = {b["metadata"]["name"] for b in bodies}
        await self.until_ready(names, len(names) * len(envs), CONVERGE_TIMEOUT)
        await self.until_idle()

    async def against_floor(
        self, indices: range, environments: tuple[str, ...], postgres: bool
    ) -> dict[str, Any]:
        """The operator's converge and the floor's, ``--runs`` times each, interleaved; every
        operator run but the last (kept for the scenarios after it) is tagged and deleted
        again, outside the measurement, so each run starts from nothing."""
        runs = self.args.runs
        operator_runs: list[dict[str, Any]] = []
        floor_runs: list[dict[str, Any]] = []
        work: floor.Workload | None = None
        peak_rss = 0
        for index in range(runs):
            number = self.runs_started
            self.runs_started += 1
            tag = "" if index == runs - 1 else f"r{number}"
            envs = [workload.tagged(env, tag) for env in environments]
            bodies = [workload.service(i, envs, postgres, tag) for i in indices]
            names = {body["metadata"]["name"] for body in bodies}
            await self.operator_running()
            reconciles = probes.reconciles(self.running_operator())

            async def from_empty(
                envs: list[str] = envs, bodies: list[dict[str, Any]] = bodies
            ) -> None:
                await self.apply_all([workload.environment(e, self.variables) for e in envs])
                await self.apply_all(bodies)
                await self.until_ready(
                    {b["metadata"]["name"] for b in bodies},
                    len(bodies) * len(envs),
                    CONVERGE_TIMEOUT,
                )

            run = await self.measured(from_empty)
            await self.until_idle()
            run["reconciles"] = probes.reconciles(self.running_operator()) - reconciles
            operator_runs.append(run)
            # The floor replays this run's output while its owners exist (ownerReferences are
            # kept: the garbage collector would delete the floor's objects with them).
            work = await self.floor_workload(set(envs), names)
            peak_rss = self.running_operator().peak_rss_bytes()  # the kept run's counts
            self.running_operator().stop()
            floor_runs.append(await self.floor_run(work, number))
            if tag:  # the next run starts with a fresh operator process (its peak RSS)
                await self.operator_running()
                await self.delete_run(set(envs), names)
                self.running_operator().stop()
        await self.operator_running()
        assert work is not None
        return {
            "peak_rss_bytes": peak_rss,
            "services": len(indices),
            "service_environments": len(indices) * len(environments),
            "objects": work.object_count,
            "databases": work.account_count,
            "workers": self.args.workers,
            **compare.summary(operator_runs, floor_runs, CONVERGE_BAR),
        }

    def running_operator(self) -> OperatorProcess:
        assert self.operator is not None
        return self.operator

    async def operator_running(self) -> None:
        """Started, if stopped, and done with its start-up pass. Not before the garbage
        collector is done with a deleted run: a wait for it after the start could take the
        process to its first periodic resync (300 s) in the middle of the next measured run
        (it did: 1580 GETs of each kind in one large converge)."""
        if self.operator is None or not self.operator.running():
            await probes.settle_garbage_collector(self.kubectl)
            crs = len(await self.services()) + len(await self.environments())
            self.start_operator(self.kubeconfig)
            await self.until_idle(reconciles_at_least=crs)

    async def environments(self) -> list[dict[str, Any]]:
        return await self.api.list(probes.SERVICES[0], "BandsyEnvironment")

    async def floor_workload(self, envs: set[str], names: set[str]) -> floor.Workload:
        return await floor.snapshot(
            self.api,
            [e for e in await self.environments() if e["metadata"]["name"] in envs],
            [s for s in await self.services() if s["metadata"]["name"] in names],
            "bandsy-system",
        )

    async def delete_run(self, envs: set[str], names: set[str]) -> None:
        """A tagged run's services and environments, deleted by the operator (its finalizers
        reclaim the databases), and waited for, namespaces included."""
        for name in sorted(names):
            await self.api.delete(ObjectRef(*probes.SERVICES, "", name))
        for env in sorted(envs):
            await self.api.delete(ObjectRef(probes.SERVICES[0], "BandsyEnvironment", "", env))

        async def gone() -> bool:
            left = [s for s in await self.services() if s["metadata"]["name"] in names]
            left += [e for e in await self.environments() if e["metadata"]["name"] in envs]
            spaces = [await self.api.get(ObjectRef("v1", "Namespace", "", env)) for env in envs]
            return not left and not any(spaces)

        await probes.wait_until(gone, CONVERGE_TIMEOUT, "a tagged run deleted", interval=1.0)
        await self.until_idle()

    async def floor_run(self, work: floor.Workload, index: int) -> dict[str, Any]:
        """One repetition of the floor, with the operator stopped: its objects carry the
        operator's labels, and nothing of the operator's should count towards the floor."""
        repetition = work.repetition(index)
        pool = await asyncpg.create_pool(
            min_size=self.args.workers,
            max_size=self.args.workers,
            ssl=ssl_argument("require"),
            **postgres_admin_args(self.variables),
        )
        try:

            async def floor_work() -> None:
                await floor.run(self.api, pool, repetition, self.args.workers)

            measured = await self.measured(floor_work)
            await floor.clean_up(self.api, pool, repetition)
        finally:
            await pool.close()
        return measured

    async def restarted(self, kubeconfig: str, resync: float, custom_resources: int) -> None:
        """A new operator process with this resync interval, once its start-up pass is done."""
        assert self.operator is not None
        self.operator.stop()
        self.start_operator(kubeconfig, resync)
        await self.until_idle(reconciles_at_least=custom_resources)

    async def idle_cost(self) -> None:
        """Two resyncs, forced by a short interval: the operator restarts with it first."""
        crs = self.args.services + len(workload.ENVIRONMENTS)
        await self.restarted(self.kubeconfig, self.args.idle_resync, crs)
        operator = self.operator
        assert operator is not None
        api_before = probes.api_writes(self.kubectl)
        sql_before = await probes.sql_writes(self.pg)
        cycles, durations = 2, []
        for _ in range(cycles):
            resyncs = operator.metrics().get("bandsy_resyncs_total", 0)

            async def resynced(before: float = resyncs) -> bool:
                return operator.metrics().get("bandsy_resyncs_total", 0) > before

            await probes.wait_until(resynced, self.args.idle_resync * 2, "resynced", interval=0.1)
            durations.append(await self.until_idle())
        api = probes.difference(probes.api_writes(self.kubectl), api_before)
        sql = probes.difference(await probes.sql_writes(self.pg), sql_before)
        self.results["idle"] = {
            "resync_cycles": cycles,
            "resync_interval_seconds": self.args.idle_resync,
            # From the resync queueing everything to an empty queue again.
            "resync_seconds": [round(d, 2) for d in durations],
            "api_writes": sum(api.values()),
            "api_writes_by_request": api,
            "sql_writes": sum(sql.values()),
            "sql_writes_by_statement": sql,
            "bar": "0 API writes, 0 SQL writes",
            "passed": not api and not sql,
        }

    async def latency(self) -> None:
        await self.until_idle()
        edits = self.args.edits
        env = workload.ENVIRONMENTS[0]
        arrived: dict[str, float] = {}
        watch = asyncio.create_task(self._watch_images(env, arrived))
        rng = random.Random(self.args.seed)
        samples = []
        try:
            await asyncio.sleep(1.0)  # the watch's initial listing
            for edit in range(edits):
                name = workload.service_name(rng.randrange(self.args.services))
                tag = f"release-1.0.{edit + 1}"
                image = f"ghcr.io/feinwaru/{name}:{tag}"
                patch = {"spec": {"environments": {env: {"image": {"tag": tag}}}}}
                sent = time.perf_counter()
                await self.api.client.patch(
                    BandsyServiceResource, name, patch, patch_type=PatchType.MERGE
                )

                async def seen(image: str = image) -> bool:
                    return image in arrived

                await probes.wait_until(seen, 60, f"{image} on the Deployment", interval=0.005)
                samples.append(arrived[image] - sent)
                await asyncio.sleep(0.2)
        finally:
            watch.cancel()
        samples.sort()
        p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
        self.results["latency"] = {
            "service_environments_present": self.args.services * len(workload.ENVIRONMENTS),
            "edits": edits,
            "p50_seconds": round(statistics.median(samples), 3),
            "p95_seconds": round(p95, 3),
            "max_seconds": round(samples[-1], 3),
            "bar": "p95 <= 1 s",
            "passed": p95 <= 1.0,
        }

    async def _watch_images(self, namespace: str, arrived: dict[str, float]) -> None:
        async for _, deployment in self.api.client.watch(Deployment, namespace=namespace):
            assert deployment.spec is not None
            for container in deployment.spec.template.spec.containers:  # type: ignore[union-attr]
                if container.image is not None:
                    arrived.setdefault(container.image, time.perf_counter())

    def memory(self, label: str, services: int, databases: bool, peak: int | None = None) -> None:
        """The operator's peak RSS: ``peak``, or the running process's."""
        if peak is None:
            peak = self.running_operator().peak_rss_bytes()
        self.results.setdefault("memory", {})[label] = {
            "services": services,
            "databases": databases,
            "peak_rss_mib": round(peak / MiB, 1),
            "bar": f"<= {MEMORY_BAR_MIB} MiB at 1000 services",
            "passed": peak <= MEMORY_BAR_MIB * MiB,
        }

    async def restart(self, kubeconfig: str, custom_resources: int) -> None:
        operator = self.operator
        assert operator is not None
        await self.until_idle()
        operator.stop()
        api_before = probes.api_writes(self.kubectl)
        requests_before = probes.api_requests(self.kubectl)
        sql_before = await probes.sql_writes(self.pg)
        started = time.perf_counter()
        operator = self.start_operator(kubeconfig)
        up = time.perf_counter() - started
        with self.profiled("restart-new-process"):  # the step's profile is of the old one
            await self.until_idle(reconciles_at_least=custom_resources)
        seconds = time.perf_counter() - started
        await asyncio.sleep(2.0)  # anything a late watch event would still cause
        api = probes.difference(probes.api_writes(self.kubectl), api_before)
        requests = probes.difference(probes.api_requests(self.kubectl), requests_before)
        sql = probes.difference(await probes.sql_writes(self.pg), sql_before)
        self.results["restart"] = {
            "services": self.args.large,
            "custom_resources": custom_resources,
            # Reads included: a pass lists by kind rather than getting object by object.
            "api_requests": probes.by_verb(requests),
            "api_requests_by_resource": dict(Counter(requests).most_common(12)),
            "started_seconds": round(up, 2),
            "idle_seconds": round(seconds, 2),
            "api_writes": sum(api.values()),
            "api_writes_by_request": api,
            "sql_writes": sum(sql.values()),
            "sql_writes_by_statement": sql,
            "bar": f"queue empty <= {RESTART_BAR_SECONDS:.0f} s, 0 writes",
            "passed": seconds <= RESTART_BAR_SECONDS and not api and not sql,
        }

    async def run(self) -> dict[str, Any]:
        kubeconfig = self.kubeconfig = self.install()
        self.api = KubeApi.from_kubeconfig(self.variables["KUBECONFIG"])
        kubelet = SimulatedKubelet(self.api)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.api.close)
            conn = await self.pg()
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await conn.close()
            await self.api.apply(workload.admin_secret(self.variables))
            await self.until_garbage_collector_watches()
            kubelet.start()
            stack.push_async_callback(kubelet.stop)
            self.start_operator(kubeconfig)
            try:
                if self.args.restart_only:
                    await self.step("set-up", self.set_up_large)
                    crs = self.args.large + len(workload.ENVIRONMENTS)
                    await self.step("restart", lambda: self.restart(kubeconfig, crs))
                    self.memory("restart", self.args.large, False)
                    return self.results
                if self.args.large_only:
                    await self.step("converge_large", self.converge_large)
                    peak = self.results["converge_large"]["peak_rss_bytes"]
                    self.memory("large", self.args.large, False, peak)
                    return self.results
                # The shipped resync interval, so no resync runs into converge or latency.
                await self.step("converge", self.converge)
                if self.args.converge_only:
                    return self.results
                await self.step("latency", self.latency)
                await self.step("idle", self.idle_cost)
                if self.args.large > self.args.services:
                    crs = self.args.services + len(workload.ENVIRONMENTS)
                    await self.restarted(kubeconfig, self.args.resync, crs)
                    await self.step("converge_large", self.converge_large)
                    peak = self.results["converge_large"]["peak_rss_bytes"]
                    self.memory("large", self.args.large, False, peak)
                    crs = self.args.large + len(workload.ENVIRONMENTS)
                    await self.step("restart", lambda: self.restart(kubeconfig, crs))
                    # A start lists and reconciles everything at once: the worst case.
                    self.memory("restart", self.args.large, False)
            finally:
                assert self.operator is not None
                self.operator.stop()
                log = self.operator.log()
                self.results["operator_log_tracebacks"] = log.count("Traceback")
        return self.results

    async def step(self, name: str, scenario: Callable[[], Awaitable[Any]]) -> Any:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        with self.profiled(name):
            result = await scenario()
        print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if name in self.results:
            print(f"bench: {json.dumps(self.results[name])}", file=sys.stderr, flush=True)
        return result

    @contextlib.contextmanager
    def profiled(self, name: str) -> Iterator[None]:
        """With ``--profile DIR``: py-spy samples the operator during the scenario and writes a
        flame graph (``DIR/<scenario>.svg``); py-spy writes it when interrupted."""
        if self.args.profile is None or self.operator is None:
            yield
            return
        self.args.profile.mkdir(parents=True, exist_ok=True)
        output = self.args.profile / f"{name}.svg"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(self.operator.pid),
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            print(f"bench: profile of {name} in {output}", file=sys.stderr)


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def table(results: dict[str, Any]) -> str:
    rows = [("scenario", "measured", "bar", "result")]
    for key in ("converge", "converge_large"):
        if key in results:
            rows.append(_converge_row(results[key]))
    if "idle" in results:
        i = results["idle"]
        rows.append(
            (
                f"idle: {i['resync_cycles']} resyncs ({max(i['resync_seconds'])} s each at most)",
                f"{i['api_writes']} API writes, {i['sql_writes']} SQL writes",
                i["bar"],
                _verdict(i),
            )
        )
    node = results.get("node_latency") or {}
    if "p95_seconds" in node:
        rows.append(
            (
                f"node: tag edit -> new pods Ready ({node['edits']} edits, "
                f"{node['services']} services)",
                f"p50 {node['p50_seconds']} s, p95 {node['p95_seconds']} s, "
                f"max {node['max_seconds']} s",
                node["bar"],
                _verdict(node),
            )
        )
    elif node:
        rows.append(("node: tag edit -> new pods Ready", node["skipped"], "-", "-"))
    if "latency" in results:
        lat = results["latency"]
        rows.append(
            (
                f"latency: {lat['edits']} tag edits, {lat['service_environments_present']} svc-env",
                f"p50 {lat['p50_seconds']} s, p95 {lat['p95_seconds']} s, "
                f"max {lat['max_seconds']} s",
                lat["bar"],
                _verdict(lat),
            )
        )
    for label, m in (results.get("memory") or {}).items():
        rows.append(
            (
                f"memory: {m['services']} services"
                + ("" if m["databases"] else " (extra: no db)")
                + (", after a restart" if label == "restart" else ""),
                f"peak RSS {m['peak_rss_mib']} MiB",
                m["bar"],
                _verdict(m) if label != "base" else "-",
            )
        )
    if "restart" in results:
        r = results["restart"]
        rows.append(
            (
                f"restart with {r['services']} services",
                f"idle after {r['idle_seconds']} s; "
                f"{r['api_writes']} API, {r['sql_writes']} SQL writes",
                r["bar"],
                _verdict(r),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def _converge_row(c: dict[str, Any]) -> tuple[str, str, str, str]:
    spread = (
        f"operator {c['operator_spread_seconds'][0]}-{c['operator_spread_seconds'][1]} s, "
        f"floor {c['floor_spread_seconds'][0]}-{c['floor_spread_seconds'][1]} s"
    )
    return (
        f"converge {c['services']} svc x 3 env ({c['objects']} objects, {c['databases']} db)",
        f"{c['operator_seconds']} s vs floor {c['floor_seconds']} s = {c['ratio']}x "
        f"(medians of {c['runs']} each; {spread}; CPU-s ratio: machine "
        f"{c['machine_cpu_ratio']}x, outside PostgreSQL {c['outside_postgres_cpu_ratio']}x, "
        f"API server {c['api_server_cpu_ratio']}x)",
        c["bar"],
        _verdict(c),
    )


def _verdict(result: dict[str, Any]) -> str:
    return "pass" if result["passed"] else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bandsy_dev.bench", description=__doc__)
    parser.add_argument("--services", type=int, default=100, help="services x 3 environments")
    parser.add_argument("--large", type=int, default=1000, help="services for memory/restart")
    parser.add_argument("--edits", type=int, default=20, help="tag edits timed for latency")
    parser.add_argument(
        "--node-services", type=int, default=10, help="services on the real node (root only)"
    )
    parser.add_argument("--workers", type=int, default=16, help="operator workers = floor's")
    parser.add_argument(
        "--runs", type=int, default=3, help="converge runs of the operator and of the floor each"
    )
    parser.add_argument(
        "--resync", type=float, default=300.0, help="resync interval, seconds (as shipped)"
    )
    parser.add_argument(
        "--idle-resync", type=float, default=20.0, help="resync interval of the idle scenario"
    )
    parser.add_argument(
        "--converge-only", action="store_true", help="the converge scenario and its floor only"
    )
    parser.add_argument(
        "--large-only",
        action="store_true",
        help="the large converge scenario (no databases) and its floor only",
    )
    parser.add_argument(
        "--restart-only",
        action="store_true",
        help="set up the large count without databases, then the restart scenario only",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=Path(".local/bench.json"))
    parser.add_argument("--keep", action="store_true", help="keep the servers' directory")
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs into this dir")
    args = parser.parse_args()

    # SIGTERM unwinds like Ctrl-C, so the servers (own sessions) are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="bandsy-bench-"))
    # Node-less: the bench plays the deployment controller (SimulatedKubelet).
    env = LocalEnvironment(workdir / "servers", with_node=False)
    env.start()
    try:
        try:
            results = asyncio.run(Bench(args, env, workdir).run())
        finally:
            env.stop()
        if not (args.converge_only or args.large_only or args.restart_only):
            # Real pods, on a node of their own once the node-less servers are gone.
            print("bench: node ...", file=sys.stderr, flush=True)
            results["node_latency"] = node_latency.measure(workdir, args.node_services, args.edits)
            print(f"bench: {json.dumps(results['node_latency'])}", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "machine": machine(),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
