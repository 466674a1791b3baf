"""The real node (SPEC §8.1), on its own environment: pods run, probes, Services, cluster DNS,
NetworkPolicy and the harness's databases work from inside pods, a second node is refused, and
stopping gives the host back exactly as it was (links, firewall, mounts, sysctls, paths,
processes).

Root only, like the node. The session's own environment stays node-less (its tests play the
deployment controller); this module starts and stops a node of its own.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bandsy_dev import node_net
from bandsy_dev.host_state import HostSnapshot
from bandsy_dev.images import build_image
from bandsy_dev.kube import ControlPlane, build_binaries
from bandsy_dev.local_env import LocalEnvironment
from bandsy_dev.node import Node, NodeBusyError, build_node_binaries
from bandsy_dev.node_config import KUBELET_PORT
from bandsy_dev.operator_process import KubectlRunner
from bandsy_dev.procs import StartupError

pytestmark = pytest.mark.node

NAMESPACE = "node-check"
IMAGE_REPOSITORY, IMAGE_TAG = "localhost/bandsy/node-check", "v1"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: no libraries to copy
APPLETS = ("sh", "sleep", "httpd", "nslookup", "env", "cat")
WEB_PAGE = b"hello from a pod\n"
WEB_OK = "200\n" + WEB_PAGE.decode()


@dataclass
class NodeCluster:
    env: LocalEnvironment
    node: Node
    before: HostSnapshot
    kubectl: KubectlRunner
    variables: dict[str, str]


def check_image(node: Node, workdir: Path) -> None:
    """busybox (httpd, nslookup) plus podcheck (HTTP, PostgreSQL, Redis and API clients; a
    static busybox cannot resolve names through glibc, Go can)."""
    archive = build_image(
        IMAGE_REPOSITORY,
        IMAGE_TAG,
        files={
            "/bin/busybox": BUSYBOX,
            "/bin/podcheck": node.binary("podcheck"),
            "/www/index.html": WEB_PAGE,
        },
        symlinks={f"/bin/{applet}": "busybox" for applet in APPLETS},
        entrypoint=["/bin/sleep", "3600"],
        workdir=workdir,
    )
    assert node.import_image(archive) == [IMAGE]


def manifests(pg_ca: str) -> str:
    probe = {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                            "readinessProbe": probe,
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]},
    }
    ca = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pg-ca", "namespace": NAMESPACE},
        "data": {"ca.crt": pg_ca},
    }
    return "\n---\n".join(json.dumps(d) for d in (web, service, ca, client_pod("client")))


def client_pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"role": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "client",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "volumeMounts": [{"name": "pg-ca", "mountPath": "/pg"}],
                }
            ],
            "volumes": [{"name": "pg-ca", "configMap": {"name": "pg-ca"}}],
        },
    }


def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    assert os.geteuid() == 0, "the node tests need root (bridge, firewall, mounts, cgroups)"
    before = HostSnapshot.take()
    env = LocalEnvironment(tmp_path_factory.mktemp("node-env"), with_node=True)
    try:
        env.start()
        assert env.node is not None
        kubectl = KubectlRunner(str(env.kube.kubeconfig))
        check_image(env.node, tmp_path_factory.mktemp("images"))
        kubectl("create", "namespace", NAMESPACE)
        wait_for(
            lambda: kubectl("-n", NAMESPACE, "get", "sa", "default", check=False).returncode == 0,
            30,
            "the default ServiceAccount",
        )
        kubectl("apply", "-f", "-", input=manifests(env.postgres.ca_file.read_text()))
        yield NodeCluster(env, env.node, before, kubectl, env.variables())
    finally:
        env.stop()


def in_pod(cluster: NodeCluster, *command: str, pod: str = "client", check: bool = True) -> str:
    result = cluster.kubectl("-n", NAMESPACE, "exec", pod, "--", *command, check=check)
    return f"{result.stdout}{result.stderr}"


def fetch(cluster: NodeCluster, url: str) -> str:
    return in_pod(cluster, "/bin/podcheck", "get", url, check=False)


def fetch_web(cluster: NodeCluster) -> str:
    return fetch(cluster, f"http://web.{NAMESPACE}.svc.{node_net.CLUSTER_DOMAIN}:8080/index.html")


def test_the_node_is_ready_with_its_address_and_pod_range(cluster: NodeCluster) -> None:
    node = json.loads(cluster.kubectl("get", "node", node_net.NODE_NAME, "-o", "json").stdout)
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert {"type": "InternalIP", "address": node_net.NODE_IP} in node["status"]["addresses"]
    assert node["spec"]["podCIDR"] == node_net.POD_SUBNET
    assert cluster.variables["BANDSY_NODE"] == "1"
    assert cluster.variables["BANDSY_POD_PG_HOST"] == node_net.POD_GATEWAY


def test_a_deployment_rolls_out_behind_its_readiness_probe(cluster: NodeCluster) -> None:
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deploy/web", "--timeout=90s")
    cluster.kubectl("-n", NAMESPACE, "wait", "pod/client", "--for=condition=Ready", "--timeout=60s")
    pods = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json").stdout)
    ips = [p["status"]["podIP"] for p in pods["items"]]
    assert all(ip.startswith("10.244.0.") for ip in ips), ips


def test_cluster_dns_resolves_services_and_nothing_else(cluster: NodeCluster) -> None:
    api = in_pod(cluster, "nslookup", f"kubernetes.default.svc.{node_net.CLUSTER_DOMAIN}")
    assert node_net.KUBERNETES_SERVICE_IP in api
    web_ip = cluster.kubectl(
        "-n", NAMESPACE, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    assert web_ip in in_pod(cluster, "nslookup", f"web.{NAMESPACE}.svc.{node_net.CLUSTER_DOMAIN}")
    # No forwarder: names outside the cluster do not resolve.
    outside = in_pod(cluster, "nslookup", "deb.debian.org", check=False)
    assert "Address" not in outside.partition("Name:")[2]


def test_a_cluster_ip_reaches_the_ready_pods(cluster: NodeCluster) -> None:
    assert fetch_web(cluster) == WEB_OK


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(cluster: NodeCluster) -> None:
    # An in-cluster client: the token authenticates (403, not 401) as the pod's account.
    answer = in_pod(cluster, "/bin/podcheck", "kube", f"/api/v1/namespaces/{NAMESPACE}/secrets")
    status, _, body = answer.partition("\n")
    assert status == "403", answer
    assert f"system:serviceaccount:{NAMESPACE}:default" in body


def test_network_policy_denies_then_admits(cluster: NodeCluster) -> None:
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(deny))
    wait_for(lambda: fetch_web(cluster) != WEB_OK, 30, "the deny policy enforced")
    # kube-router rejects; the pods stay Ready (the kubelet's probes pass), so this is the
    # policy, not a Service without endpoints.
    assert "connection refused" in fetch_web(cluster)
    web_ip = cluster.kubectl(
        "-n", NAMESPACE, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}"
    ).stdout
    assert "connection refused" in fetch(cluster, f"http://{web_ip}:8080/index.html")
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deploy/web", "--timeout=5s")
    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "client-to-web", "namespace": NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                    "ports": [{"port": 8080}],
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(allow))
    wait_for(lambda: fetch_web(cluster) == WEB_OK, 30, "the allow policy enforced")


def test_a_pod_reaches_postgres_over_verified_tls_and_redis(cluster: NodeCluster) -> None:
    v = cluster.variables
    pg = in_pod(
        cluster,
        "env",
        f"PGHOST={v['BANDSY_POD_PG_HOST']}",
        f"PGPORT={v['BANDSY_PG_PORT']}",
        f"PGUSER={v['BANDSY_PG_ADMIN_USER']}",
        f"PGPASSWORD={v['BANDSY_PG_ADMIN_PASSWORD']}",
        "PGDATABASE=postgres",
        "PGSSLROOTCERT=/pg/ca.crt",
        "/bin/podcheck",
        "pg",
        "SELECT current_user, ssl, host(client_addr) FROM pg_stat_ssl "
        "JOIN pg_stat_activity USING (pid) WHERE pid = pg_backend_pid()",
    )
    user, ssl, client = pg.strip().split("|")
    assert (user, ssl) == (v["BANDSY_PG_ADMIN_USER"], "t")
    assert client.startswith("10.244.0."), pg
    redis = in_pod(
        cluster,
        "env",
        f"REDIS_ADDR={v['BANDSY_POD_REDIS_HOST']}:{v['BANDSY_REDIS_PORT']}",
        f"REDIS_USER={v['BANDSY_REDIS_ADMIN_USER']}",
        f"REDIS_PASSWORD={v['BANDSY_REDIS_ADMIN_PASSWORD']}",
        "/bin/podcheck",
        "redis",
    )
    assert redis.strip() == "PONG"


def test_pods_reach_no_other_host_port(cluster: NodeCluster) -> None:
    # The guard: the kubelet listens on the node IP, but its packets from pods are dropped.
    answer = fetch(cluster, f"http://{node_net.NODE_IP}:{KUBELET_PORT}/healthz")
    assert "Timeout exceeded" in answer, answer


def test_a_second_node_is_refused(
    cluster: NodeCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    second = LocalEnvironment(tmp_path_factory.mktemp("second-node"), with_node=True)
    with pytest.raises(NodeBusyError, match=str(cluster.node.workdir)):
        second.start()
    assert node_net.bridge_owner() == str(cluster.node.workdir)
    assert fetch_web(cluster) == WEB_OK


def test_stopping_gives_the_host_back_exactly(cluster: NodeCluster) -> None:
    workdir = str(cluster.env.workdir)
    cluster.env.stop()
    differences = cluster.before.differences(HostSnapshot.take())
    assert differences == []
    leftovers = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and workdir.encode() in _cmdline(entry)
    ]
    assert leftovers == []


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_failed_start_gives_the_host_back_too(tmp_path: Path) -> None:
    """CoreDNS cannot start (something else serves DNS on the node IP) after containerd, the
    kubelet and kube-proxy did: the start fails, and the stop that follows restores the host."""
    before = HostSnapshot.take()
    bin_dir = build_binaries()
    kube = ControlPlane(tmp_path / "kube", bin_dir, node=True)
    node = Node(tmp_path / "node", kube, bin_dir, build_node_binaries())
    try:
        node.claim(pod_tcp_ports=())
        with socket.socket() as dns:
            dns.bind((node_net.NODE_IP, node_net.DNS_PORT))
            dns.listen()
            kube.start()
            with pytest.raises(StartupError, match="coredns exited"):
                node.start()
            assert node.processes["kubelet"].running()
    finally:
        node.stop()
        kube.stop()
    assert before.differences(HostSnapshot.take()) == []
