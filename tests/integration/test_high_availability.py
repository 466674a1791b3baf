"""Two operator processes with leader election against the real API server (SPEC §12): one
leads and reconciles, the other waits healthy without writing; a SIGTERMed leader hands over
at once, a SIGKILLed one within 15 s; an old leader writes nothing once the new one holds the
Lease (the API server's audit log)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from bandsy_dev.operator_process import STANDBY, STARTED
from bandsy_dev.procs import signal_group
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.leadership import LOST_LEASE_EXIT_STATUS
from conftest import RESYNC_SECONDS, KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from leases import (
    DEFAULTS,
    LEASE,
    SIGKILL_TAKEOVER_SECONDS,
    SIGTERM_TAKEOVER_SECONDS,
    Candidate,
    candidate,
    lease_spec,
    one_writer_at_a_time,
    takeover,
    writes_of,
)
from rbac_denials import rbac_denials
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

RUN = uuid.uuid4().hex[:4]
ENVIRONMENT = f"ha-{RUN}"
# A SIGTERMed leader's last reconciles end, then it hands over and exits.
SIGTERM_EXIT_SECONDS = 10.0


def say(config: pytest.Config, line: str) -> None:
    """Measured takeover times belong in the output, past pytest's capture."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[high availability] {line}")


@pytest.fixture(scope="module")
def environment(kubectl: KubectlRunner, operator: OperatorProcess, crds: None) -> Iterator[str]:
    """An environment without databases, made by the session operator, which then stops for
    this module (two writers are what it must never see) and comes back afterwards to delete it."""
    kubectl.apply(environment_body(ENVIRONMENT, deletionPolicy="Delete"))
    operator.stop()
    try:
        yield ENVIRONMENT
    finally:
        operator.start()
        kubectl("delete", "benv", ENVIRONMENT, "--wait=true", "--timeout=120s")


@pytest.fixture
def pair(
    environment: str,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Candidate, Candidate]]:
    """``a`` leads (it started first), ``b`` waits; both stopped afterwards (SIGTERM)."""
    workdir = tmp_path_factory.mktemp("ha")
    a, b = (
        candidate(kubectl, servers["KUBECONFIG"], workdir, f"ha-{RUN}-{x}", RESYNC_SECONDS)
        for x in "ab"
    )
    try:
        a.process.start()
        b.process.start(until=STANDBY)
        yield a, b
    finally:
        for each in (b, a):
            each.process.stop()
        for each in (a, b):
            log = each.process.log_of_its_own()
            assert "Traceback" not in log, f"{each.name} logged an exception"
            assert not rbac_denials(log), "the shipped RBAC lacks a permission"


async def reconciling(who: Candidate) -> bool:
    return STARTED in who.process.log()


def healthz(process: OperatorProcess) -> int:
    url = f"http://127.0.0.1:{process.liveness_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


async def converged(kube: KubeApi, name: str, tag: str) -> bool:
    """The service's latest spec was reconciled: its Deployment runs ``tag``."""
    service = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
    assert service is not None
    status = service.get("status") or {}
    assert status.get("observedGeneration") == service["metadata"]["generation"], status
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", ENVIRONMENT, name))
    assert deployment is not None, "no Deployment yet"
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{tag}"), image
    return True


def deploy(kubectl: KubectlRunner, name: str, tag: str) -> None:
    kubectl.apply(service_body(name, tags(**{ENVIRONMENT: tag}), port=8080))


async def test_only_the_leader_reconciles(
    pair: tuple[Candidate, Candidate],
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
) -> None:
    a, b = pair
    assert (await lease_spec(kube))["holderIdentity"] == a.name
    assert healthz(b.process) == 200  # ready to take over: its probes pass
    assert not await reconciling(b)  # no watch, no reconcile
    # Both answer their scrapes, and say which one leads.
    assert (a.process.metrics()["bandsy_leader"], b.process.metrics()["bandsy_leader"]) == (1, 0)

    name = f"ha-{RUN}-one"
    deploy(kubectl, name, "v1")
    await eventually(lambda: converged(kube, name, "v1"), timeout=30)
    written = {(w.resource, w.name) for w in writes_of(servers["BANDSY_AUDIT_LOG"], a)}
    assert ("deployments", name) in written
    assert ("leases", a.name) not in written  # the Lease is named for the operator, not a pod
    assert writes_of(servers["BANDSY_AUDIT_LOG"], b) == []  # not even the Lease
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_sigterm_hands_over_at_once(
    pair: tuple[Candidate, Candidate],
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pytestconfig: pytest.Config,
) -> None:
    a, b = pair
    name = f"ha-{RUN}-term"
    deploy(kubectl, name, "v1")
    await eventually(lambda: converged(kube, name, "v1"), timeout=30)

    signalled = time.monotonic()
    signal_group(a.process.pid, signal.SIGTERM)  # as the kubelet sends it
    seconds = await takeover(kube, b, signalled, timeout=SIGTERM_TAKEOVER_SECONDS)
    say(pytestconfig, f"SIGTERM: the standby held the Lease {seconds:.2f} s after the signal")

    async def ended() -> bool:
        return not a.process.running()

    # Gone too, well within a pod's grace period: the kubelet need not SIGKILL it.
    await eventually(ended, timeout=SIGTERM_EXIT_SECONDS, interval=0.05)
    say(pytestconfig, f"SIGTERM: the old leader ended {time.monotonic() - signalled:.2f} s after")
    await eventually(lambda: reconciling(b), timeout=30)

    deploy(kubectl, name, "v2")
    await eventually(lambda: converged(kube, name, "v2"), timeout=30)
    await one_writer_at_a_time(kube, servers["BANDSY_AUDIT_LOG"], old=a, new=b)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_sigkilled_leader_is_replaced_within_15_seconds(
    pair: tuple[Candidate, Candidate],
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pytestconfig: pytest.Config,
) -> None:
    a, b = pair
    name = f"ha-{RUN}-kill"
    deploy(kubectl, name, "v1")
    await eventually(lambda: converged(kube, name, "v1"), timeout=30)

    killed = time.monotonic()
    a.process.kill()
    seconds = await takeover(kube, b, killed, timeout=SIGKILL_TAKEOVER_SECONDS)
    deploy(kubectl, name, "v2")
    await eventually(lambda: converged(kube, name, "v2"), timeout=30)
    reconciled = time.monotonic() - killed
    say(
        pytestconfig,
        f"SIGKILL: the standby held the Lease {seconds:.2f} s after the kill, "
        f"and had reconciled an edit made then {reconciled:.2f} s after it",
    )
    await one_writer_at_a_time(kube, servers["BANDSY_AUDIT_LOG"], old=a, new=b)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_leader_that_cannot_renew_exits_before_anyone_takes_over(
    pair: tuple[Candidate, Candidate],
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pytestconfig: pytest.Config,
) -> None:
    """Someone else's name in the Lease (as after a partition, or a pause longer than the
    lease): the leader's renewals fail, and within the renew deadline it exits, well before the
    standby (which counts a lease duration from the change) acquires the Lease."""
    a, b = pair
    popen = a.process.process.popen if a.process.process else None
    assert popen is not None
    name = f"ha-{RUN}-lost"
    deploy(kubectl, name, "v1")
    await eventually(lambda: converged(kube, name, "v1"), timeout=30)

    usurped = time.monotonic()
    kubectl(
        "-n", LEASE.namespace, "patch", "lease", LEASE.name, "--type=merge",
        "-p", json.dumps({"spec": {"holderIdentity": "usurper"}}),
    )  # fmt: skip
    status = await asyncio.to_thread(popen.wait, DEFAULTS.lease_renew_deadline + 5)
    exited = time.monotonic() - usurped
    assert status == LOST_LEASE_EXIT_STATUS
    assert "has not renewed Lease" in a.process.log()
    seconds = await takeover(kube, b, usurped, timeout=SIGKILL_TAKEOVER_SECONDS)
    say(
        pytestconfig,
        f"lost Lease: the leader exited {exited:.2f} s after it could no longer renew; "
        f"the standby held the Lease {seconds:.2f} s after that",
    )
    assert exited <= DEFAULTS.lease_renew_deadline + 1
    await one_writer_at_a_time(kube, servers["BANDSY_AUDIT_LOG"], old=a, new=b)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
