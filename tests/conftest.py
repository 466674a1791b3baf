"""Shared fixtures. Integration and e2e tests run against real local servers.

By default the session starts its own servers in a temporary directory. Set
``BANDSY_CLUSTER_ENV=.local/cluster.env`` to reuse the servers of ``make cluster-up`` instead.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from bandsy_dev.install import local_samples
from bandsy_dev.kube import kubectl_path
from bandsy_dev.local_env import LocalEnvironment, read_cluster_env
from bandsy_dev.procs import ManagedProcess, free_port
from bandsy_operator.kube import KubeApi


class KubectlRunner:
    """kubectl as a user runs it, against the test cluster."""

    def __init__(self, kubeconfig: str) -> None:
        self.binary = str(kubectl_path())
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args], input=input, capture_output=True, text=True, env=self.env
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEnvironment | None]:
    """The servers this session started (None when reusing ``make cluster-up``'s)."""
    if os.environ.get("BANDSY_CLUSTER_ENV"):
        yield None
        return
    env = LocalEnvironment(tmp_path_factory.mktemp("servers"))
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
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


class OperatorProcess:
    """``python -m bandsy_operator`` as a separate process, logging to a file."""

    def __init__(self, kubeconfig: str, log_file: Path, extra_env: dict[str, str] | None = None):
        self.log_file = log_file
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "BANDSY_RESYNC_INTERVAL": str(RESYNC_SECONDS),
            "BANDSY_LIVENESS_PORT": str(self.liveness_port),
            "BANDSY_METRICS_PORT": str(self.metrics_port),
            **(extra_env or {}),
        }
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        import sys

        self.process = ManagedProcess(
            "bandsy-operator",
            [sys.executable, "-m", "bandsy_operator"],
            self.log_file,
            env=self.env,
        )
        self.process.start()
        self.process.wait_until(
            lambda: " started" in self.log_file.read_text(), timeout=60, what="started"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def least_privilege_kubeconfig(kubectl: KubectlRunner, admin_kubeconfig: str, path: Path) -> str:
    """A kubeconfig for the operator's ServiceAccount, bound to exactly the shipped ClusterRole,
    so every test that talks to the operator also proves deploy/rbac.yaml is enough."""
    kubectl(
        "apply",
        "--server-side",
        "-f",
        str(REPO_ROOT / "deploy" / "namespace.yaml"),
        "-f",
        str(REPO_ROOT / "deploy" / "rbac.yaml"),
    )
    token = kubectl(
        "-n", "bandsy-system", "create", "token", "bandsy-operator", "--duration=6h"
    ).stdout.strip()
    config = yaml.safe_load(Path(admin_kubeconfig).read_text())
    config["users"] = [{"name": "bandsy-operator", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "bandsy-operator"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="session")
def operator(
    servers: dict[str, str],
    crds: None,
    kubectl: KubectlRunner,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = least_privilege_kubeconfig(kubectl, servers["KUBECONFIG"], workdir / "kubeconfig")
    proc = OperatorProcess(kubeconfig, workdir / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        # kopf's own watch streams may complain while it shuts down; judge the working life.
        log = proc.log().partition("Signal SIGTERM is received")[0]
        assert "Traceback" not in log, "the operator logged an unexpected exception"
        assert "Forbidden" not in log, "the shipped ClusterRole lacks a permission"


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
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=yaml.safe_dump_all(documents),
    )
    kubectl(
        "patch",
        "benv",
        "production",
        "--type=merge",
        "-p",
        '{"spec": {"promotion": {"soakSeconds": 1}}}',
    )
