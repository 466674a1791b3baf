"""Shared fixtures. Integration and e2e tests run against real local servers.

By default the session starts its own servers in a temporary directory. Set
``BANDSY_CLUSTER_ENV=.local/cluster.env`` to reuse the servers of ``make cluster-up`` instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bandsy_dev import rights
from bandsy_dev.install import local_samples
from bandsy_dev.local_env import LocalEnvironment, read_cluster_env
from bandsy_dev.operator_process import (
    KubectlRunner,
    OperatorProcess,
    least_privilege_kubeconfig,
)
from bandsy_dev.users import USERS
from bandsy_operator.kube import KubeApi
from rbac_denials import rbac_denials


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tests/chaos kills and restarts its own operator: it must finish before the session one starts.
    chaos = Path(__file__).parent / "chaos"
    items.sort(key=lambda item: not item.path.is_relative_to(chaos))


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEnvironment | None]:
    """The servers this session started (None when reusing ``make cluster-up``'s)."""
    if os.environ.get("BANDSY_CLUSTER_ENV"):
        yield None
        return
    # Node-less: these tests play the deployment controller (bandsy_dev.kubelet); tests/node
    # starts a node of its own.
    env = LocalEnvironment(tmp_path_factory.mktemp("servers"), with_node=False, audit=True)
    env.start()
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="session")
def servers(local_env: LocalEnvironment | None) -> dict[str, str]:
    """cluster.env variables (SPEC §8) of running servers: API server, PostgreSQL, Redis."""
    if local_env is None:
        return read_cluster_env(Path(os.environ["BANDSY_CLUSTER_ENV"]))
    return local_env.variables()


@pytest.fixture(scope="session")
def kubectl(servers: dict[str, str]) -> KubectlRunner:
    return KubectlRunner(servers["KUBECONFIG"])


REPO_ROOT = Path(__file__).resolve().parents[1]
RESYNC_SECONDS = 2.0


@pytest.fixture(scope="session")
def crds(kubectl: KubectlRunner) -> None:
    """The CRDs, and with them the admission policies of SPEC §10 (deploy/policies) and the
    sample rights of the local users: every test runs under them, the operator's included."""
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    rights.install(kubectl)


@dataclass(frozen=True)
class Person:
    """A user of the local API server (its token file), acting with their own token."""

    name: str
    groups: tuple[str, ...]
    kubeconfig: str
    kubectl: KubectlRunner


@pytest.fixture(scope="session")
def users(servers: dict[str, str], crds: None) -> dict[str, Person]:
    """The people of SPEC §10 by role (``developer``, ``promoter``, ``other_team``, ``ci``),
    with the rights deploy/samples/rights.yaml binds (installed with the policies)."""
    people = {}
    for user in USERS:
        name_key, _, kubeconfig_key = user.env_keys
        kubeconfig = servers[kubeconfig_key]
        people[user.role.lower()] = Person(
            servers[name_key], user.groups, kubeconfig, KubectlRunner(kubeconfig)
        )
    return people


@pytest.fixture(scope="session")
def operator(
    servers: dict[str, str],
    crds: None,
    kubectl: KubectlRunner,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = least_privilege_kubeconfig(kubectl, servers["KUBECONFIG"], workdir / "kubeconfig")
    # The image backup Jobs would run (SPEC §11): no pod tells it here, nothing runs it.
    proc = OperatorProcess(
        kubeconfig,
        workdir / "operator.log",
        RESYNC_SECONDS,
        extra_env={"BANDSY_JOB_IMAGE": "localhost/bandsy/operator:dev"},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        log = working_lives(proc.log())
        assert "Traceback" not in log, "the operator logged an unexpected exception"
        assert not rbac_denials(log), "the shipped ClusterRole lacks a permission"


def working_lives(log: str) -> str:
    """What the operator logged in each of its lives (a test may stop and start it) until it
    was told to stop: kopf's own watch streams may complain while it shuts down."""
    lives = log.split("bandsy_operator.handlers: started")
    return "".join(life.partition("Signal SIGTERM is received")[0] for life in lives)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kube(servers: dict[str, str]) -> AsyncIterator[KubeApi]:
    """The operator's own client, as the admin: tests read what the operator wrote with it."""
    api = KubeApi.from_kubeconfig(servers["KUBECONFIG"])
    try:
        yield api
    finally:
        await api.close()


def install_local_samples(
    kubectl: KubectlRunner, servers: dict[str, str], kinds: tuple[str, ...]
) -> None:
    """deploy/samples as ``make run`` installs them (databases on the local servers), with
    production's 10-minute soak in preprod shortened to one second for tests."""
    documents = [d for d in local_samples(servers) if d["kind"] in kinds]
    kubectl.apply(*documents, force_conflicts=True)
    kubectl(
        "patch",
        "benv",
        "production",
        "--type=merge",
        "-p",
        '{"spec": {"promotion": {"soakSeconds": 1}}}',
    )
