"""What the node may change on the host, read into one comparable snapshot.

Taken before the node starts and kept in its work dir, it tells the teardown what existed before
(sysctl values, host paths, firewall tables, cgroups), and the node test compares a snapshot
taken after the teardown with it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .procs import run

PROC_SYS = Path("/proc/sys")
# Everything a node component may switch: forwarding and friends, bridge netfilter, conntrack
# (kube-proxy), and the kubelet's kernel tunables (F5).
SYSCTL_GLOBS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/*",
    "net/ipv4/conf/default/*",
    "net/ipv6/conf/all/*",
    "net/ipv6/conf/default/*",
    "net/bridge/*",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_*",
    "net/netfilter/nf_conntrack_udp_timeout*",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Paths outside our dirs that the node's programs create whatever they are told (F4), plus
# the defaults of the ones we redirect, in case a setting is missed. Parents before children.
HOST_PATHS = (
    "/run/bandsy-node",  # shim sockets (their path must be short)
    "/run/containerd",
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/containerd",
    "/var/lib/kubelet",
    "/var/lib/kubelet/device-plugins",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/var/lib/cni/results",
    "/var/lib/cni/networks",
    "/run/mount",
    "/run/mount/utab",
    "/run/netns",
    "/usr/libexec/kubernetes",
    "/var/lib/kube-router",
    "/run/xtables.lock",
)
# Directories whose entries the node test compares, to catch a path missing above.
LISTED_DIRS = ("/run", "/var/lib", "/var/log", "/etc", "/opt", "/usr/libexec")
CGROUP_ROOT = Path("/sys/fs/cgroup")
XTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")


def read_sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for pattern in SYSCTL_GLOBS:
        for path in sorted(PROC_SYS.glob(pattern)):
            try:
                values[str(path.relative_to(PROC_SYS))] = path.read_text().strip()
            except OSError:
                continue  # write-only or unreadable (stable_secret)
    return values


def write_sysctl(key: str, value: str) -> None:
    (PROC_SYS / key).write_text(value + "\n")


def mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, fstype, source) of every mount, in mount order."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        point = before.split()[4].encode().decode("unicode_escape")
        fstype, source = after.split()[:2]
        mounts.append((point, fstype, source))
    return mounts


def mounts_under(directory: Path) -> list[str]:
    base = str(directory.resolve())
    return [p for p, _, _ in mountinfo() if p == base or p.startswith(base + "/")]


def remove_tree(path: Path) -> None:
    """``rm -rf`` that refuses to descend into mounts (a pod's volumes may be host paths)."""
    if mounts_under(path):
        raise RuntimeError(f"refusing to remove {path}: mounts remain under it")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _json_lines(*argv: str) -> list[dict[str, object]]:
    result = run(*argv, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return []
    data = json.loads(result.stdout)
    return data if isinstance(data, list) else []


def nft_objects(kind: str) -> list[dict[str, object]]:
    """``nft -j list tables|chains`` entries of one kind."""
    if shutil.which("nft") is None:
        return []
    result = run("nft", "-j", "list", kind, check=False)
    if result.returncode != 0:
        return []
    items = json.loads(result.stdout).get("nftables", [])
    return [item[kind[:-1]] for item in items if kind[:-1] in item]


def nft_tables() -> list[str]:
    return sorted(f"{t['family']} {t['name']}" for t in nft_objects("tables"))


def nft_chains() -> list[str]:
    return sorted(f"{c['family']} {c['table']} {c['name']}" for c in nft_objects("chains"))


def legacy_xtables_chains() -> list[str]:
    """Chains in the legacy (non-nft) iptables, should anything use that backend."""
    chains = []
    for tool, family in (("iptables-legacy-save", "ip"), ("ip6tables-legacy-save", "ip6")):
        if shutil.which(tool) is None:
            continue
        table = ""
        for line in run(tool, check=False).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                chains.append(f"{family} {table} {line[1:].split()[0]}")
    return sorted(chains)


def ipsets() -> list[str]:
    if shutil.which("ipset") is None:
        return []
    return sorted(run("ipset", "list", "-n", check=False).stdout.split())


def cgroup_hierarchies() -> list[Path]:
    mounted = {p for p, fstype, _ in mountinfo() if fstype in ("cgroup", "cgroup2")}
    return sorted(Path(p) for p in mounted if p.startswith(str(CGROUP_ROOT)))


def top_cgroups() -> dict[str, list[str]]:
    return {str(h): sorted(d.name for d in h.iterdir() if d.is_dir()) for h in cgroup_hierarchies()}


def _links() -> list[str]:
    return sorted(
        f"{link['ifname']} {','.join(map(str, link.get('flags', [])))} "  # type: ignore[call-overload]
        f"master={link.get('master', '-')}"
        for link in _json_lines("ip", "-j", "link", "show")
    )


def _addresses() -> list[str]:
    out = []
    for link in _json_lines("ip", "-j", "addr", "show"):
        for addr in link.get("addr_info", []):  # type: ignore[attr-defined]
            out.append(f"{link['ifname']} {addr['local']}/{addr['prefixlen']}")
    return sorted(out)


def _routes() -> list[str]:
    out = []
    for family in ("-4", "-6"):
        for r in _json_lines("ip", "-j", family, "route", "show", "table", "all"):
            out.append(
                f"{r.get('type', 'unicast')} {r['dst']} dev={r.get('dev', '-')} "
                f"via={r.get('gateway', '-')} table={r.get('table', 'main')}"
            )
    return sorted(out)


def _listing(directory: str) -> list[str]:
    path = Path(directory)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


@dataclass
class HostSnapshot:
    links: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    nft_tables: list[str] = field(default_factory=list)
    nft_chains: list[str] = field(default_factory=list)
    legacy_chains: list[str] = field(default_factory=list)
    ipsets: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    paths: dict[str, bool] = field(default_factory=dict)
    listings: dict[str, list[str]] = field(default_factory=dict)
    cgroups: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            links=_links(),
            addresses=_addresses(),
            routes=_routes(),
            nft_tables=nft_tables(),
            nft_chains=nft_chains(),
            legacy_chains=legacy_xtables_chains(),
            ipsets=ipsets(),
            mounts=sorted(f"{p} {t} {s}" for p, t, s in mountinfo()),
            sysctls=read_sysctls(),
            paths={p: os.path.lexists(p) for p in HOST_PATHS},
            listings={d: _listing(d) for d in LISTED_DIRS},
            cgroups=top_cgroups(),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HostSnapshot:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def differences(self, after: HostSnapshot) -> list[str]:
        """Human-readable differences, empty when the host is as it was."""
        out: list[str] = []
        for f in fields(self):
            old, new = getattr(self, f.name), getattr(after, f.name)
            if isinstance(old, list):
                out += _list_differences(f.name, old, new)
                continue
            for key in sorted(old.keys() | new.keys()):
                before, now = old.get(key), new.get(key)
                if isinstance(before, list) and isinstance(now, list):
                    out += _list_differences(f"{f.name}[{key}]", before, now)
                elif before != now:
                    out.append(f"{f.name}[{key}]: {before!r} -> {now!r}")
        return out


def _list_differences(name: str, old: list[str], new: list[str]) -> list[str]:
    return [f"{name}: gone {i}" for i in old if i not in new] + [
        f"{name}: new {i}" for i in new if i not in old
    ]
