"""One real Kubernetes node on this host (SPEC §8.1): containerd with runc, bridge CNI, the
kubelet, kube-proxy (nftables), CoreDNS for cluster names, and kube-router enforcing
NetworkPolicy. Root only.

``claim`` takes the host-wide claim (the bridge; at most one node per host) after writing down
what the host looks like; ``start`` runs the components against a ``ControlPlane(node=True)``;
``stop`` drains the pods and gives the host back (node_cleanup). The recipe and its
workarounds (F1-F5) are in ../shared/research/realnode.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import images, node_config, node_net
from .host_state import HostSnapshot
from .kube import REPO_ROOT, ControlPlane, http_ok
from .node_cleanup import NodeRecord, restore_from
from .node_config import NodePaths
from .procs import ManagedProcess, free_port, port_open, run

BUILD_SCRIPT = REPO_ROOT / "hack" / "node" / "build.sh"
NODE_READY_TIMEOUT = 90.0
DRAIN_TIMEOUT = 30
# kubelet & co. come from the control-plane build, the rest from hack/node/build.sh.
CONTROL_PLANE_BINARIES = ("kubelet", "kube-proxy")
NODE_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr", "coredns", "kube-router")
# The node system:nodes may do what the kubelet needs (RBAC only; no Node authorizer here).
NODE_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bandsy-system-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}
"""


def running_node_importer(state: Path) -> Callable[[Path], list[str]] | None:
    """Import an OCI archive into the node ``make cluster-up`` runs from ``state`` (None when
    none runs there); returns the references it holds."""
    paths = NodePaths(state / "servers" / "node")
    if not paths.containerd_socket.exists():
        return None
    ctr = build_node_binaries()["ctr"]
    return lambda archive: images.import_archive(ctr, paths.containerd_socket, archive)


class NodeBusyError(RuntimeError):
    """Another node holds this host (its bridge exists)."""


def build_node_binaries() -> dict[str, Path]:
    """Build or reuse hack/node/build.sh's binaries; name -> path."""
    out = subprocess.run([str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    pairs = (line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {name: Path(path) for name, path in pairs}


def node_wanted() -> bool:
    """``make cluster-up``'s choice: the node when root and NODE is not 0, with a one-line
    notice when only root is missing."""
    if os.environ.get("NODE", "1") == "0":
        return False
    if os.geteuid() != 0:
        print("bandsy_dev: not root, so no node: the cluster runs without pods (NODE=0 mode)")
        return False
    return True


@dataclass
class Node:
    workdir: Path
    kube: ControlPlane
    control_plane_bin: Path
    node_bin: dict[str, Path]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    paths: NodePaths = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.paths = NodePaths(self.workdir)
        for name in (
            "kubelet-healthz",
            "kube-proxy-healthz",
            "kube-proxy-metrics",
            "coredns-ready",
        ):
            self.ports.setdefault(name, free_port())

    def binary(self, name: str) -> Path:
        if name in CONTROL_PLANE_BINARIES:
            return self.control_plane_bin / name
        return self.node_bin[name]

    @property
    def containerd_socket(self) -> Path:
        return self.paths.containerd_socket

    # -- claim and network: before the servers that listen on the pod gateway start --

    def claim(self, pod_tcp_ports: Iterable[int]) -> None:
        """Record the host's state, then create our bridge (failing if another node holds it)
        and the guard table. ``pod_tcp_ports``: host ports pods may reach (the databases)."""
        owner = node_net.bridge_owner()
        if owner is not None:
            raise NodeBusyError(
                f"a node already runs on this host (bridge {node_net.BRIDGE}, work dir {owner}); "
                "stop it first (make cluster-down, or let that test session end; after a crash: "
                f".venv/bin/python -m bandsy_dev cleanup-node {owner})"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        binaries = [self.binary(n) for n in (*CONTROL_PLANE_BINARIES, *NODE_BINARIES)]
        record = NodeRecord(
            workdir=str(self.workdir),
            before=HostSnapshot.take(),
            binaries=[str(b.resolve()) for b in binaries],
            containerd_socket=str(self.containerd_socket),
        )
        _refuse_foreign_state(record.before)
        record.save(self.paths.record)
        if not node_net.create_bridge(owner=str(self.workdir)):
            self.paths.record.unlink()
            raise NodeBusyError(f"another node created {node_net.BRIDGE} just now")
        node_net.install_guard(pod_tcp_ports, self.kube.apiserver_port)

    # -- components --

    def start(self) -> None:
        admin_kubeconfig = self.workdir / "kubeconfig-admin"
        shutil.copyfile(self.kube.kubeconfig, admin_kubeconfig)
        admin_kubeconfig.chmod(0o600)
        node_config.write_all(
            self.paths,
            ca_file=self.kube.ca_file,
            proxy_kubeconfig=self.kube.proxy_kubeconfig,
            dns_kubeconfig=admin_kubeconfig,
            ports=self.ports,
        )
        self._start_containerd()
        self._import_pause_image()
        self.kube_apply(NODE_RBAC)
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_coredns()
        self._start_kube_router(admin_kubeconfig)
        self.processes["kubelet"].wait_until(self.ready, NODE_READY_TIMEOUT, what="Ready")

    def _process(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        proc = ManagedProcess(
            name, [str(self.binary(name)), *args], self.paths.logs / f"{name}.log", env=env
        )
        proc.start()
        self.processes[name] = proc
        return proc

    def _start_containerd(self) -> None:
        shim_dir = self.binary("containerd-shim-runc-v2").parent
        env = {**os.environ, "PATH": f"{shim_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        proc = self._process("containerd", ["--config", str(self.paths.containerd_config)], env)
        proc.wait_until(self._containerd_serving, timeout=30, what="serving")

    def ctr(self, *args: str) -> str:
        return run(
            str(self.binary("ctr")),
            "--address",
            str(self.containerd_socket),
            "--namespace",
            images.CONTAINERD_NAMESPACE,
            *args,
        ).stdout

    def _containerd_serving(self) -> bool:
        return self.containerd_socket.exists() and bool(self.ctr("version"))

    def _import_pause_image(self) -> None:
        pause = images.build_image(
            images.PAUSE_REPOSITORY,
            images.PAUSE_TAG,
            {"/pause": self.binary("pause")},
            ["/pause"],
            self.workdir / "images",
        )
        self.import_image(pause)

    def import_image(self, archive: Path) -> list[str]:
        """Import an OCI archive whose index names its images in full (``images.build_image``
        makes such; so does ``buildah push ... oci-archive:PATH:localhost/x/y:tag``)."""
        return images.import_archive(self.binary("ctr"), self.containerd_socket, archive)

    def _start_kubelet(self) -> None:
        proc = self._process(
            "kubelet",
            [
                f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={self.kube.node_kubeconfig}",
                f"--root-dir={self.paths.kubelet_dir}",
                f"--cert-dir={self.paths.kubelet_dir / 'pki'}",
                f"--hostname-override={node_net.NODE_NAME}",
                f"--node-ip={node_net.NODE_IP}",
                "--v=1",
            ],
        )
        port = self.ports["kubelet-healthz"]
        proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "healthy")

    def _start_kube_proxy(self) -> None:
        proc = self._process("kube-proxy", [f"--config={self.paths.kube_proxy_config}", "--v=1"])
        port = self.ports["kube-proxy-healthz"]
        proc.wait_until(lambda: port_open(port), 60, "listening")

    def _start_coredns(self) -> None:
        proc = self._process("coredns", ["-conf", str(self.paths.corefile)])
        port = self.ports["coredns-ready"]
        # /ready answers as soon as its plugins are, which may be before CoreDNS found that it
        # cannot listen for DNS (it then exits): ready means it holds the DNS port as well.
        proc.wait_until(
            lambda: (
                http_ok(f"http://127.0.0.1:{port}/ready")
                and listens_tcp(proc.pid, node_net.NODE_IP, node_net.DNS_PORT)
            ),
            60,
            "ready and listening for DNS",
        )

    def _start_kube_router(self, kubeconfig: Path) -> None:
        # Firewall only: no routing, no service proxy, no CNI; no health or metrics listeners
        # (they would listen on every interface).
        proc = self._process(
            "kube-router",
            [
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={node_net.NODE_NAME}",
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--run-loadbalancer=false",
                "--enable-cni=false",
                "--enable-ipv6=false",
                "--health-port=0",
                "--metrics-port=0",
                f"--service-cluster-ip-range={node_net.SERVICE_CIDR}",
                "--v=1",
            ],
        )
        proc.wait_until(self._policy_chains_present, 60, "enforcing (its chains exist)")

    @staticmethod
    def _policy_chains_present() -> bool:
        return run("iptables", "-w", "-S", "KUBE-ROUTER-FORWARD", check=False).returncode == 0

    # -- state --

    def ready(self) -> bool:
        node: Any = self.kube.get_json(f"/api/v1/nodes/{node_net.NODE_NAME}")
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.running()]

    def kube_apply(self, manifest: str) -> None:
        run(
            str(self.control_plane_bin / "kubectl"),
            f"--kubeconfig={self.kube.kubeconfig}",
            "apply",
            "-f",
            "-",
            input=manifest,
        )

    def allow_pod_tcp_port(self, port: int) -> None:
        """Let pods reach another host TCP port (on the node IP or the gateway)."""
        node_net.allow_pod_tcp_port(port)

    # -- stop --

    def stop(self) -> None:
        """Drain the pods (so CNI DEL runs), stop every component and restore the host."""
        try:
            if "kubelet" in self.processes and self.processes["kubelet"].running():
                self._drain()
        finally:
            for name in reversed(list(self.processes)):
                if name != "containerd":  # after the pods, in restore_from
                    self.processes[name].stop()
            restore_from(self.paths.record)
            if "containerd" in self.processes:
                self.processes["containerd"].stop()  # reaps it

    def _drain(self) -> None:
        """Delete every pod while the kubelet still runs; the scheduler stops first so pods
        that controllers recreate stay unbound."""
        if "kube-scheduler" in self.kube.processes:
            self.kube.processes["kube-scheduler"].stop()
        with contextlib.suppress(Exception):
            if not self.kube.ready():
                return
        started = time.monotonic()
        run(
            str(self.control_plane_bin / "kubectl"),
            f"--kubeconfig={self.kube.kubeconfig}",
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            f"--timeout={DRAIN_TIMEOUT}s",
            check=False,
        )
        print(f"node drained in {time.monotonic() - started:.1f} s", flush=True)


def _refuse_foreign_state(before: HostSnapshot) -> None:
    """What our components would take over if it existed: then it is someone else's node."""
    foreign: list[str] = [t for t in ("ip kube-proxy", "ip6 kube-proxy") if t in before.nft_tables]
    foreign += [f"{h}/kubepods" for h, names in before.cgroups.items() if "kubepods" in names]
    if foreign:
        raise NodeBusyError(f"another node's state is on this host: {', '.join(foreign)}")


def listens_tcp(pid: int, address: str, port: int) -> bool:
    """Whether process ``pid`` holds a listening TCP socket on ``address:port`` (IPv4)."""
    wanted = f"{''.join(f'{int(b):02X}' for b in reversed(address.split('.')))}:{port:04X}"
    inodes = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    if not inodes:
        return False
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if str(fd.readlink()) in {f"socket:[{inode}]" for inode in inodes}:
                    return True
    return False
