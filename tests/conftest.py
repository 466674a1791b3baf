"""Shared fixtures. Integration and e2e tests run against real local servers.

By default the session starts its own servers in a temporary directory. Set
``BANDSY_CLUSTER_ENV=.local/cluster.env`` to reuse the servers of ``make cluster-up`` instead.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandsy_dev.kube import kubectl_path
from bandsy_dev.local_env import LocalEnvironment, read_cluster_env


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
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """cluster.env variables (SPEC §8) of running servers: API server, PostgreSQL, Redis."""
    reuse = os.environ.get("BANDSY_CLUSTER_ENV")
    if reuse:
        yield read_cluster_env(Path(reuse))
        return
    env = LocalEnvironment(tmp_path_factory.mktemp("servers"))
    env.start()
    try:
        yield {**env.variables(), "_WORKDIR": str(env.workdir)}
    finally:
        env.stop()


@pytest.fixture(scope="session")
def kubectl(servers: dict[str, str]) -> KubectlRunner:
    return KubectlRunner(servers["KUBECONFIG"])
