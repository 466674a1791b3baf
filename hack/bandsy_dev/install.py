"""Install the CRDs, the admission policies of SPEC §10 and the samples into the cluster named
by $KUBECONFIG (``make run``).

On the local cluster (``BANDSY_PG_HOST`` set, as in ``.local/cluster.env``) the samples'
environments use the local PostgreSQL and Redis, whose admin credentials become Secrets in
``default``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from bandsy_operator.manifest_yaml import dump_all

from . import rights
from .kube import REPO_ROOT, kubectl_path
from .operator_process import KubectlRunner

CRDS = REPO_ROOT / "crds"
SAMPLES = REPO_ROOT / "deploy" / "samples"


def _kubectl(*args: str, stdin: str | None = None) -> None:
    subprocess.run([str(kubectl_path()), *args], input=stdin, text=True, check=True)


def admin_secrets(variables: Mapping[str, str]) -> list[dict[str, Any]]:
    """The local servers' admin credentials, as the Secrets the environments refer to."""
    pairs = [
        ("bandsy-local-postgres", "BANDSY_PG_ADMIN_USER", "BANDSY_PG_ADMIN_PASSWORD"),
        ("bandsy-local-redis", "BANDSY_REDIS_ADMIN_USER", "BANDSY_REDIS_ADMIN_PASSWORD"),
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "stringData": {"username": variables[user], "password": variables[password]},
        }
        for name, user, password in pairs
    ]


def local_samples(variables: Mapping[str, str]) -> list[dict[str, Any]]:
    """deploy/samples with every environment's database servers replaced by the local ones
    (their user and database templates kept)."""
    documents = admin_secrets(variables)
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "BandsyEnvironment":
                templates = {
                    key: value
                    for key, value in (doc["spec"].get("postgres") or {}).items()
                    if key.endswith("Template")
                }
                doc["spec"]["postgres"] = {
                    **templates,
                    "host": variables["BANDSY_PG_HOST"],
                    "port": int(variables["BANDSY_PG_PORT"]),
                    "sslMode": "require",
                    "adminSecretRef": {"namespace": "default", "name": "bandsy-local-postgres"},
                    "egressTo": {"cidr": "127.0.0.1/32"},
                }
                doc["spec"]["redis"] = {
                    "host": variables["BANDSY_REDIS_HOST"],
                    "port": int(variables["BANDSY_REDIS_PORT"]),
                    "adminSecretRef": {"namespace": "default", "name": "bandsy-local-redis"},
                    "egressTo": {"cidr": "127.0.0.1/32"},
                }
            if doc:
                documents.append(doc)
    return documents


def main() -> int:
    if any(CRDS.glob("*.yaml")):
        _kubectl("apply", "--server-side", "-f", str(CRDS))
        _kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        rights.install(KubectlRunner(os.environ["KUBECONFIG"]))
    if os.environ.get("BANDSY_PG_HOST"):
        documents = dump_all(local_samples(os.environ))
        _kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=documents)
    else:
        _kubectl("apply", "--server-side", "--force-conflicts", "-f", str(SAMPLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
