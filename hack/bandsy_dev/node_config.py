"""The node's configuration files: containerd, CNI, kubelet, kube-proxy and CoreDNS.

Every path a component writes to is under the node's work dir, except the few the programs
hard-code (host_state.HOST_PATHS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import node_net
from .images import PAUSE_IMAGE

RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
KUBELET_PORT = 20250


@dataclass(frozen=True)
class NodePaths:
    """Where everything of one node lives, under its work dir."""

    workdir: Path

    @property
    def containerd_dir(self) -> Path:
        return self.workdir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_dir / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def runc_root(self) -> Path:
        return self.workdir / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.workdir / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.workdir / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.workdir / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.workdir / "Corefile"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def record(self) -> Path:
        """What node_cleanup needs to restore the host, should our process die."""
        return self.workdir / "host-record.json"


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def containerd_toml(paths: NodePaths) -> str:
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    state = paths.containerd_dir / "state"
    return f"""version = 3
root = {_toml_str(paths.containerd_dir / "root")}
state = {_toml_str(state)}
temp = {_toml_str(paths.containerd_dir / "tmp")}
# NRI would listen on /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = {_toml_str(paths.containerd_socket)}

[ttrpc]
  address = {_toml_str(str(paths.containerd_socket) + ".ttrpc")}

[plugins.'io.containerd.internal.v1.opt']
  path = {_toml_str(paths.containerd_dir / "opt")}

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = {_toml_str(node_net.SHIM_SOCKET_DIR)}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  # Imported at start (images.py): never pulled, never garbage-collected.
  sandbox = {_toml_str(PAUSE_IMAGE)}

[{cri_runtime}]
  # This VM lacks CAP_SYS_RESOURCE, so nobody may lower oom_score_adj below 0 (F1).
  restrict_oom_score_adj = true
  # Otherwise the pods' network namespaces are mounted under /var/run/netns.
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []

[{cri_runtime}.containerd]
  default_runtime_name = "runc"

[{cri_runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri_runtime}.containerd.runtimes.runc.options]
  BinaryName = {_toml_str(RUNC)}
  Root = {_toml_str(paths.runc_root)}
  SystemdCgroup = false

[{cri_runtime}.cni]
  bin_dirs = [{_toml_str(CNI_BIN_DIR)}]
  conf_dir = {_toml_str(paths.cni_conf_dir)}
"""


def cni_conflist(paths: NodePaths) -> dict[str, object]:
    # isGateway would set the global ip_forward; the gateway address is on the bridge already.
    return {
        "cniVersion": "1.0.0",
        "name": node_net.CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node_net.BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node_net.POD_SUBNET, "gateway": node_net.POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0", "gw": node_net.POD_GATEWAY}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(paths: NodePaths, ca_file: Path, healthz_port: int) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This host has cgroup v1 (hybrid); the kubelet refuses it unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": node_net.NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "x509": {"clientCAFile": str(ca_file)},
            "webhook": {"enabled": True},
            "anonymous": {"enabled": False},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [node_net.NODE_IP],
        "clusterDomain": node_net.CLUSTER_DOMAIN,
        "resolvConf": "",  # pods resolve cluster names only, nothing of the host's
        "volumePluginDir": str(paths.workdir / "volume-plugins"),
        "podLogsDir": str(paths.workdir / "pod-logs"),
        # true makes the kubelet refuse to start on this VM's values; it changes three
        # sysctls instead, which the teardown restores (F5).
        "protectKernelDefaults": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,  # a negative score is refused without CAP_SYS_RESOURCE (F1)
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        # Imported images cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "rotateCertificates": False,
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clusterCIDR": node_net.CLUSTER_CIDR,
        "hostnameOverride": node_net.NODE_NAME,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{node_net.NODE_IP}/32"],
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "oomScoreAdj": 0,
        # Zero keeps every conntrack sysctl as the host has it.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }


def corefile(kubeconfig: Path, ready_port: int) -> str:
    # No forward plugin: only cluster names resolve, the host's resolver is never asked.
    zones = f"{node_net.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa"
    return f""".:{node_net.DNS_PORT} {{
  bind {node_net.NODE_IP}
  errors
  ready 127.0.0.1:{ready_port}
  kubernetes {zones} {{
    kubeconfig {kubeconfig}
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
  }}
  cache 30
}}
"""


def write_yaml(path: Path, document: dict[str, object]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def write_all(
    paths: NodePaths,
    *,
    ca_file: Path,
    proxy_kubeconfig: Path,
    dns_kubeconfig: Path,
    ports: dict[str, int],
) -> None:
    for directory in (paths.containerd_dir, paths.cni_conf_dir, paths.logs, paths.kubelet_dir):
        directory.mkdir(parents=True, exist_ok=True)
    paths.containerd_config.write_text(containerd_toml(paths))
    (paths.cni_conf_dir / f"10-{node_net.CNI_NETWORK}.conflist").write_text(
        json.dumps(cni_conflist(paths), indent=2)
    )
    write_yaml(paths.kubelet_config, kubelet_config(paths, ca_file, ports["kubelet-healthz"]))
    write_yaml(
        paths.kube_proxy_config,
        kube_proxy_config(
            proxy_kubeconfig, ports["kube-proxy-healthz"], ports["kube-proxy-metrics"]
        ),
    )
    paths.corefile.write_text(corefile(dns_kubeconfig, ports["coredns-ready"]))
