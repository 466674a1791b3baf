"""Give the host back exactly as the node found it (SPEC §8.1), from the record the node wrote
into its work dir before it changed anything.

Idempotent, and needs nothing but that record: it runs after a normal stop, after a failed
start, and from ``python -m bandsy_dev down`` after a supervisor that was killed. It removes
only what we created: our processes (found by executable and by our paths in their command
line, never by name), mounts under our work dir, our bridge and its veths, the firewall tables,
chains and sets that did not exist before, and the host paths that did not exist before; it puts
back the sysctls a component changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from . import node_net
from .host_state import (
    HOST_PATHS,
    XTABLES_TABLES,
    HostSnapshot,
    cgroup_hierarchies,
    ipsets,
    legacy_xtables_chains,
    mounts_under,
    nft_chains,
    nft_tables,
    read_sysctls,
    remove_tree,
    write_sysctl,
)
from .procs import run, terminate

# nft tables our components create; the iptables-nft ones are handled per chain.
OWN_NFT_TABLES = (f"inet {node_net.GUARD_TABLE}", "ip kube-proxy", "ip6 kube-proxy")
# iptables chains our components create (the kubelet's canaries, kube-router's policy chains).
OWN_CHAIN = re.compile(r"^(KUBE-|CNI-)")
BUILTIN_CHAINS = ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING")
# Top-level cgroups the kubelet (cgroupfs driver) and containerd create.
OWN_CGROUPS = ("kubepods", "k8s.io")
STOP_GRACE = 10.0  # seconds a component gets between SIGTERM and SIGKILL


@dataclass
class NodeRecord:
    workdir: str
    before: HostSnapshot
    binaries: list[str]  # resolved paths of the node's executables
    containerd_socket: str

    def save(self, path: Path) -> None:
        data = {
            "workdir": self.workdir,
            "before": json.loads(self.before.to_json()),
            "binaries": self.binaries,
            "containerd_socket": self.containerd_socket,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> NodeRecord:
        data = json.loads(path.read_text())
        return cls(
            workdir=data["workdir"],
            before=HostSnapshot.from_json(json.dumps(data["before"])),
            binaries=data["binaries"],
            containerd_socket=data["containerd_socket"],
        )


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def our_processes(record: NodeRecord) -> dict[int, str]:
    """PID -> executable of the processes that run one of our binaries with our work dir or our
    containerd socket (a shim's ``-address``) on their command line."""
    binaries = set(record.binaries)
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = str((entry / "exe").readlink())
        except OSError:
            continue
        if exe not in binaries:
            continue
        args = _cmdline(int(entry.name))
        if any(f"{record.workdir}/" in a or a == record.containerd_socket for a in args):
            found[int(entry.name)] = Path(exe).name
    return found


def _own_cgroup_dirs(record: NodeRecord) -> list[Path]:
    dirs = []
    for hierarchy in cgroup_hierarchies():
        existed = record.before.cgroups.get(str(hierarchy), [])
        dirs += [
            hierarchy / n for n in OWN_CGROUPS if n not in existed and (hierarchy / n).is_dir()
        ]
    return dirs


def kill_pod_processes(record: NodeRecord) -> None:
    """Every process in the cgroups the kubelet made for pods: sandboxes and containers."""

    def members() -> set[int]:
        pids: set[int] = set()
        for top in _own_cgroup_dirs(record):
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in procs.read_text().split()}
        return pids

    deadline = time.monotonic() + STOP_GRACE
    while (pids := members()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def stop_processes(record: NodeRecord) -> None:
    """Node programs first (so nothing restarts a pod), then the pods, containerd, the shims."""
    found = our_processes(record)
    programs = [p for p, exe in found.items() if not exe.startswith("containerd")]
    terminate(programs, STOP_GRACE)
    kill_pod_processes(record)
    terminate([p for p, exe in our_processes(record).items() if exe == "containerd"], STOP_GRACE)
    terminate(list(our_processes(record)), grace=2.0)


def unmount_all(workdir: Path) -> None:
    """Unmount everything under the work dir, deepest first; lazily for what stays busy."""
    for attempt in range(10):
        mounts = sorted(mounts_under(workdir), key=lambda p: p.count("/"), reverse=True)
        if not mounts:
            return
        for point in mounts:
            if run("umount", point, check=False).returncode != 0 and attempt >= 2:
                run("umount", "-l", point, check=False)
    remaining = mounts_under(workdir)
    if remaining:
        raise RuntimeError(f"could not unmount {remaining}")


def remove_network(record: NodeRecord) -> None:
    if node_net.bridge_owner() == record.workdir:
        node_net.delete_bridge_ports()
        node_net.delete_bridge()


def _remove_xtables_chains(tool: str, family: str, table: str, chains: set[str]) -> None:
    """Delete the rules that jump to ``chains``, then the chains, with iptables ``tool``."""
    listing = run(tool, "-w", "-t", table, "-S", check=False).stdout.splitlines()
    for line in listing:
        words = line.split()
        jumps_to_ours = "-j" in words and words[words.index("-j") + 1] in chains
        if words[:1] == ["-A"] and words[1] not in chains and jumps_to_ours:
            run(tool, "-w", "-t", table, "-D", *words[1:], check=False)
    for chain in chains:
        run(tool, "-w", "-t", table, "-F", chain, check=False)
    for chain in chains:
        run(tool, "-w", "-t", table, "-X", chain, check=False)


def remove_firewall(record: NodeRecord) -> None:
    before = record.before
    tables_now = nft_tables()
    for table in OWN_NFT_TABLES:
        if table in tables_now and table not in before.nft_tables:
            run("nft", "delete", "table", *table.split(), check=False)
    # iptables-nft tables: gone entirely when they are new, else only our new chains.
    tools = {"ip": "iptables-nft", "ip6": "ip6tables-nft"}
    for family, tool in tools.items():
        for table in XTABLES_TABLES:
            name = f"{family} {table}"
            if name not in tables_now:
                continue
            chains = [c.split()[2] for c in nft_chains() if c.startswith(name + " ")]
            new = {c for c in chains if f"{name} {c}" not in before.nft_chains}
            # A table that is new and holds nothing but built-in chains and ours is ours.
            if name not in before.nft_tables and all(
                c in BUILTIN_CHAINS or OWN_CHAIN.match(c) for c in chains
            ):
                run("nft", "delete", "table", family, table, check=False)
                continue
            _remove_xtables_chains(tool, family, table, {c for c in new if OWN_CHAIN.match(c)})
    # The legacy backend, should a component have used it.
    legacy_new = [c for c in legacy_xtables_chains() if c not in before.legacy_chains]
    for family, tool in (("ip", "iptables-legacy"), ("ip6", "ip6tables-legacy")):
        for table in XTABLES_TABLES:
            legacy = {
                c.split()[2]
                for c in legacy_new
                if c.startswith(f"{family} {table} ") and OWN_CHAIN.match(c.split()[2])
            }
            if legacy:
                _remove_xtables_chains(tool, family, table, legacy)
    for name in ipsets():
        if name not in before.ipsets:
            run("ipset", "destroy", name, check=False)


def restore_sysctls(record: NodeRecord) -> None:
    now = read_sysctls()
    for key, value in record.before.sysctls.items():
        if now.get(key) != value:
            with contextlib.suppress(OSError):
                write_sysctl(key, value)


def remove_cgroups(record: NodeRecord) -> None:
    for top in _own_cgroup_dirs(record):
        for directory in sorted(
            (d for d in top.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def remove_host_paths(record: NodeRecord) -> None:
    removed: list[str] = []
    for path in HOST_PATHS:  # parents come first
        if any(path.startswith(r + "/") for r in removed):
            continue
        if not record.before.paths.get(path, True) and os.path.lexists(path):
            remove_tree(Path(path))
            removed.append(path)
    # In a results cache that others share, only our network's entries.
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        for entry in results.glob(f"{node_net.CNI_NETWORK}-*"):
            entry.unlink()


def restore_host(record: NodeRecord) -> None:
    """The teardown, in the order that works: processes, mounts, network, firewall, sysctls,
    cgroups, paths."""
    workdir = Path(record.workdir)
    stop_processes(record)
    unmount_all(workdir)
    remove_network(record)
    remove_firewall(record)
    restore_sysctls(record)
    remove_cgroups(record)
    remove_host_paths(record)


def restore_from(record_file: Path) -> bool:
    """Restore the host from a node's record, if there is one; True when there was."""
    if not record_file.exists():
        return False
    restore_host(NodeRecord.load(record_file))
    record_file.unlink()
    return True
