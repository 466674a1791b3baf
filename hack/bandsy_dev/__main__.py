"""``python -m bandsy_dev up|down|status`` — the local servers in the background (make cluster-up).

``up`` starts a detached supervisor that owns the servers and tears them down on SIGTERM, and
returns once ``cluster.env`` is written. ``down`` stops the supervisor and, should it have died,
every server process it recorded, and gives the host back from the node's record.
``cleanup-node DIR`` does the latter for a node work dir whose owner died (a killed test run).
``import-image ARCHIVE`` imports an OCI archive (images named in full) into the running node.
``tag-image TAG [TAG...]`` makes ``$BANDSY_TEST_IMAGE:TAG`` (the test app) available on it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import testapp
from .host_state import remove_tree
from .local_env import LocalEnvironment
from .node import node_wanted, running_node_importer
from .node_cleanup import restore_from
from .node_config import NodePaths
from .procs import pid_alive, signal_group, tail, terminate

DEFAULT_STATE = Path(__file__).resolve().parents[2] / ".local"
UP_TIMEOUT = 60 * 60  # the first run builds the control plane


def _read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(p) for p in path.read_text().split() if p.strip().isdigit()]


def supervise(state: Path, with_node: bool) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    servers = state / "servers"
    if servers.exists():
        remove_tree(servers)  # refuses should a mount remain (down restores the host first)
    env = LocalEnvironment(servers, with_node=with_node)
    started = time.monotonic()
    try:
        env.start()
        (state / "pids").write_text("\n".join(map(str, env.pids())) + "\n")
        env.publish(state)
        node = "with a node" if env.node is not None else "node-less"
        print(f"local cluster ready ({node}) in {time.monotonic() - started:.1f} s", flush=True)
        stop.wait()
    finally:
        env.stop()
        for name in ("cluster.env", "pids"):
            (state / name).unlink(missing_ok=True)
        print("local cluster stopped", flush=True)
    return 0


def up(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    with_node = node_wanted()  # here, so a non-root run's notice reaches the terminal
    pid_file = state / "supervisor.pid"
    if any(pid_alive(pid) for pid in _read_pids(pid_file)) and (state / "cluster.env").exists():
        print(f"already running; source {state / 'cluster.env'}")
        return 0
    down(state, quiet=True)
    log = state / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bandsy_dev",
                "supervise",
                "--state",
                str(state),
                f"--node={int(with_node)}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
    pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + UP_TIMEOUT
    while not (state / "cluster.env").exists():
        if proc.poll() is not None:
            print(f"local cluster failed to start; {log}:\n{tail(log, 60)}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            down(state)
            print("local cluster did not start in time", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"local cluster ready: source {state / 'cluster.env'}")
    print(f"  kubectl --kubeconfig {state / 'kubeconfig'} get ns")
    return 0


def down(state: Path, quiet: bool = False) -> int:
    pid_file = state / "supervisor.pid"
    for pid in _read_pids(pid_file):
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        signal_group(pid, signal.SIGKILL)
    # Servers outlive a supervisor that was killed hard; they were recorded for this.
    terminate(_read_pids(state / "pids"), group=True)
    # A node whose supervisor died: its own processes, pods, mounts, network, firewall, ...
    restore_from(NodePaths(state / "servers" / "node").record)
    for name in ("supervisor.pid", "pids", "cluster.env", "kubeconfig"):
        (state / name).unlink(missing_ok=True)
    if not quiet:
        print("local cluster stopped")
    return 0


def status(state: Path) -> int:
    alive = [pid for pid in _read_pids(state / "pids") if pid_alive(pid)]
    if (state / "cluster.env").exists() and alive:
        print(f"running ({len(alive)} server processes); env: {state / 'cluster.env'}")
        return 0
    print("not running")
    return 1


def cleanup_node(workdir: Path) -> int:
    if restore_from(NodePaths(workdir).record):
        print(f"host restored from the node in {workdir}")
    else:
        print(f"no node record in {workdir}: nothing to restore")
    return 0


def _running_node_import(state: Path) -> Callable[[Path], list[str]] | None:
    importer = running_node_importer(state)
    if importer is None:
        print(f"no node runs from {state} (make cluster-up as root)", file=sys.stderr)
    return importer


def import_image(state: Path, archive: Path) -> int:
    importer = _running_node_import(state)
    if importer is None:
        return 1
    for reference in importer(archive):
        print(f"imported {reference}")
    return 0


def tag_image(state: Path, tags: list[str]) -> int:
    importer = _running_node_import(state)
    if importer is None:
        return 1
    for reference in testapp.tag_image(importer, tags):
        print(f"available on the node: {reference}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bandsy_dev", description=__doc__)
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "supervise", "cleanup-node", "import-image", "tag-image"],
    )
    parser.add_argument(
        "args",
        nargs="*",
        help="cleanup-node: the node work dir; import-image: an archive; tag-image: tags",
    )
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state directory")
    parser.add_argument("--node", type=int, choices=[0, 1], help="supervise: run a node or not")
    args = parser.parse_args(argv)
    state: Path = args.state.resolve()
    if args.command == "tag-image":
        if not args.args:
            parser.error("tag-image needs at least one tag")
        return tag_image(state, args.args)
    if args.command in ("cleanup-node", "import-image"):
        if len(args.args) != 1:
            parser.error(f"{args.command} needs one path")
        path = Path(args.args[0]).resolve()
        if args.command == "import-image":
            return import_image(state, path)
        return cleanup_node(path)
    if args.command == "supervise":
        return supervise(state, with_node=bool(args.node))
    commands = {"up": up, "down": down, "status": status}
    return int(commands[args.command](state))


if __name__ == "__main__":
    sys.exit(main())
