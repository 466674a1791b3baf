"""The benchmark's custom resources: three environments on the local servers, N services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bandsy_operator.constants import API_VERSION

ENVIRONMENTS = ("develop", "preprod", "production")
ADMIN_SECRET = "bandsy-bench-postgres"  # noqa: S105 - a Secret's name


def admin_secret(variables: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ADMIN_SECRET, "namespace": "default"},
        "stringData": {
            "username": variables["BANDSY_PG_ADMIN_USER"],
            "password": variables["BANDSY_PG_ADMIN_PASSWORD"],
        },
    }


def environment(name: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """Like deploy/samples, without promotion gates: the floor has none to wait for."""
    return {
        "apiVersion": API_VERSION,
        "kind": "BandsyEnvironment",
        "metadata": {"name": name},
        "spec": {
            "podSecurity": "restricted",
            # Ingress mode: the objects (and so the measurements) of the runs before Gateway mode.
            "ingress": {"mode": "Ingress", "domain": "bench.bandsy.app", "className": "nginx"},
            "postgres": {
                "host": variables["BANDSY_PG_HOST"],
                "port": int(variables["BANDSY_PG_PORT"]),
                "sslMode": "require",
                # One server plays all three: a role per environment, as separate servers give.
                "userTemplate": "{service}-{env}",
                "adminSecretRef": {"namespace": "default", "name": ADMIN_SECRET},
                "egressTo": {"cidr": "127.0.0.1/32"},
            },
            "config": {"LOG_LEVEL": "info"},
            "networkPolicy": {"allowFromNamespaces": ["monitoring"]},
            "deletionPolicy": "Retain" if name == "production" else "Delete",
        },
    }


def tagged(name: str, tag: str) -> str:
    """A name of one run of a scenario: runs other than the kept one are tagged (``r0-...``)
    so that each starts from nothing, in namespaces and databases of its own."""
    return f"{tag}-{name}" if tag else name


def service_name(index: int, tag: str = "") -> str:
    return tagged(f"svc-{index:04d}", tag)


def service(
    index: int, environments: Sequence[str], postgres: bool, tag: str = ""
) -> dict[str, Any]:
    """A web service with a port, a health check, config, a generated secret and (maybe) its
    own Postgres database in each of ``environments``. A tagged run is deleted afterwards and
    takes its databases with it (production's name, untagged, refuses that policy)."""
    name = service_name(index, tag)
    spec: dict[str, Any] = {
        "image": {"repository": f"ghcr.io/feinwaru/{name}"},
        "port": 8080,
        "healthCheck": {"path": "/healthz"},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "config": {"FEATURE_X": "false"},
        "secrets": [{"name": "SESSION_KEY", "generate": {"length": 32}}],
        "environments": {env: {"image": {"tag": "release-1.0.0"}} for env in environments},
    }
    if postgres:
        spec["postgres"] = {"enabled": True, **({"reclaimPolicy": "Delete"} if tag else {})}
    return {
        "apiVersion": API_VERSION,
        "kind": "BandsyService",
        "metadata": {"name": name},
        "spec": spec,
    }
