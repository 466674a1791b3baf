"""Child processes that log to files and stop cleanly, plus small waiting helpers."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class StartupError(RuntimeError):
    """A server did not become ready; the message points at its log file."""


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports handed out by this process: each server gets its own, even before any of them binds.
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port nothing listens on, for a server that binds it later. Chosen below the kernel's
    ephemeral range: a port from ``bind(0)`` lies in that range, where every outgoing
    connection takes its local port, and one did take a kubelet's between the choice and the
    kubelet's bind ("address already in use")."""
    end = _ephemeral_start()
    for _ in range(1000):
        port = secrets.SystemRandom().randrange(max(1024, end - 12000), end)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))  # every address: a server may listen on any of them
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port below {end}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class ManagedProcess:
    """One server process in its own session, stdout and stderr appended to ``log_file``."""

    name: str
    argv: Sequence[str]
    log_file: Path
    env: dict[str, str] | None = None
    user: str | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                user=self.user,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise StartupError(
                    f"{self.name} exited before it was {what}; log {self.log_file}:\n"
                    f"{tail(self.log_file)}"
                )
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        raise StartupError(
            f"{self.name} not {what} after {timeout:.0f} s; log {self.log_file}:\n"
            f"{tail(self.log_file)}"
        )

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        signal_group(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(grace)

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        if self.popen is not None and self.popen.poll() is None:
            signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def pid_alive(pid: int) -> bool:
    """Running (a zombie counts as gone: whoever is its parent reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def terminate(pids: Sequence[int], grace: float = 10.0, group: bool = False) -> None:
    """SIGTERM all at once (so none waits for another to go), SIGKILL what still runs after
    ``grace`` seconds. ``group``: signal each one's process group (our servers lead theirs)."""

    def send(sig: signal.Signals) -> None:
        for pid in pids:
            if group:
                signal_group(pid, sig)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def wait(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    send(signal.SIGTERM)
    wait(grace)
    send(signal.SIGKILL)
    wait(5.0)  # a killed process is gone once the kernel has torn it down


class CommandError(RuntimeError):
    """A host command failed; the message holds its stderr."""


def run(
    *argv: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short host command (ip, nft, ctr, ...) and capture its output."""
    result = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def run_build_script(script: Path) -> Path:
    """Run a ``hack/*/build.sh`` (build or reuse); it prints the artefact's path last."""
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False
