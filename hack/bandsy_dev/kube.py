"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries are built from the Kubernetes Go modules by ``hack/control-plane/build.sh`` and
cached. Node-less (the default) there is no kubelet and no scheduler, so pods never run; with
``node=True`` it is ready for the real node of ``node.py`` (SPEC §8.1): a scheduler, every
controller, and an API server that pods reach through the ``kubernetes`` Service.
"""

from __future__ import annotations

import json
import secrets
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import node_net, users
from .procs import ManagedProcess, free_port, run_build_script
from .tls import CertificateAuthority, new_key, write_key, write_public_key

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane" / "build.sh"
ADMIN_USER = "bandsy-admin"
# Controllers the operator depends on; the deployment controller is left out on purpose so tests
# can play kubelet + deployment controller by patching Deployment status themselves.
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # Keeps an autoscaled Deployment within its bounds, which needs no pod and no metrics: the
    # operator must leave its replicas to it (SPEC §12).
    "horizontal-pod-autoscaler-controller",
)
APISERVER_READY_TIMEOUT = 90.0
# The operator's ServiceAccount (deploy/rbac.yaml): with ``audit``, its writes are recorded.
OPERATOR_USER = "system:serviceaccount:bandsy-system:bandsy-operator"
AUDITED_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# Who wrote what and when, as the API server saw it (metadata only: no bodies, no secrets),
# once a request completed: the high-availability tests prove from it that two replicas never
# wrote at once (each process has a token of its own: user.extra names its credential). Anyone's
# deletion of a Job or CronJob too: the node tests show who took a Job away when one goes missing.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted", "Panic"],
    "rules": [
        {"level": "Metadata", "users": [OPERATOR_USER], "verbs": list(AUDITED_VERBS)},
        {
            "level": "Metadata",
            "verbs": ["delete", "deletecollection"],
            "resources": [{"group": "batch", "resources": ["jobs", "cronjobs"]}],
        },
        {"level": "None"},
    ],
}
# Added to the API server's default admission plugins. OwnerReferencesPermissionEnforcement (on
# in some clusters, OpenShift's among them) lets only those who may update an owner's finalizers
# set blockOwnerDeletion on references to it, and only once its discovery cache knows the owner's
# kind: on here, so the tests prove the operator's references (which do not block) need neither.
ADMISSION_PLUGINS = ("OwnerReferencesPermissionEnforcement",)
# The API server's client certificate towards kubelets (exec, logs, port-forward).
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
# kube-proxy's user, which the default ClusterRoleBinding system:node-proxier covers.
KUBE_PROXY_USER = "system:kube-proxy"
NODE_USER = f"system:node:{node_net.NODE_NAME}"
# Names in the API server's serving certificate for clients in pods.
SERVICE_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    f"kubernetes.default.svc.{node_net.CLUSTER_DOMAIN}",
)


def build_binaries() -> Path:
    """Build or reuse the cached control-plane binaries; returns their directory."""
    return run_build_script(BUILD_SCRIPT)


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # The people of SPEC §10 (hack/bandsy_dev/users.py): user name -> bearer token.
    user_tokens: dict[str, str] = field(default_factory=users.new_tokens)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    controller_manager_port: int = field(default_factory=free_port)
    node: bool = False
    audit: bool = False  # the operator's writes into audit_log (AUDIT_POLICY)
    scheduler_port: int = field(default_factory=free_port)
    node_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    proxy_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def user_kubeconfig(self, name: str) -> Path:
        return self.workdir / "users" / f"{name}.kubeconfig"

    @property
    def audit_log(self) -> Path:
        """JSON lines, one audit event per completed write of the operator's ServiceAccount."""
        return self.workdir / "logs" / "audit.log"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def node_kubeconfig(self) -> Path:
        """The kubelet's: user system:node:<name> in group system:nodes."""
        return self.workdir / "kubeconfig-node"

    @property
    def proxy_kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig-proxy"

    def start(self) -> None:
        self._write_pki()
        self._write_kubeconfig(self.kubeconfig, ADMIN_USER, self.token)
        for name, token in self.user_tokens.items():
            users.write_kubeconfig(self.kubeconfig, self.user_kubeconfig(name), name, token)
        if self.node:
            self._write_kubeconfig(self.node_kubeconfig, NODE_USER, self.node_token)
            self._write_kubeconfig(self.proxy_kubeconfig, KUBE_PROXY_USER, self.proxy_token)
        self.start_etcd()
        self.start_apiserver()
        self.start_controller_manager()
        if self.node:
            self.start_scheduler()

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            if name in self.processes:
                self.processes[name].stop()

    # -- individual components (separate so fault tests can restart one) --

    def start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        proc = self._process(
            "etcd",
            [
                "--name=bandsy",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=bandsy={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        proc.wait_until(lambda: http_ok(f"{client}/health"), timeout=30)

    def _apiserver_network_args(self) -> list[str]:
        pki = self.workdir / "pki"
        if not self.node:
            return [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
            ]
        # Pods reach the API server through the kubernetes Service, whose endpoint is the node
        # IP: it listens on every address, and node_net's guard drops its port on every
        # interface but loopback and our bridge.
        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={node_net.NODE_IP}",
            "--endpoint-reconciler-type=lease",
            f"--client-ca-file={self.ca_file}",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _audit_args(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        # Never rotated (a session's writes are a few tens of MB): one file holds them all.
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]

    def start_apiserver(self) -> None:
        pki = self.workdir / "pki"
        proc = self._process(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                *self._apiserver_network_args(),
                *self._audit_args(),
                f"--secure-port={self.apiserver_port}",
                "--authorization-mode=RBAC",
                f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={node_net.SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        proc.wait_until(self.ready, timeout=APISERVER_READY_TIMEOUT, what="ready (/readyz)")

    def start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        proc = self._process(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                *self._controller_args(),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--horizontal-pod-autoscaler-sync-period=2s",
                "--profiling=false",
                "--v=1",
            ],
        )
        proc.wait_until(
            lambda: http_ok(f"https://127.0.0.1:{self.controller_manager_port}/healthz"),
            timeout=60,
            what="healthy",
        )

    def _controller_args(self) -> list[str]:
        if not self.node:
            return [f"--controllers={','.join(CONTROLLERS)}"]
        # With a real node every controller runs (deployments, replica sets, endpoint slices,
        # node lifecycle, node IPAM, ...); the flex-volume dir would default to /usr/libexec.
        return [
            "--controllers=*",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={node_net.CLUSTER_CIDR}",
            "--node-cidr-mask-size=24",
            f"--service-cluster-ip-range={node_net.SERVICE_CIDR}",
            f"--flex-volume-plugin-dir={self.workdir / 'flexvolume'}",
        ]

    def start_scheduler(self) -> None:
        proc = self._process(
            "kube-scheduler",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.scheduler_port}",
                "--profiling=false",
                "--v=1",
            ],
        )
        proc.wait_until(
            lambda: http_ok(f"https://127.0.0.1:{self.scheduler_port}/healthz"),
            timeout=60,
            what="healthy",
        )

    def ready(self) -> bool:
        return http_ok(f"{self.server}/readyz", token=self.token, ca_file=self.ca_file)

    def get_json(self, path: str) -> object:
        return _http_json(f"{self.server}{path}", token=self.token, ca_file=self.ca_file)

    def _process(self, name: str, args: list[str]) -> ManagedProcess:
        proc = ManagedProcess(
            name, [str(self.bin_dir / name), *args], self.workdir / "logs" / f"{name}.log"
        )
        proc.start()
        self.processes[name] = proc
        return proc

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create("bandsy-kubernetes-ca")
        ca.write_cert(pki / "ca.crt")
        tokens = f'{self.token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        if self.node:
            ca.issue_server_cert(
                pki / "apiserver.crt",
                pki / "apiserver.key",
                "kube-apiserver",
                ips=(node_net.KUBERNETES_SERVICE_IP, node_net.NODE_IP),
                dns_names=SERVICE_DNS_NAMES,
            )
            ca.issue_client_cert(
                pki / "kubelet-client.crt",
                pki / "kubelet-client.key",
                KUBELET_CLIENT_USER,
                "system:masters",
            )
            tokens += f'{self.node_token},{NODE_USER},{NODE_USER},"system:nodes"\n'
            tokens += f"{self.proxy_token},{KUBE_PROXY_USER},{KUBE_PROXY_USER}\n"
        else:
            ca.issue_server_cert(pki / "apiserver.crt", pki / "apiserver.key", "kube-apiserver")
        sa_key = new_key()
        write_key(sa_key, pki / "sa.key")
        write_public_key(sa_key, pki / "sa.pub")
        (pki / "tokens.csv").write_text(tokens + users.token_file_lines(self.user_tokens))
        (pki / "tokens.csv").chmod(0o600)

    def _write_kubeconfig(self, path: Path, user: str, token: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "bandsy-local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {"name": "bandsy-local", "context": {"cluster": "bandsy-local", "user": user}}
            ],
            "current-context": "bandsy-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    # Only for component health endpoints that serve a self-signed certificate on loopback.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _request(url: str, token: str | None) -> urllib.request.Request:
    req = urllib.request.Request(url)  # noqa: S310 - loopback URLs built here
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return req


def http_ok(url: str, token: str | None = None, ca_file: Path | None = None) -> bool:
    ctx = _ssl_context(ca_file) if url.startswith("https") else None
    with urllib.request.urlopen(_request(url, token), timeout=5, context=ctx) as resp:  # noqa: S310
        return bool(resp.status == 200)


def _http_json(url: str, token: str | None = None, ca_file: Path | None = None) -> object:
    ctx = _ssl_context(ca_file) if url.startswith("https") else None
    with urllib.request.urlopen(_request(url, token), timeout=10, context=ctx) as resp:  # noqa: S310
        return json.loads(resp.read())


def kubectl_path() -> Path:
    """The kubectl built with the control plane (same version as the API server)."""
    return build_binaries() / "kubectl"
