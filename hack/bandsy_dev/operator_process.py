"""The operator as its users run it, for tests, benchmarks and fault injection: a separate
``python -m bandsy_operator`` process with the shipped ServiceAccount's permissions, and kubectl."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bandsy_operator.manifest_yaml import dump_all

from .kube import REPO_ROOT, kubectl_path
from .procs import ManagedProcess, free_port
from .users import write_kubeconfig

# What kopf logs when SIGTERM begins its shutdown.
SHUTDOWN_MARK = "Signal SIGTERM is received"
# One log record (up to the next timestamped line) of asyncio about a kopf watch generator.
KOPF_CLOSING_NOISE = re.compile(
    r"^\S+ \S+ ERROR asyncio: an error occurred during closing of asynchronous generator "
    r"<async_generator object infinite_watch .*?(?=^\d{4}-\d\d-\d\d |\Z)",
    re.MULTILINE | re.DOTALL,
)


class KubectlRunner:
    """kubectl as a user runs it, against one cluster."""

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

    def apply(
        self, *manifests: Mapping[str, Any], force_conflicts: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Server-side apply, as a user (or devops, with ``force_conflicts``) would."""
        force = ["--force-conflicts"] if force_conflicts else []
        return self("apply", "--server-side", *force, "-f", "-", input=dump_all(manifests))


# What the operator logs once it reconciles (handlers.py), and as a standby (leadership.py).
STARTED = "bandsy_operator.handlers: started"
STANDBY = "standby: "


class OperatorProcess:
    """``python -m bandsy_operator`` as a separate process, logging to a file."""

    def __init__(
        self,
        kubeconfig: str,
        log_file: Path,
        resync_seconds: float,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.log_file = log_file
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "BANDSY_RESYNC_INTERVAL": str(resync_seconds),
            "BANDSY_LIVENESS_PORT": str(self.liveness_port),
            "BANDSY_METRICS_PORT": str(self.metrics_port),
            # One operator per test session or benchmark: no Lease to renew (nor to lose while a
            # test stops the API server). The high-availability tests turn it on.
            "BANDSY_LEADER_ELECTION": "false",
            **(extra_env or {}),
        }
        self.process: ManagedProcess | None = None

    def start(self, until: str = STARTED) -> None:
        """Start, and wait until the log says ``until`` once more: ``STARTED`` (reconciling) or,
        with leader election, ``STANDBY`` (waiting for the Lease)."""
        # Each start appends, so a log read after restarts covers every life of the operator.
        self.process = ManagedProcess(
            "bandsy-operator",
            [sys.executable, "-m", "bandsy_operator"],
            self.log_file,
            env=self.env,
        )
        starts = self.log().count(until)
        self.process.start()
        self.process.wait_until(lambda: self.log().count(until) > starts, timeout=60, what=until)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    @property
    def pid(self) -> int:
        assert self.process is not None, "the operator was never started"
        return self.process.pid

    def log(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")

    def log_of_its_own(self) -> str:
        """Its log without what kopf's watch generators may say while the event loop closes,
        after every handler has ended (``generator didn't stop after athrow()``): nothing of
        ours, and it comes and goes with timing."""
        return KOPF_CLOSING_NOISE.sub("", self.log())

    def metrics(self) -> dict[str, float]:
        """The operator's own ``/metrics``: one value per sample name and labels."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return parse_prometheus(response.read().decode())

    def peak_rss_bytes(self) -> int:
        """VmHWM: the highest resident set size the process has had."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None, "no VmHWM in /proc/<pid>/status"
        return int(match.group(1)) * 1024


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text format to ``{'name{labels}': value}`` (comments dropped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def least_privilege_kubeconfig(kubectl: KubectlRunner, admin_kubeconfig: str, path: Path) -> str:
    """A kubeconfig for the operator's ServiceAccount, bound to exactly the shipped ClusterRole,
    so whatever runs the operator this way also proves deploy/rbac.yaml is enough."""
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
    return kubeconfig_with_token(admin_kubeconfig, token, path, "bandsy-operator")


def kubeconfig_with_token(admin_kubeconfig: str, token: str, path: Path, user: str) -> str:
    """The admin's kubeconfig (same cluster) for another identity, by its bearer token."""
    return str(write_kubeconfig(Path(admin_kubeconfig), path, user, token))
