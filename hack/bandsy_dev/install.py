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

from . import rights, testapp
from .kube import REPO_ROOT, kubectl_path
from .node import running_node_importer
from .node_net import NODE_IP
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
    (their user and database templates kept). On the local node (``BANDSY_NODE=1``) the
    services run the test app (``$BANDSY_TEST_IMAGE``, every sample tag made available by
    ``tag-image``), the servers are the addresses pods use, and names resolve through the
    node's own DNS server (a host process, not a kube-system pod)."""
    on_node = variables.get("BANDSY_NODE") == "1"
    pg_host = variables["BANDSY_POD_PG_HOST" if on_node else "BANDSY_PG_HOST"]
    redis_host = variables["BANDSY_POD_REDIS_HOST" if on_node else "BANDSY_REDIS_HOST"]
    documents = admin_secrets(variables)
    for doc in sample_documents():
        if doc["kind"] == "BandsyEnvironment":
            spec = doc["spec"]
            templates = {
                key: value
                for key, value in (spec.get("postgres") or {}).items()
                if key.endswith("Template")
            }
            spec["postgres"] = {
                **templates,
                "host": pg_host,
                "port": int(variables["BANDSY_PG_PORT"]),
                "sslMode": "require",
                "adminSecretRef": {"namespace": "default", "name": "bandsy-local-postgres"},
                "egressTo": {"cidr": f"{pg_host}/32"},
            }
            spec["redis"] = {
                "host": redis_host,
                "port": int(variables["BANDSY_REDIS_PORT"]),
                "adminSecretRef": {"namespace": "default", "name": "bandsy-local-redis"},
                "egressTo": {"cidr": f"{redis_host}/32"},
            }
            if on_node:
                network = spec.setdefault("networkPolicy", {})
                network["dnsTo"] = {"cidr": f"{NODE_IP}/32"}
        if doc["kind"] == "BandsyService" and on_node:
            spec = doc["spec"]
            spec["image"] = {"repository": variables["BANDSY_TEST_IMAGE"]}
            if port := spec.get("port"):  # the test app listens where the service says
                spec["config"] = {**spec.get("config", {}), "PORT": str(port)}
        documents.append(doc)
    return documents


def sample_documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(SAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def sample_tags() -> list[str]:
    """Every image tag the sample services name."""
    return sorted(
        {
            environment["image"]["tag"]
            for doc in sample_documents()
            if doc["kind"] == "BandsyService"
            for environment in doc["spec"]["environments"].values()
        }
    )


def main() -> int:
    # The operator's namespace: its Lease is there before it leads (and creates the rest).
    _kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "deploy" / "namespace.yaml"))
    if any(CRDS.glob("*.yaml")):
        _kubectl("apply", "--server-side", "-f", str(CRDS))
        _kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        rights.install(KubectlRunner(os.environ["KUBECONFIG"]))
    if os.environ.get("BANDSY_PG_HOST"):
        if os.environ.get("BANDSY_NODE") == "1":
            importer = running_node_importer(REPO_ROOT / ".local")
            if importer is not None:
                testapp.tag_image(importer, sample_tags())
        documents = dump_all(local_samples(os.environ))
        _kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=documents)
    else:
        _kubectl("apply", "--server-side", "--force-conflicts", "-f", str(SAMPLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
