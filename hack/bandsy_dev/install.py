"""Install the CRDs and the samples into the cluster named by $KUBECONFIG (``make run``)."""

from __future__ import annotations

import subprocess
import sys

from .kube import REPO_ROOT, kubectl_path

CRDS = REPO_ROOT / "crds"
SAMPLES = REPO_ROOT / "deploy" / "samples"


def main() -> int:
    kubectl = str(kubectl_path())
    if any(CRDS.glob("*.yaml")):
        subprocess.run([kubectl, "apply", "--server-side", "-f", str(CRDS)], check=True)
        subprocess.run(
            [kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
            check=True,
        )
    if any(SAMPLES.glob("*.yaml")):
        subprocess.run([kubectl, "apply", "--server-side", "-f", str(SAMPLES)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
