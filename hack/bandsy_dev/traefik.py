"""Traefik on the real node (SPEC §8.1, §12): the Gateway API and Ingress controller the exposure
tests route through, a host process with a kubeconfig of its own, listening on the node's
address only. Built by hack/gateway/build.sh.

A Gateway listener binds to the entrypoint with its port number, so the entrypoints are the
listener ports: ``https_port`` for the HTTPS listeners (the operator's per host), ``http_port``
for plain HTTP, which redirects to HTTPS (the platform's choice, made here in Traefik's static
configuration). No dashboard (its assets are not in the Go module), no ping, no telemetry.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .kube import REPO_ROOT
from .procs import ManagedProcess, free_port, port_open, run_build_script

BUILD_SCRIPT = REPO_ROOT / "hack" / "gateway" / "build.sh"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
INGRESS_CONTROLLER = "traefik.io/ingress-controller"
INGRESS_CLASS = "traefik"


def build_traefik() -> Path:
    return run_build_script(BUILD_SCRIPT)


@dataclass
class Traefik:
    workdir: Path
    admin_kubeconfig: Path
    address: str
    https_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / "traefik.log"

    def start(self) -> None:
        binary = build_traefik()
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.workdir / "kubeconfig"
        shutil.copyfile(self.admin_kubeconfig, kubeconfig)
        kubeconfig.chmod(0o600)
        # In-cluster settings take priority over KUBECONFIG in Traefik: a host process has none.
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
        }
        env["KUBECONFIG"] = str(kubeconfig)
        self.process = ManagedProcess(
            "traefik",
            [
                str(binary),
                f"--entrypoints.websecure.address={self.address}:{self.https_port}",
                # Everything on it is TLS, Ingress routers included (Traefik's Ingress provider
                # only loads an Ingress's certificates otherwise).
                "--entrypoints.websecure.http.tls=true",
                f"--entrypoints.web.address={self.address}:{self.http_port}",
                "--entrypoints.web.http.redirections.entrypoint.to=websecure",
                "--entrypoints.web.http.redirections.entrypoint.scheme=https",
                "--providers.kubernetesgateway=true",
                "--providers.kubernetesingress=true",
                f"--providers.kubernetesingress.ingressclass={INGRESS_CLASS}",
                "--api.dashboard=false",
                "--global.checknewversion=false",
                "--global.sendanonymoususage=false",
                "--log.level=INFO",
            ],
            self.log_file,
            env=env,
        )
        self.process.start()
        self.process.wait_until(
            lambda: port_open(self.https_port, self.address), timeout=60, what="listening"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def platform_objects(gateway: str, namespace: str, http_port: int) -> list[dict[str, object]]:
    """What the platform team installs once: the classes of Traefik's two controllers, the
    Gateway's namespace and the shared Gateway, whose own listener is plain HTTP (a Gateway
    needs one; Traefik redirects that port to HTTPS). The operator adds its HTTPS listeners."""
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "traefik"},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": INGRESS_CONTROLLER},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": gateway, "namespace": namespace},
            "spec": {
                "gatewayClassName": "traefik",
                "listeners": [
                    {
                        "name": "http",
                        "port": http_port,
                        "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                    }
                ],
            },
        },
    ]
