"""Install the CRDs and the samples into the cluster named by $KUBECONFIG (``make run``).

On the local cluster (``BANDSY_PG_HOST`` set, as in ``.local/cluster.env``) the samples'
environments are pointed at the local PostgreSQL and Redis, whose admin credentials become
Secrets in ``default``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping

from .kube import REPO_ROOT, kubectl_path

CRDS = REPO_ROOT / "crds"
SAMPLES = REPO_ROOT / "deploy" / "samples"
SAMPLE_ENVIRONMENTS = ("develop", "preprod", "production")
LOCAL_MANAGER = "bandsy-local"

Kubectl = Callable[..., object]


def _kubectl(*args: str, stdin: str | None = None) -> None:
    subprocess.run([str(kubectl_path()), *args], input=stdin, text=True, check=True)


def point_samples_at_local_servers(kubectl: Kubectl, variables: Mapping[str, str]) -> None:
    """Admin Secrets for the local servers, and the sample environments using them."""
    secrets = [
        ("bandsy-local-postgres", "BANDSY_PG_ADMIN_USER", "BANDSY_PG_ADMIN_PASSWORD"),
        ("bandsy-local-redis", "BANDSY_REDIS_ADMIN_USER", "BANDSY_REDIS_ADMIN_PASSWORD"),
    ]
    for name, user, password in secrets:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "stringData": {"username": variables[user], "password": variables[password]},
        }
        kubectl(
            "apply",
            "--server-side",
            f"--field-manager={LOCAL_MANAGER}",
            "-f",
            "-",
            input=json.dumps(secret),
        )
    patch = {
        "spec": {
            "postgres": {
                "host": variables["BANDSY_PG_HOST"],
                "port": int(variables["BANDSY_PG_PORT"]),
                "adminSecretRef": {"namespace": "default", "name": "bandsy-local-postgres"},
                # A merge patch: null removes the sample's in-cluster peer.
                "egressTo": {"namespace": None, "podSelector": None, "cidr": "127.0.0.1/32"},
            },
            "redis": {
                "host": variables["BANDSY_REDIS_HOST"],
                "port": int(variables["BANDSY_REDIS_PORT"]),
                "adminSecretRef": {"namespace": "default", "name": "bandsy-local-redis"},
                "egressTo": {"cidr": "127.0.0.1/32"},
            },
        }
    }
    for env in SAMPLE_ENVIRONMENTS:
        kubectl(
            "patch",
            "benv",
            env,
            "--type=merge",
            f"--field-manager={LOCAL_MANAGER}",
            "-p",
            json.dumps(patch),
        )


def main() -> int:
    if any(CRDS.glob("*.yaml")):
        _kubectl("apply", "--server-side", "-f", str(CRDS))
        _kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    _kubectl("apply", "--server-side", "--force-conflicts", "-f", str(SAMPLES))
    if os.environ.get("BANDSY_PG_HOST"):
        point_samples_at_local_servers(
            lambda *args, input=None: _kubectl(*args, stdin=input), os.environ
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
