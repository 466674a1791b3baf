"""Fault injection (SPEC §9, issue 7), against one operator process this module owns and kills:
SIGKILLs mid-rollout, PostgreSQL and the API server stopped mid-rollout, a barrage of generated
malformed custom resources; then a secrecy sweep over everything they left behind. And two
replicas with leader election (SPEC §12), the leader SIGKILLed mid-rollout.

``BANDSY_CHAOS_SIZE=full`` (``make chaos``) is the issue's size; ``reduced``, the default, runs
in ``make test``. The random seed is printed; ``BANDSY_CHAOS_SEED=<seed>`` replays its choices.
The conftest runs this module before every other test: two operators must never run at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import os
import random
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, seed, settings

from bandsy_dev import rights
from bandsy_dev.kubelet import SimulatedKubelet, is_ready
from bandsy_dev.local_env import LocalEnvironment
from bandsy_dev.operator_process import SHUTDOWN_MARK, STANDBY, least_privilege_kubeconfig
from bandsy_operator.kube import CLIENT_ERRORS, KubeApi, ObjectRef
from chaos import cluster
from chaos.malformed import ENVIRONMENT, SERVICE, Context, Outcome, Recipe, recipes
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from leases import SIGKILL_TAKEOVER_SECONDS, candidate, one_writer_at_a_time, takeover
from secrecy import assert_not_leaked, decode, generated_passwords, haystacks, secret_values
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@dataclass(frozen=True)
class Size:
    services: int  # in the SIGKILL rollout; the outage tests use a third of it each
    environments: int
    kills: int
    outage_seconds: float  # PostgreSQL stopped at least this long
    api_pause_seconds: float  # the API server stopped before its restart (which adds its own)
    malformed: int  # at least this many malformed CRs, refused or reported


SIZES = {
    "reduced": Size(
        services=8,
        environments=2,
        kills=2,
        outage_seconds=10,
        api_pause_seconds=0,
        malformed=50,
    ),
    "full": Size(
        services=30,
        environments=3,
        kills=5,
        outage_seconds=30,
        api_pause_seconds=30,
        malformed=200,
    ),
}
SIZE_NAME = os.environ.get("BANDSY_CHAOS_SIZE") or "reduced"
SIZE = SIZES[SIZE_NAME]
SEED = int(os.environ.get("BANDSY_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
RUN = uuid.uuid4().hex[:4]  # in every name, so leftovers of an aborted run never count
RUN_LABEL = {"chaos.bandsy.test/run": RUN}
MALFORMED_LABEL = {**RUN_LABEL, "chaos.bandsy.test/input": "malformed"}
# The shipped default: recovery must come from watches and backoff, not from a quick resync.
RESYNC_SECONDS = 300.0
CONVERGE_SECONDS = 180.0 if SIZE_NAME == "full" else 90.0
RECOVERY_SECONDS = 30.0  # SPEC §9: convergence within 30 s after a server returns
NEEDS_LOCAL_SERVERS = "needs the servers this session started (not BANDSY_CLUSTER_ENV)"


def say(config: pytest.Config, line: str) -> None:
    """Print past pytest's capture: the sizes, seed and measurements belong in the output."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(f"[chaos] {line}")


@dataclass
class Chaos:
    """The module's world: its operator, environments, every valid service it applied (so each
    convergence check also proves nothing converged earlier was lost) and what it learnt."""

    operator: OperatorProcess
    environments: list[str]
    long_names_environment: str
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: set[str] = field(default_factory=set)
    # Spans of the operator log written while the API server was away (start, end offsets).
    api_outages: list[tuple[int, int]] = field(default_factory=list)

    def apply(self, kubectl: KubectlRunner, *bodies: dict[str, Any]) -> None:
        # Copies: a later edit of one body must not change what another one expects.
        bodies = tuple(copy.deepcopy(body) for body in bodies)
        for body in bodies:
            body["metadata"]["labels"] = dict(RUN_LABEL)
            self.expected[body["metadata"]["name"]] = body
        kubectl.apply(*bodies)


def database_environment(
    name: str, servers: dict[str, str], redis: bool = True, **postgres: str
) -> dict[str, Any]:
    """On the local servers, as ``make run``'s samples; Delete so cleanup leaves no namespace."""
    admin = f"chaos-{RUN}-admin"
    spec: dict[str, Any] = {
        "postgres": {
            "host": servers["BANDSY_PG_HOST"],
            "port": int(servers["BANDSY_PG_PORT"]),
            "sslMode": "require",
            "adminSecretRef": {"namespace": "default", "name": f"{admin}-pg"},
            "egressTo": {"cidr": "127.0.0.1/32"},
            **postgres,
        }
    }
    if redis:
        spec["redis"] = {
            "host": servers["BANDSY_REDIS_HOST"],
            "port": int(servers["BANDSY_REDIS_PORT"]),
            "adminSecretRef": {"namespace": "default", "name": f"{admin}-redis"},
        }
    body = environment_body(name, deletionPolicy="Delete", **spec)
    body["metadata"]["labels"] = dict(RUN_LABEL)
    return body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kubelet(kube: KubeApi) -> AsyncIterator[SimulatedKubelet]:
    simulated = SimulatedKubelet(kube)
    simulated.start()
    yield simulated
    await simulated.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chaos(
    servers: dict[str, str],
    crds: None,
    kube: KubeApi,
    kubectl: KubectlRunner,
    kubelet: SimulatedKubelet,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> AsyncIterator[Chaos]:
    """The chaos operator (least privilege, like the session's) and environments on the local
    PostgreSQL and Redis. Afterwards: every chaos CR deleted while the operator still runs its
    finalizers (so later tests find a clean cluster and no account of this run), then the
    operator's log judged."""
    say(pytestconfig, f"size {SIZE_NAME}: {SIZE}; seed {SEED} (BANDSY_CHAOS_SEED); run {RUN}")
    workdir = tmp_path_factory.mktemp("chaos-operator")
    kubeconfig = least_privilege_kubeconfig(kubectl, servers["KUBECONFIG"], workdir / "kubeconfig")
    operator = OperatorProcess(kubeconfig, workdir / "operator.log", RESYNC_SECONDS)
    operator.start()
    environments = [f"chaos-{RUN}-{letter}" for letter in "abc"[: SIZE.environments]]
    world = Chaos(operator, environments, f"chaos-{RUN}-t")
    try:
        for suffix, user, password in (
            ("pg", "BANDSY_PG_ADMIN_USER", "BANDSY_PG_ADMIN_PASSWORD"),
            ("redis", "BANDSY_REDIS_ADMIN_USER", "BANDSY_REDIS_ADMIN_PASSWORD"),
        ):
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"chaos-{RUN}-admin-{suffix}", "namespace": "default"},
                "stringData": {"username": servers[user], "password": servers[password]},
            }
            kubectl.apply(secret)
        kubectl.apply(
            *(database_environment(name, servers) for name in environments),
            # Names too long for PostgreSQL are only known once rendered: the operator's check.
            database_environment(
                world.long_names_environment,
                servers,
                redis=False,
                userTemplate="{service}-{env}-u",
                databaseTemplate="{service}-{env}-{env}-{env}",
            ),
        )

        async def ready() -> bool:
            for obj in await kube.list(cluster.API, ENVIRONMENT, labels=RUN_LABEL):
                cond = condition(obj, "Ready")
                assert cond.get("status") == "True", (obj["metadata"]["name"], cond)
            return True

        await eventually(ready, timeout=60)
        yield world
    finally:
        try:
            if not operator.running():
                operator.start()
            selector = f"chaos.bandsy.test/run={RUN}"
            # Services first: reclaiming their accounts needs their environments.
            for kind in ("bandsyservices", "bandsyenvironments"):
                kubectl("delete", kind, "-l", selector, "--wait=true", "--timeout=180s")
            for suffix in ("pg", "redis"):
                kubectl(
                    "delete",
                    "secret",
                    "-n",
                    "default",
                    f"chaos-{RUN}-admin-{suffix}",
                    "--ignore-not-found",
                )
            leftovers = await cluster.roles_and_databases(servers, f"*{RUN}")
            credentials = await cluster.credential_users(kube, f"*{RUN}")
        finally:
            operator.stop()
        judge_log(operator.log(), world.api_outages)
        assert leftovers == {"roles": [], "databases": {}}, "the cleanup left accounts behind"
        assert credentials == [], "the cleanup left canonical credentials behind"


def judge_log(log: str, api_outages: list[tuple[int, int]]) -> None:
    """No exception and no Forbidden in any life of the operator. While the API server was away
    (and until everything converged again) failed requests are expected; there, only
    tracebacks that end in a connection error are allowed, and refusals of a server whose
    authorizer is still starting."""
    log = log.partition(SHUTDOWN_MARK)[0]  # kopf's watches complain at shutdown
    normal, last = [], 0
    for start, end in api_outages:
        normal.append(log[last:start])
        for block in log[start:end].split("Traceback (most recent call last):")[1:]:
            final = next(
                (line for line in block.splitlines() if line and not line.startswith((" ", "\t"))),
                "",
            )
            assert any(e in final for e in CONNECTION_ERRORS), f"during the outage: {final}"
        last = end
    normal = [*normal, log[last:]]
    assert "Traceback" not in "".join(normal), "the operator logged an unexpected exception"
    # A restarted API server refuses requests until its RBAC caches are filled: judged outside.
    assert "Forbidden" not in "".join(normal), "the shipped ClusterRole lacks a permission"


CONNECTION_ERRORS = ("ConnectError", "ClientConnectorError", "ServerDisconnectedError")


def condition(obj: dict[str, Any], type_: str, env: str | None = None) -> dict[str, Any]:
    status = obj.get("status") or {}
    if env is not None:
        status = (status.get("environments") or {}).get(env) or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def converged(kube: KubeApi, expected: dict[str, dict[str, Any]]) -> bool:
    """Every expected service observed its latest spec and is Ready with its tags everywhere."""
    try:
        found = await kube.list(cluster.API, SERVICE, labels=RUN_LABEL)
    except CLIENT_ERRORS as error:  # an API server coming back answers 429 for a while
        raise AssertionError(f"cannot list services yet: {error}") from None
    live = {o["metadata"]["name"]: o for o in found}
    lagging = {}
    for name, body in expected.items():
        obj = live.get(name)
        status = (obj or {}).get("status") or {}
        envs = status.get("environments") or {}
        wanted = {env: spec["image"]["tag"] for env, spec in body["spec"]["environments"].items()}
        summaries = {env: (envs.get(env) or {}).get("summary") for env in wanted}
        if (
            obj is None
            or status.get("observedGeneration") != obj["metadata"]["generation"]
            or condition(obj, "Ready").get("status") != "True"
            or summaries != wanted
        ):
            generation = (obj or {}).get("metadata", {}).get("generation")
            lagging[name] = {
                "summaries": summaries,
                "observed/generation": (status.get("observedGeneration"), generation),
                "ready": condition(obj or {}, "Ready").get("message"),
            }
    if lagging:
        shown = dict(list(lagging.items())[:3])
        for name, state in shown.items():  # the Deployments' own word, for the diagnosis
            for env in expected[name]["spec"]["environments"]:
                with contextlib.suppress(*CLIENT_ERRORS):
                    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", env, name))
                    state[f"{env} deployment ready"] = deployment and is_ready(deployment)
        raise AssertionError(f"{len(lagging)} not converged: {shown}")
    return True


async def settled(
    chaos: Chaos,
    kube: KubeApi,
    timeout: float,
    expected: dict[str, dict[str, Any]] | None = None,
    interval: float = 1.0,
) -> None:
    """``converged`` within ``timeout``; if not, the operator's log lines about the services
    that lag go into the failure (a CI run keeps no operator log)."""
    expected = chaos.expected if expected is None else expected
    try:
        await eventually(lambda: converged(kube, expected), timeout=timeout, interval=interval)
    except AssertionError as error:
        lagging = re.findall(r"'([a-z0-9-]+)': \{'summaries'", str(error))
        lines = [
            line
            for line in chaos.operator.log().splitlines()
            if any(name in line for name in lagging) or "answers again" in line
        ]
        raise AssertionError(
            f"{error}\noperator log about them (last 40 lines):\n" + "\n".join(lines[-40:])
        ) from None


async def idle(operator: OperatorProcess) -> bool:
    assert operator.metrics()["bandsy_work_queue_depth"] == 0
    return True


async def busy(operator: OperatorProcess) -> bool:
    """Work in flight; an operator still starting up serves no metrics yet."""
    try:
        return operator.metrics()["bandsy_work_queue_depth"] > 0
    except OSError as error:
        raise AssertionError(f"no metrics yet: {error}") from error


def healthz(operator: OperatorProcess) -> int:
    url = f"http://127.0.0.1:{operator.liveness_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


# -- 1. SIGKILL during a rollout -----------------------------------------------------------------


def rollout_service(i: int, names: list[str], environments: list[str], tag: str) -> dict[str, Any]:
    """Every service has PostgreSQL (Delete, so deleting it drops role and database) and a
    generated secret; every other one Redis, most a port, some a dependency on the previous."""
    spec: dict[str, Any] = {
        "postgres": {"enabled": True, "reclaimPolicy": "Delete"},
        "secrets": [{"name": "SESSION_KEY", "generate": {"length": 32}}],
        "config": {"CHAOS_INDEX": str(i)},
    }
    if i % 4 == 0:
        spec["postgres"]["extensions"] = ["pg_trgm"]
    if i % 3 != 2:
        spec["port"] = 8000 + i
    if i % 2 == 0:
        spec["redis"] = {"enabled": True}
    if i % 5 != 0 and (i - 1) % 3 != 2:
        spec["dependsOn"] = [names[i - 1]]
    return service_body(names[i], tags(**dict.fromkeys(environments, tag)), **spec)


async def end_state(
    kube: KubeApi, servers: dict[str, str], world: Chaos, names: list[str], prefix: str
) -> dict[str, Any]:
    """Check the SPEC §9 crash-safety properties of these services and return a snapshot of
    what they are made of, normalized so two correct runs compare equal."""
    bodies = {name: world.expected[name] for name in names}
    # Every credential in a projected Secret logs in, over verified TLS.
    for name, body in bodies.items():
        for env in world.environments:
            pg = decode(await live(kube, "v1", "Secret", env, f"{name}-postgres"))
            await cluster.postgres_login(servers, pg)
            world.passwords.add(pg["PGPASSWORD"])
            if body["spec"].get("redis"):
                redis = decode(await live(kube, "v1", "Secret", env, f"{name}-redis"))
                await cluster.redis_login(redis)
                world.passwords.add(redis["REDIS_PASSWORD"])
            world.passwords |= secret_values(
                await live(kube, "v1", "Secret", env, f"{name}-secrets")
            )

    # Exactly the roles, databases, ACL users and canonical credentials these services need.
    found = await cluster.roles_and_databases(servers, prefix)
    assert found["roles"] == sorted(f"{name}-user" for name in names)
    assert found["databases"] == {
        f"{name}-{env}": f"{name}-user" for name in names for env in world.environments
    }
    with_redis = [n for n, b in bodies.items() if b["spec"].get("redis")]
    redis_users = sorted(f"{n}-{env}" for n in with_redis for env in world.environments)
    assert await cluster.redis_users(servers, prefix) == redis_users
    assert await cluster.credential_users(kube, prefix) == sorted(
        [("postgres", f"{name}-user") for name in names] + [("redis", user) for user in redis_users]
    )

    # Inventories and objects agree: nothing listed is missing, nothing managed is unlisted.
    crs = await kube.list(cluster.API, SERVICE) + await kube.list(cluster.API, ENVIRONMENT)
    inventories = {cr["metadata"]["name"]: cluster.inventory_refs(cr) for cr in crs}
    for owner, refs in inventories.items():
        for ref in refs:
            assert await kube.get(ref) is not None, f"{owner}'s inventory lists a missing {ref}"
    listed = set().union(*inventories.values())
    managed = await cluster.managed_in(kube, world.environments)
    orphans = [str(cluster.ref_of(obj)) for obj in managed if cluster.ref_of(obj) not in listed]
    assert not orphans, f"managed objects in no inventory: {orphans}"
    for obj in managed:
        owner = (obj["metadata"].get("labels") or {}).get("bandsy.app/service")
        if owner in bodies:
            assert cluster.ref_of(obj) in inventories[owner], (owner, cluster.ref_of(obj))

    mine = [
        obj
        for obj in managed
        if (obj["metadata"].get("labels") or {}).get("bandsy.app/service", names[0]) in bodies
    ]
    return {
        "objects": {str(cluster.ref_of(o)): cluster.normalize(o) for o in mine},
        "statuses": {
            cr["metadata"]["name"]: cluster.normalize_status(cr.get("status") or {})
            for cr in crs
            if cr["metadata"]["name"] in bodies
        },
    }


async def live(kube: KubeApi, api_version: str, kind: str, ns: str, name: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(api_version, kind, ns, name))
    assert obj is not None, f"{kind} {ns}/{name} is missing"
    return obj


async def nothing_left(
    kube: KubeApi, servers: dict[str, str], names: list[str], prefix: str
) -> None:
    """No role, database, ACL user, credential or object of these services remains."""
    assert await cluster.roles_and_databases(servers, prefix) == {"roles": [], "databases": {}}
    assert await cluster.redis_users(servers, prefix) == []
    assert await cluster.credential_users(kube, prefix) == []
    for name in names:
        assert await cluster.labelled_for(kube, name) == []


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(a.keys() | b.keys())
    return [
        f"{key}:\n  killed run: {json.dumps(a.get(key), sort_keys=True)}\n"
        f"  clean run:  {json.dumps(b.get(key), sort_keys=True)}"
        for key in keys
        if a.get(key) != b.get(key)
    ]


async def test_sigkill_during_rollout_ends_as_a_clean_run(
    chaos: Chaos,
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pytestconfig: pytest.Config,
) -> None:
    """SIGKILL at random moments of a rollout, restart, repeat: afterwards the same objects and
    statuses as a run that was never killed, every credential logs in, and exactly the roles,
    databases and credentials needed exist (deleting the services then leaves nothing)."""
    rng = random.Random(SEED)
    prefix = f"ck{RUN}-"
    names = [f"{prefix}{i:02d}" for i in range(SIZE.services)]
    tag_of = dict.fromkeys(names, "r0")

    def bodies(subset: list[str]) -> list[dict[str, Any]]:
        return [
            rollout_service(names.index(n), names, chaos.environments, tag_of[n]) for n in subset
        ]

    started = time.monotonic()
    chaos.apply(kubectl, *bodies(names))
    depths = []
    for kill in range(SIZE.kills):
        # A random moment after this life has started working: a fast machine may otherwise
        # finish the wave before a fixed delay runs out.
        await eventually(lambda: busy(chaos.operator), timeout=60, interval=0.05)
        await asyncio.sleep(rng.uniform(0.0, 1.5))
        depths.append(int(chaos.operator.metrics()["bandsy_work_queue_depth"]))
        chaos.operator.kill()
        # A new wave while it is dead, so the next life has a rollout to be killed in.
        wave = sorted(rng.sample(names, max(1, len(names) // 2)))
        tag_of.update(dict.fromkeys(wave, f"r{kill + 1}"))
        chaos.apply(kubectl, *bodies(wave))
        chaos.operator.start()
    say(pytestconfig, f"{SIZE.kills} SIGKILLs; work queue depth at each kill: {depths}")
    assert any(depths), "no kill landed while the operator had work in flight"
    await settled(chaos, kube, CONVERGE_SECONDS)
    await eventually(lambda: idle(chaos.operator), timeout=30)
    say(
        pytestconfig,
        f"killed rollout of {len(names)} services: converged {time.monotonic() - started:.0f} s "
        "after it began",
    )
    killed = await end_state(kube, servers, chaos, names, prefix)
    await same_as_a_clean_run(
        chaos, kube, kubectl, servers, bodies(names), prefix, killed, pytestconfig
    )


async def same_as_a_clean_run(
    chaos: Chaos,
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    bodies: list[dict[str, Any]],
    prefix: str,
    killed: dict[str, Any],
    pytestconfig: pytest.Config,
) -> None:
    """Delete these services (named ``prefix*``: nothing of them is left then), apply their
    final specs again to the module's operator, never killed, and compare its end state with
    ``killed``'s."""
    names = [body["metadata"]["name"] for body in bodies]
    kubectl("delete", "bsvc", *names, "--wait=true", "--timeout=180s")
    for name in names:
        del chaos.expected[name]
    await nothing_left(kube, servers, names, prefix)

    started = time.monotonic()
    chaos.apply(kubectl, *bodies)
    await settled(chaos, kube, CONVERGE_SECONDS)
    await eventually(lambda: idle(chaos.operator), timeout=30)
    say(pytestconfig, f"clean rollout converged after {time.monotonic() - started:.0f} s")
    clean = await end_state(kube, servers, chaos, names, prefix)
    assert len(killed["objects"]) >= len(names) * len(chaos.environments) * 4
    assert not differences(killed["objects"], clean["objects"]), "\n".join(
        differences(killed["objects"], clean["objects"])[:5]
    )
    assert not differences(killed["statuses"], clean["statuses"]), "\n".join(
        differences(killed["statuses"], clean["statuses"])[:5]
    )


# -- 1b. Two replicas: the leader SIGKILLed mid-rollout ------------------------------------------


async def test_a_leader_sigkilled_mid_rollout_hands_over_and_ends_as_a_clean_run(
    chaos: Chaos,
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> None:
    """Two replicas with leader election (the module's operator stopped meanwhile); the leader
    SIGKILLed at a random moment of a rollout: the standby takes over within 15 s and finishes
    it, to the same end state as a run never killed, and the API server's audit log shows no
    write of the old leader once the new one held the Lease, and none of the new one before."""
    audit = servers.get("BANDSY_AUDIT_LOG")
    if audit is None:
        pytest.skip(NEEDS_LOCAL_SERVERS)
    rng = random.Random(SEED + 1)
    prefix = f"ch{RUN}-"
    names = [f"{prefix}{i:02d}" for i in range(SIZE.services)]
    bodies = [rollout_service(i, names, chaos.environments, "r0") for i in range(len(names))]
    workdir = tmp_path_factory.mktemp("chaos-replicas")
    leader, standby = (
        candidate(kubectl, servers["KUBECONFIG"], workdir, f"chaos-{RUN}-{x}", RESYNC_SECONDS)
        for x in "ab"
    )
    chaos.operator.stop()
    try:
        leader.process.start()
        standby.process.start(until=STANDBY)
        chaos.apply(kubectl, *bodies)
        await eventually(lambda: busy(leader.process), timeout=60, interval=0.05)
        await asyncio.sleep(rng.uniform(0.0, 1.5))
        depth = int(leader.process.metrics()["bandsy_work_queue_depth"])
        killed_at = time.monotonic()
        leader.process.kill()
        seconds = await takeover(kube, standby, killed_at, timeout=SIGKILL_TAKEOVER_SECONDS)
        await settled(chaos, kube, CONVERGE_SECONDS, {n: chaos.expected[n] for n in names})
        await eventually(lambda: idle(standby.process), timeout=30)
        say(
            pytestconfig,
            f"two replicas, {len(names)} services x {len(chaos.environments)} environments: "
            f"leader killed at work queue depth {depth}, standby held the Lease {seconds:.1f} s "
            f"later, converged {time.monotonic() - killed_at:.0f} s after the kill",
        )
        assert depth > 0, "the kill landed after the leader's work was done"
        seen = await one_writer_at_a_time(kube, audit, old=leader, new=standby)
        say(
            pytestconfig,
            f"audit log: old leader's last of {len(seen.old)} writes {seen.old[-1].at.time()}, "
            f"new leader acquired {seen.acquired.time()}, "
            f"its first of {len(seen.new)} writes {seen.new[0].at.time()}",
        )
        killed = await end_state(kube, servers, chaos, names, prefix)
    finally:
        for each in (standby, leader):
            each.process.stop()
        chaos.operator.start()
    for each in (leader, standby):
        judge_log(each.process.log(), [])
    await same_as_a_clean_run(chaos, kube, kubectl, servers, bodies, prefix, killed, pytestconfig)


# -- 2. PostgreSQL down mid-rollout --------------------------------------------------------------


async def test_postgres_outage_is_reported_and_recovers(
    chaos: Chaos,
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    local_env: LocalEnvironment | None,
    pytestconfig: pytest.Config,
) -> None:
    """PostgreSQL stops right after a rollout starts: its services say DatabaseUnreachable and
    the others converge meanwhile; once it is back, everything converges within 30 s."""
    if local_env is None:
        pytest.skip(NEEDS_LOCAL_SERVERS)
    count = max(3, SIZE.services // 3)
    with_db = [f"cp{RUN}-{i:02d}" for i in range(count)]
    without = [f"cq{RUN}-{i:02d}" for i in range(count)]
    everywhere = tags(**dict.fromkeys(chaos.environments, "v1"))
    chaos.apply(
        kubectl,
        *(
            service_body(n, everywhere, postgres={"enabled": True, "reclaimPolicy": "Delete"})
            for n in with_db
        ),
        *(service_body(n, everywhere, port=8080) for n in without),
    )
    local_env.postgres.stop()
    stopped = time.monotonic()
    back_at = stopped + SIZE.outage_seconds
    try:

        async def unreachable() -> bool:
            for obj in await kube.list(cluster.API, SERVICE, labels=RUN_LABEL):
                if obj["metadata"]["name"] in with_db:
                    for env in chaos.environments:
                        cond = condition(obj, "DatabaseReady", env)
                        assert (cond.get("status"), cond.get("reason")) == (
                            "False",
                            "DatabaseUnreachable",
                        ), (obj["metadata"]["name"], env, cond)
                        assert condition(obj, "Ready", env).get("reason") == "DatabaseUnreachable"
            return True

        # The outage lasts at least its planned length, and until both checks have passed.
        await eventually(unreachable, timeout=CONVERGE_SECONDS)
        others = {n: chaos.expected[n] for n in without}
        await settled(chaos, kube, CONVERGE_SECONDS, others, interval=0.25)
        await asyncio.sleep(max(0.0, back_at - time.monotonic()))
    finally:
        local_env.postgres.start()
    returned = time.monotonic()
    await settled(chaos, kube, RECOVERY_SECONDS, interval=0.25)
    say(
        pytestconfig,
        f"PostgreSQL down {returned - stopped:.0f} s for {count}+{count} services: "
        f"converged {time.monotonic() - returned:.1f} s after it returned",
    )
    for name in with_db:
        for env in chaos.environments:
            pg = decode(await live(kube, "v1", "Secret", env, f"{name}-postgres"))
            await cluster.postgres_login(servers, pg)
            chaos.passwords.add(pg["PGPASSWORD"])


# -- 3. API server down mid-rollout --------------------------------------------------------------


async def test_api_server_restart_is_survived(
    chaos: Chaos,
    kube: KubeApi,
    kubectl: KubectlRunner,
    local_env: LocalEnvironment | None,
    pytestconfig: pytest.Config,
) -> None:
    """The API server stops mid-rollout (full size: 30 s before it restarts) and comes back on
    the same address and certificates: the operator keeps running, converges within 30 s of
    the server being ready, and its watches see a later edit."""
    if local_env is None:
        pytest.skip(NEEDS_LOCAL_SERVERS)
    rng = random.Random(SEED + 3)
    count = max(3, SIZE.services // 3)
    names = [f"ca{RUN}-{i:02d}" for i in range(count)]
    everywhere = tags(**dict.fromkeys(chaos.environments, "v1"))
    chaos.apply(
        kubectl,
        *(
            service_body(
                n,
                everywhere,
                port=9000,
                postgres={"enabled": i % 2 == 0, "reclaimPolicy": "Delete"},
            )
            for i, n in enumerate(names)
        ),
    )
    await asyncio.sleep(rng.uniform(0.05, 0.5))
    depth = int(chaos.operator.metrics()["bandsy_work_queue_depth"])
    control_plane = local_env.kube
    address, ca = control_plane.server, control_plane.ca_file.read_bytes()
    log_from = len(chaos.operator.log())
    control_plane.processes["kube-apiserver"].stop()
    stopped = time.monotonic()
    await asyncio.sleep(SIZE.api_pause_seconds)
    assert chaos.operator.running(), "the operator exited while the API server was away"
    await asyncio.to_thread(control_plane.start_apiserver)
    returned = time.monotonic()
    assert (control_plane.server, control_plane.ca_file.read_bytes()) == (address, ca)
    await settled(chaos, kube, RECOVERY_SECONDS)
    took = time.monotonic() - returned
    chaos.api_outages.append((log_from, len(chaos.operator.log())))
    # Not the operator's (the admission policies exempt it), but a person's next edit waits for
    # the mutating policy of SPEC §10 to read the CRD's schema again (up to 5 s).
    await asyncio.to_thread(rights.wait_until_served, kubectl)

    # Edits made after the restart arrive through the operator's new watches.
    # One service of this rollout, and one converged long before it (when the module has one).
    edited = [names[0], *[n for n in chaos.expected if n.startswith(f"ck{RUN}")][:1]]
    for name in edited:
        body = copy.deepcopy(chaos.expected[name])
        for env in body["spec"]["environments"].values():
            env["image"]["tag"] = "after-restart"
        chaos.apply(kubectl, body)
    await settled(chaos, kube, RECOVERY_SECONDS)
    for name in edited:
        for env in chaos.environments:
            deployment = await live(kube, "apps/v1", "Deployment", env, name)
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image.endswith(":after-restart"), image
    say(
        pytestconfig,
        f"API server down {returned - stopped:.0f} s mid-rollout of {count} services "
        f"(work queue depth {depth} when it stopped): "
        f"converged {took:.1f} s after it was ready; {len(edited)} later edits rolled out",
    )


# -- 4. malformed custom resources ---------------------------------------------------------------


def generate_recipes(count: int) -> list[Recipe]:
    """Hypothesis draws the bodies (seeded, no example database); extra ones make up for the
    duplicates and the bodies predicted valid, which are excluded below."""
    found: list[Recipe] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(recipes())
    def collect(recipe: Recipe) -> None:
        found.append(recipe)

    collect()
    return found


@dataclass
class Verdict:
    recipe: Recipe
    expected: Outcome  # the recipe's own prediction, composed from its mutations' outcomes
    name: str = ""  # of the object created (predicted reported)


async def test_malformed_resources_are_refused_or_reported(
    chaos: Chaos,
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pytestconfig: pytest.Config,
) -> None:
    """Generated malformed BandsyServices and BandsyEnvironments, each with the outcome its
    recipe predicts from SPEC and the CRD's rules (tests/chaos/malformed.py, no operator code):
    refused by the API server with the predicted status code, or accepted and reported with the
    predicted reason. Bodies predicted valid must be accepted (dry run) and are not created.
    The operator never exits and writes nothing for any of them (the API server's own request
    counters for the kinds it manages)."""
    first, second = chaos.environments[0], chaos.environments[1]
    long_names = chaos.long_names_environment
    portless, elsewhere = f"an{RUN}-noport", f"an{RUN}-elsewhere"
    chaos.apply(
        kubectl,
        # In every known environment a body may name: a dependency on it lacks only the port.
        service_body(portless, tags(**{first: "v1", long_names: "v1"})),
        service_body(elsewhere, tags(**{second: "v1"}), port=8080),
    )
    await settled(chaos, kube, 60, interval=0.25)
    await eventually(lambda: idle(chaos.operator), timeout=30)

    started = time.monotonic()
    generated = generate_recipes(SIZE.malformed + SIZE.malformed // 2)
    unique: dict[str, tuple[Recipe, dict[str, Any]]] = {}
    for i, recipe in enumerate(generated):
        ctx = Context(f"bad{i:03d}-{RUN}", MALFORMED_LABEL, first, portless, elsewhere, long_names)
        body = recipe.body(ctx)
        shape = json.dumps({**body, "metadata": {}}, sort_keys=True) + recipe.describe()
        unique.setdefault(shape, (recipe, body))
    generation = time.monotonic() - started

    raw = cluster.RawApi(servers["KUBECONFIG"])
    limit = asyncio.Semaphore(8)
    before = cluster.write_requests(kubectl)
    assert before["deployments"] > 0, "the counters do not see the anchors' writes"
    wrong: list[str] = []  # bodies whose real outcome is not the predicted one

    async def submit(recipe: Recipe, body: dict[str, Any]) -> Verdict:
        verdict = Verdict(recipe, recipe.expected())
        expected, shown = verdict.expected, f"{recipe.describe()} (predicted {verdict.expected})"
        async with limit:
            dry = await raw.create(recipe.kind, body, dry_run=True)
            if expected.kind == "refused":
                if dry.status_code == 201:
                    wrong.append(f"accepted, a gap in the CRD? {shown}")
                elif dry.status_code != expected.code:
                    wrong.append(f"refused {dry.status_code}: {shown}: {dry.text[:300]}")
                else:
                    created = await raw.create(recipe.kind, body, dry_run=False)
                    if created.status_code != dry.status_code:
                        wrong.append(
                            f"dry run {dry.status_code}, then {created.status_code}: {shown}"
                        )
                return verdict
            if dry.status_code != 201:
                wrong.append(f"refused {dry.status_code}: {shown}: {dry.text[:300]}")
                return verdict
            # The oracle's premise (Recipe.expected): an accepted service names one environment.
            named = dry.json()["spec"].get("environments") or {}
            if recipe.kind == SERVICE and len(named) != 1:
                wrong.append(f"accepted with environments {sorted(named)}: {shown}")
            elif expected.kind == "reported":
                created = await raw.create(recipe.kind, body, dry_run=False)
                if created.status_code == 201:
                    verdict.name = created.json()["metadata"]["name"]
                else:
                    wrong.append(f"dry run accepted, then {created.status_code}: {shown}")
            return verdict

    try:
        verdicts = await asyncio.gather(*(submit(r, b) for r, b in unique.values()))
    finally:
        await raw.close()
    accepted = [v for v in verdicts if v.expected.kind == "reported" and v.name]
    counts = collections.Counter(v.expected.kind for v in verdicts)
    refused_by = collections.Counter(v.expected.code for v in verdicts if v.expected.code)
    reasons = collections.Counter(
        f"{v.recipe.kind}:{v.expected.reason}" for v in verdicts if v.expected.reason
    )
    by_kind = {
        kind: dict(collections.Counter(v.expected.kind for v in verdicts if v.recipe.kind == kind))
        for kind in (SERVICE, ENVIRONMENT)
    }
    say(
        pytestconfig,
        f"malformed CRs: {len(generated)} generated in {generation:.0f} s, {len(unique)} distinct; "
        f"predicted by kind {by_kind}: "
        f"{counts['refused']} refused by the API server {dict(refused_by)}, "
        f"{counts['reported']} accepted and reported {dict(reasons)}, "
        f"{counts['valid']} valid after all, not created "
        f"{[v.recipe.describe() for v in verdicts if v.expected.kind == 'valid'][:3]}; "
        f"{len(wrong)} not as predicted",
    )
    assert not wrong, f"{len(wrong)} bodies not as predicted:\n" + "\n".join(wrong[:20])

    async def reported() -> bool:
        live = {
            (kind, o["metadata"]["name"]): o
            for kind in (SERVICE, ENVIRONMENT)
            for o in await kube.list(cluster.API, kind, labels=MALFORMED_LABEL)
        }
        for verdict in accepted:
            obj = live[(verdict.recipe.kind, verdict.name)]
            reason = verdict.expected.reason
            ready = condition(obj, "Ready")
            assert (ready.get("status"), ready.get("reason")) == ("False", reason), (
                verdict.recipe.describe(),
                ready,
            )
            if verdict.recipe.kind == SERVICE:
                stalled = condition(obj, "Stalled")
                assert (stalled.get("status"), stalled.get("reason")) == ("True", reason)
                assert not (obj.get("status") or {}).get("inventory")
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        return True

    await eventually(reported, timeout=60, interval=1)
    assert chaos.operator.running(), "the operator exited"
    assert healthz(chaos.operator) == 200
    await eventually(lambda: idle(chaos.operator), timeout=30)
    after = cluster.write_requests(kubectl)
    assert after == before, f"the operator wrote managed objects during the barrage: {after}"
    for verdict in accepted:
        if verdict.recipe.kind == SERVICE:
            assert await cluster.labelled_for(kube, verdict.name) == []
    nothing = {"roles": [], "databases": {}}
    assert await cluster.roles_and_databases(servers, f"bad*{RUN}") == nothing
    assert await cluster.credential_users(kube, f"bad*{RUN}") == []

    assert counts["refused"] + counts["reported"] >= SIZE.malformed
    kubectl(
        "delete",
        "bsvc,benv",
        "-l",
        f"chaos.bandsy.test/input=malformed,chaos.bandsy.test/run={RUN}",
        "--wait=true",
        "--timeout=120s",
    )


# -- 5. secrecy, after everything above ----------------------------------------------------------


async def test_no_generated_password_leaks(
    chaos: Chaos, kube: KubeApi, servers: dict[str, str]
) -> None:
    """Every password generated in this module, including those of services since deleted:
    none in any life of the operator's log, Events, statuses or the server logs."""
    passwords = chaos.passwords | await generated_passwords(kube)
    assert len(passwords) >= SIZE.services, "nothing to sweep: run it after the tests above"
    assert_not_leaked(
        passwords,
        await haystacks(kube, servers, {"operator log (every life)": chaos.operator.log()}),
    )
