"""External HTTPS for real (issue 20), on the real node: the operator (a host process under the
shipped ClusterRole) exposes `web` of `develop` through the platform's shared Gateway, served by
Traefik (built from the Go module proxy, a host process on the node's address), with the host's
certificate issued from the local CA into the Secret the operator's Certificate names (the test
stand-in for cert-manager's controller). Everything is judged with curl, as a client outside
the cluster sees it: the route, the certificate's name, the redirect of plain HTTP, a service
that is not allowed out, revoking the exposure, and the same through an Ingress.

Root only, like the node; the module starts and stops an environment of its own.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bandsy_dev import crd_files, gateway_crds, rights, testapp
from bandsy_dev.certificate_issuer import LocalCertificateIssuer
from bandsy_dev.images import TEST_IMAGE_REPOSITORY
from bandsy_dev.kube import REPO_ROOT
from bandsy_dev.local_env import LocalEnvironment
from bandsy_dev.node_net import NODE_IP
from bandsy_dev.operator_process import (
    KubectlRunner,
    OperatorProcess,
    least_privilege_kubeconfig,
)
from bandsy_dev.tls import CertificateAuthority
from bandsy_dev.traefik import INGRESS_CLASS, Traefik, platform_objects
from factories import environment_body, service_body
from rbac_denials import rbac_denials

pytestmark = pytest.mark.node
T = TypeVar("T")

ENV, DOMAIN, TAG = "develop", "bandsy.app", "develop-3f2a9c1"
WEB_HOST, API_HOST = f"{ENV}.web.{DOMAIN}", f"{ENV}.api.{DOMAIN}"
GATEWAY, GATEWAY_NAMESPACE, ISSUER = "bandsy", "gateway-system", "local-ca"


@dataclass
class Exposure:
    env: LocalEnvironment
    kubectl: KubectlRunner
    traefik: Traefik
    ca_file: Path
    issuer: LocalCertificateIssuer

    def environment(self, mode: str = "Gateway") -> None:
        """``develop`` exposing ``web`` in ``mode``."""
        ingress: dict[str, Any] = {
            "mode": mode,
            "domain": DOMAIN,
            "clusterIssuer": ISSUER,
            "allowedServices": ["web"],
        }
        if mode == "Ingress":
            ingress["className"] = INGRESS_CLASS
        gateway = {"name": GATEWAY, "namespace": GATEWAY_NAMESPACE, "port": self.traefik.https_port}
        self.kubectl.apply(
            environment_body(ENV, ingress=ingress, gateway=gateway, deletionPolicy="Delete"),
            force_conflicts=True,  # allowedServices may have been patched since (revoke)
        )

    def revoke_all(self) -> None:
        """allowedServices emptied with a patch: an apply of an empty list gives up the
        applier's items, and the list, then absent, gets its default ([web]) back."""
        patch = {"spec": {"ingress": {"allowedServices": []}}}
        self.kubectl("patch", "benv", ENV, "--type=merge", "-p", json.dumps(patch))

    def curl(self, host: str, path: str = "/healthz", *options: str) -> tuple[str, str]:
        """(HTTP status, body) of https://host:port/path, as a client resolving the host to the
        node and trusting the local CA; ``000`` when no HTTP answer came."""
        port = self.traefik.https_port
        done = subprocess.run(
            [
                "curl",
                "--silent",
                "--max-time",
                "5",
                "--resolve",
                f"{host}:{port}:{NODE_IP}",
                "--cacert",
                str(self.ca_file),
                "--write-out",
                "\n%{http_code}",
                *options,
                f"https://{host}:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        body, _, status = done.stdout.rpartition("\n")
        return status or "000", body

    def bandsyctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "bandsyctl"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": str(self.env.kube.kubeconfig)},
            check=True,
        )
        return done.stdout


def eventually(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := probe():
                return result
            last = f"last value {result!r}"
        except AssertionError as error:
            last = str(error)
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s ({last})"
        time.sleep(interval)


def web_service(name: str = "web", external: bool = True) -> dict[str, Any]:
    return service_body(
        name,
        {ENV: {"image": {"tag": TAG}}},
        image={"repository": TEST_IMAGE_REPOSITORY},
        port=8080,
        external=external,
        healthCheck={"path": "/healthz"},
    )


@pytest.fixture(scope="module")
def exposure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposure]:
    assert os.geteuid() == 0, "the node tests need root (bridge, firewall, mounts, cgroups)"
    workdir = tmp_path_factory.mktemp("exposure-node")
    env = LocalEnvironment(workdir / "servers", with_node=True)
    traefik: Traefik | None = None
    operator: OperatorProcess | None = None
    issuer: LocalCertificateIssuer | None = None
    try:
        env.start()
        assert env.node is not None
        testapp.tag_image(env.node.import_image, [TAG])
        kubectl = KubectlRunner(str(env.kube.kubeconfig))
        kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        rights.install(kubectl)
        files = [*gateway_crds.gateway_api_crd_files(), *gateway_crds.cert_manager_crd_files()]
        crd_files.install(kubectl, files)
        traefik = Traefik(workdir / "traefik", env.kube.kubeconfig, NODE_IP)
        kubectl.apply(*platform_objects(GATEWAY, GATEWAY_NAMESPACE, traefik.http_port))
        traefik.start()
        ca = CertificateAuthority.create("bandsy-exposure-test-ca")
        ca_file = workdir / "ca.crt"
        ca.write_cert(ca_file)
        issuer = LocalCertificateIssuer(ca, kubectl)
        issuer.start()
        kubeconfig = least_privilege_kubeconfig(
            kubectl, str(env.kube.kubeconfig), workdir / "operator.kubeconfig"
        )
        operator = OperatorProcess(kubeconfig, workdir / "operator.log", resync_seconds=5)
        operator.start()
        yield Exposure(env, kubectl, traefik, ca_file, issuer)
        print(f"Traefik's log: {traefik.log_file}")
    finally:
        for part in (issuer, operator, traefik):
            if part is not None:
                part.stop()
        env.stop()
    log = operator.log_of_its_own() if operator is not None else ""
    assert "Traceback" not in log, "the operator logged an unexpected exception"
    assert not rbac_denials(log), "the shipped ClusterRole lacks a permission"


def test_https_through_the_gateway_reaches_the_web_pod(exposure: Exposure) -> None:
    exposure.environment()
    started = time.monotonic()
    exposure.kubectl.apply(web_service())
    eventually(
        lambda: exposure.curl(WEB_HOST)[0] == "200", 240, f"200 from https://{WEB_HOST}/healthz"
    )
    seconds = time.monotonic() - started
    print(f"\nkubectl apply of an external service -> first 200 over HTTPS: {seconds:.1f} s")
    # The web pod answered: its own variable, through the route.
    assert exposure.curl(WEB_HOST, "/env?key=BANDSY_SERVICE") == ("200", "web")
    assert exposure.curl(WEB_HOST, "/env?key=PUBLIC_URL")[1] == "set"


def test_the_certificate_names_exactly_the_host(exposure: Exposure) -> None:
    context = ssl.create_default_context(cafile=str(exposure.ca_file))
    with (
        socket.create_connection((NODE_IP, exposure.traefik.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=WEB_HOST) as tls,
    ):
        peer = tls.getpeercert()
    assert peer is not None
    assert peer["subjectAltName"] == (("DNS", WEB_HOST),)
    assert f"{GATEWAY_NAMESPACE}/{ENV}.web-tls" in exposure.issuer.issued


def test_plain_http_is_redirected_to_https(exposure: Exposure) -> None:
    port = exposure.traefik.http_port
    done = subprocess.run(
        [
            "curl",
            "--silent",
            "--max-time",
            "5",
            "--resolve",
            f"{WEB_HOST}:{port}:{NODE_IP}",
            "--write-out",
            "%{http_code} %{redirect_url}",
            "--output",
            "/dev/null",
            f"http://{WEB_HOST}:{port}/healthz",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    status, _, location = done.stdout.partition(" ")
    assert status in ("301", "302", "307", "308"), done.stdout
    assert location.startswith(f"https://{WEB_HOST}"), location


def test_a_service_not_allowed_out_has_no_route_and_its_host_answers_404(
    exposure: Exposure,
) -> None:
    exposure.kubectl.apply(web_service("api"))
    eventually(
        lambda: exposure.kubectl("-n", ENV, "get", "deploy", "api", check=False).returncode == 0,
        60,
        "api deployed",
    )
    routes = json.loads(exposure.kubectl("-n", ENV, "get", "httproutes", "-o", "json").stdout)
    assert [r["metadata"]["name"] for r in routes["items"]] == ["web"]
    # No certificate for it either: Traefik's own default one is all there is (not trusted).
    assert exposure.curl(API_HOST, "/healthz", "--insecure")[0] == "404"
    assert exposure.curl(API_HOST)[0] == "000"


def test_bandsyctl_status_says_the_route_is_accepted_and_the_certificate_ready(
    exposure: Exposure,
) -> None:
    def row() -> dict[str, str]:
        rows = json.loads(exposure.bandsyctl("status", "web", "-o", "json"))
        (found,) = rows
        assert (found["route"], found["certificate"]) == ("True", "True"), found
        return dict(found)

    found = eventually(row, 30, "route Accepted and certificate Ready")
    assert found["url"] == f"https://{WEB_HOST}"
    print(exposure.bandsyctl("status", "web"))


def test_revoking_the_exposure_makes_the_host_stop_answering(exposure: Exposure) -> None:
    exposure.revoke_all()

    def route_gone() -> bool:
        routes = exposure.kubectl("-n", ENV, "get", "httproutes", "-o", "name").stdout.split()
        assert routes == [], routes
        return True

    eventually(route_gone, 30, "web's HTTPRoute removed")
    eventually(
        lambda: exposure.curl(WEB_HOST, "/healthz", "--insecure")[0] != "200",
        60,
        "the host no longer answers with the web pod",
    )
    assert exposure.curl(WEB_HOST)[0] == "000"  # nor with its certificate


def test_the_same_through_an_ingress(exposure: Exposure) -> None:
    exposure.environment(mode="Ingress")
    eventually(
        lambda: exposure.curl(WEB_HOST)[0] == "200",
        120,
        f"200 from https://{WEB_HOST}/healthz through the Ingress",
    )
    routes = json.loads(exposure.kubectl("-n", ENV, "get", "httproutes", "-o", "json").stdout)
    assert routes["items"] == []
    assert f"{ENV}/web-tls" in exposure.issuer.issued
