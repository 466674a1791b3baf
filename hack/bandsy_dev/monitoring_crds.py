"""The Prometheus Operator's CRDs (SPEC §12) for the tests, as the project publishes them: taken
from its Go module at the version hack/monitoring/go.mod pins (go.sum checks the download, from
the Go module proxy like the control plane's sources), cached in .cache/monitoring-crds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .kube import REPO_ROOT

MODULE = "github.com/prometheus-operator/prometheus-operator"
PINNED = REPO_ROOT / "hack" / "monitoring"
# ServiceMonitors and PrometheusRules the operator makes; the PodMonitor deploy/monitoring ships.
PLURALS = ("servicemonitors", "prometheusrules", "podmonitors")


def pinned_version() -> str:
    for line in (PINNED / "go.mod").read_text().splitlines():
        words = line.split()
        if words[:2] == ["require", MODULE]:
            return words[2]
    raise RuntimeError(f"{PINNED / 'go.mod'} requires no {MODULE}")


def crd_files() -> list[Path]:
    """The CRD files, downloaded into the cache the first time."""
    version = pinned_version()
    cache = REPO_ROOT / ".cache" / "monitoring-crds" / version
    files = [cache / f"monitoring.coreos.com_{plural}.yaml" for plural in PLURALS]
    if all(path.is_file() for path in files):
        return files
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        work = Path(tmp)
        for name in ("go.mod", "go.sum"):
            shutil.copy(PINNED / name, work / name)
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        downloaded = subprocess.run(
            ["go", "mod", "download", "-json", MODULE],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        source = Path(json.loads(downloaded.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
        staged = work / "crds"
        staged.mkdir()
        for path in files:
            shutil.copy(source / path.name, staged / path.name)
        # Moved into place whole: worktrees share .cache, and a half-copied cache never shows.
        try:
            staged.rename(cache)
        except OSError:
            if not all(path.is_file() for path in files):  # not another process's copy
                raise
    return files
