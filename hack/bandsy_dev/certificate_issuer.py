"""The test stand-in for cert-manager's controller, which cannot be built here (its main package
is a module the Go proxy does not serve: ../shared/research/gateway.md). It does what that
controller does for the operator's objects, from the local CA: for every cert-manager
``Certificate`` without a Ready certificate it writes the TLS Secret ``spec.secretName`` (SAN
exactly ``spec.dnsNames``) and sets the ``Ready`` condition; and, like cert-manager's ingress-shim,
an Ingress annotated with a cluster issuer gets a ``Certificate`` for its TLS hosts.

Issuance itself (ACME, renewals) is cert-manager's job, not tested here; the point is what the
operator writes and that the Gateway serves the result.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from typing import Any

from bandsy_operator.constants import CLUSTER_ISSUER_ANNOTATION

from .operator_process import KubectlRunner
from .tls import CertificateAuthority

POLL_SECONDS = 0.3


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ready(certificate: dict[str, Any]) -> bool:
    conditions = (certificate.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class LocalCertificateIssuer:
    def __init__(self, ca: CertificateAuthority, kubectl: KubectlRunner) -> None:
        self.ca = ca
        self.kubectl = kubectl
        self.issued: list[str] = []  # namespace/name of each Certificate made Ready
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _items(self, kind: str) -> list[dict[str, Any]]:
        listed = self.kubectl("get", kind, "--all-namespaces", "-o", "json", check=False)
        return list(json.loads(listed.stdout)["items"]) if listed.returncode == 0 else []

    def shim_ingresses(self) -> None:
        """As cert-manager's ingress-shim: a Certificate per TLS entry of an annotated Ingress."""
        for ingress in self._items("ingresses.networking.k8s.io"):
            meta = ingress["metadata"]
            issuer = (meta.get("annotations") or {}).get(CLUSTER_ISSUER_ANNOTATION)
            if issuer is None:
                continue
            for tls in ingress["spec"].get("tls") or []:
                self.kubectl.apply(
                    {
                        "apiVersion": "cert-manager.io/v1",
                        "kind": "Certificate",
                        "metadata": {"name": tls["secretName"], "namespace": meta["namespace"]},
                        "spec": {
                            "secretName": tls["secretName"],
                            "dnsNames": tls["hosts"],
                            "issuerRef": {"kind": "ClusterIssuer", "name": issuer},
                        },
                    }
                )

    def issue_pending(self) -> None:
        for certificate in self._items("certificates.cert-manager.io"):
            if not _ready(certificate):
                self._issue(certificate)

    def _issue(self, certificate: dict[str, Any]) -> None:
        meta, spec = certificate["metadata"], certificate["spec"]
        cert_pem, key_pem = self.ca.issue_for_hosts(spec["dnsNames"])
        self.kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": spec["secretName"], "namespace": meta["namespace"]},
                "data": {
                    "tls.crt": _b64(cert_pem),
                    "tls.key": _b64(key_pem),
                    "ca.crt": _b64(self.ca.cert_pem()),
                },
            }
        )
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "Certificate is up to date and has not expired",
        }
        self.kubectl(
            "-n",
            meta["namespace"],
            "patch",
            "certificate",
            meta["name"],
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"conditions": [ready]}}),
        )
        self.issued.append(f"{meta['namespace']}/{meta['name']}")

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            # A Certificate deleted mid-issue is the next round's (or nobody's) concern.
            with contextlib.suppress(AssertionError):
                self.shim_ingresses()
                self.issue_pending()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="certificate-issuer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
