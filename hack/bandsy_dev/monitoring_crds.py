"""The Prometheus Operator's CRDs (SPEC §12) for the tests, as the project publishes them: taken
from its Go module at the version hack/monitoring/go.mod pins (go_module_files)."""

from __future__ import annotations

from pathlib import Path

from .go_module_files import module_files
from .kube import REPO_ROOT

MODULE = "github.com/prometheus-operator/prometheus-operator"
PINNED = REPO_ROOT / "hack" / "monitoring"
# ServiceMonitors and PrometheusRules the operator makes; the PodMonitor deploy/monitoring ships.
PLURALS = ("servicemonitors", "prometheusrules", "podmonitors")


def crd_files() -> list[Path]:
    names = [f"monitoring.coreos.com_{plural}.yaml" for plural in PLURALS]
    return module_files(PINNED, MODULE, "example/prometheus-operator-crd", names, "monitoring-crds")
