"""Exposure's other projects for the tests (SPEC §12): the Gateway API CRDs (standard channel)
and cert-manager's CRDs, as each project publishes them, taken from their Go modules at the
versions hack/gateway/go.mod pins (go_module_files)."""

from __future__ import annotations

from pathlib import Path

from .go_module_files import module_files
from .kube import REPO_ROOT

PINNED = REPO_ROOT / "hack" / "gateway"
GATEWAY_API = "sigs.k8s.io/gateway-api"
CERT_MANAGER = "github.com/cert-manager/cert-manager"
GATEWAY_API_PLURALS = (
    "backendtlspolicies",
    "gatewayclasses",
    "gateways",
    "grpcroutes",
    "httproutes",
    "listenersets",
    "referencegrants",
    "tcproutes",
    "tlsroutes",
    "udproutes",
)
CERT_MANAGER_CRDS = (
    "acme.cert-manager.io_challenges.yaml",
    "acme.cert-manager.io_orders.yaml",
    "cert-manager.io_certificaterequests.yaml",
    "cert-manager.io_certificates.yaml",
    "cert-manager.io_clusterissuers.yaml",
    "cert-manager.io_issuers.yaml",
)


def gateway_api_crd_files() -> list[Path]:
    names = [f"gateway.networking.k8s.io_{plural}.yaml" for plural in GATEWAY_API_PLURALS]
    return module_files(PINNED, GATEWAY_API, "config/crd/standard", names, "gateway-api-crds")


def cert_manager_crd_files() -> list[Path]:
    return module_files(PINNED, CERT_MANAGER, "deploy/crds", CERT_MANAGER_CRDS, "cert-manager-crds")
