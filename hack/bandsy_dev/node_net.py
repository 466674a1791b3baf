"""The node's network on the host, all of it ours: names and addresses in one place, the bridge
and the guard table (SPEC §8.1).

The node IP cannot be loopback (the kubelet refuses it) and the kernel has no dummy device, so
one bridge carries both the pods' gateway and the node IP. Forwarding is switched on for that
bridge only (the global ``ip_forward`` stays as it is); the guard table keeps pods off every
other interface and keeps our listeners off every interface but loopback and the bridge.
"""

from __future__ import annotations

from collections.abc import Iterable

from .procs import run

BRIDGE = "bandsy0"
NODE_NAME = "bandsy-node"
NODE_IP = "10.99.0.1"
POD_GATEWAY = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"  # this node's pods (what the controller manager allocates first)
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"
DNS_PORT = 53
CNI_NETWORK = "bandsy"
GUARD_TABLE = "bandsy-guard"  # nft family inet
# Shim sockets need a path of at most 42 characters, so they cannot live under the work dir.
SHIM_SOCKET_DIR = "/run/bandsy-node/shims"


def bridge_owner() -> str | None:
    """The work dir of the node that holds the bridge (its alias), or None if there is none."""
    result = run("ip", "-o", "link", "show", "dev", BRIDGE, check=False)
    if result.returncode != 0:
        return None
    _, _, alias = result.stdout.partition(" alias ")
    return alias.strip() or "(unknown owner)"


def create_bridge(owner: str) -> bool:
    """Create the bridge (the host-wide claim: at most one node per host) with the gateway and
    the node IP; False when it exists already."""
    if run("ip", "link", "add", BRIDGE, "type", "bridge", check=False).returncode != 0:
        return False
    run("ip", "link", "set", "dev", BRIDGE, "alias", owner)
    run("ip", "addr", "add", f"{POD_GATEWAY}/24", "dev", BRIDGE)
    run("ip", "addr", "add", f"{NODE_IP}/32", "dev", BRIDGE)
    # Routed pod -> ClusterIP -> pod traffic leaves through the bridge it came in on (F2).
    run("sysctl", "-q", "-w", f"net.ipv4.conf.{BRIDGE}.forwarding=1")
    run("ip", "link", "set", "dev", BRIDGE, "up")
    return True


def delete_bridge_ports() -> None:
    """Delete the veths still attached to the bridge (their pods are gone)."""
    result = run("ip", "-o", "link", "show", "master", BRIDGE, check=False)
    for line in result.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        run("ip", "link", "delete", name, check=False)


def delete_bridge() -> None:
    run("ip", "link", "delete", BRIDGE, "type", "bridge", check=False)


def guard_ruleset(host_tcp_ports: Iterable[int], api_port: int) -> str:
    """Forwarding stays on the bridge; pods reach the host only on the ports we serve them;
    other interfaces reach neither our addresses nor the API server's port."""
    ports = ", ".join(str(p) for p in sorted({*host_tcp_ports, api_port, DNS_PORT}))
    return f"""
table inet {GUARD_TABLE} {{
  set pod_tcp_ports {{ type inet_service; elements = {{ {ports} }}; }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{BRIDGE}" oifname != "{BRIDGE}" drop
    oifname "{BRIDGE}" iifname != "{BRIDGE}" drop
  }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname "lo" accept
    iifname "{BRIDGE}" jump from_pods
    ip daddr {{ {NODE_IP}, {POD_SUBNET} }} drop
    tcp dport {api_port} drop
  }}
  chain from_pods {{
    ct state established,related accept
    meta l4proto icmp accept
    ip daddr {{ {NODE_IP}, {POD_GATEWAY} }} tcp dport @pod_tcp_ports accept
    ip daddr {NODE_IP} udp dport {DNS_PORT} accept
    drop
  }}
}}
"""


def install_guard(host_tcp_ports: Iterable[int], api_port: int) -> None:
    run("nft", "-f", "-", input=guard_ruleset(host_tcp_ports, api_port))


def allow_pod_tcp_port(port: int) -> None:
    """Let pods reach one more host TCP port on the node IP or the gateway."""
    run("nft", "add", "element", "inet", GUARD_TABLE, "pod_tcp_ports", f"{{ {port} }}")
