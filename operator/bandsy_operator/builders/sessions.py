"""`bandsyctl db` sessions (issue: reach a database from a laptop), pure: the relay pod the
command creates with the caller's credentials, and the NetworkPolicy the operator keeps for
such pods of every service with a PostgreSQL database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import naming
from ..constants import DB_SESSION_LABEL, ENVIRONMENT_LABEL
from ..relay import LISTEN_PORT
from .inputs import ServiceInputs
from .meta import Manifest
from .pod import database_client_policy, restricted_pod_spec

# A forgotten session ends by itself: the pod's deadline.
SESSION_DEADLINE_SECONDS = 8 * 3600
RELAY_CONTAINER = "relay"


def db_session_labels(service: str, environment: str) -> dict[str, str]:
    """Not the service's selector (its Service would route to the relay), not managed-by (the
    operator neither watches nor prunes it: the session deletes it, or its deadline ends it)."""
    return {ENVIRONMENT_LABEL: environment, DB_SESSION_LABEL: service}


def build_db_session_network_policy(inputs: ServiceInputs) -> Manifest | None:
    if not inputs.service.spec.postgres.enabled:
        return None
    return database_client_policy(
        inputs,
        naming.db_session_policy(inputs.name),
        db_session_labels(inputs.name, inputs.env.name),
    )


def build_db_session_pod(
    service: str, environment: str, namespace: str, image: str, target: tuple[str, int], suffix: str
) -> Manifest:
    """A relay to ``target`` (the host and port the service's pods use) in the service's
    namespace, run as Pod Security ``restricted`` allows."""
    host, port = target
    container: dict[str, Any] = {
        "name": RELAY_CONTAINER,
        "image": image,
        "command": ["python", "-m", "bandsy_operator.relay", host, str(port)],
        "ports": [{"containerPort": LISTEN_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": naming.db_session_pod(service, suffix),
            "namespace": namespace,
            "labels": db_session_labels(service, environment),
        },
        "spec": {
            **restricted_pod_spec(),
            "restartPolicy": "Never",
            "activeDeadlineSeconds": SESSION_DEADLINE_SECONDS,
            "containers": [container],
        },
    }


def libpq_variables(credentials: Mapping[str, str], local_port: int) -> dict[str, str]:
    """libpq's environment for a session through the forward, the password aside. libpq
    connects to PGHOSTADDR and checks the server's certificate against PGHOST (verify-full),
    so the server is verified as the service's pods verify it."""
    return {
        "PGHOST": credentials["PGHOST"],
        "PGHOSTADDR": "127.0.0.1",
        "PGPORT": str(local_port),
        "PGUSER": credentials["PGUSER"],
        "PGDATABASE": credentials["PGDATABASE"],
        "PGSSLMODE": credentials.get("PGSSLMODE") or "prefer",
    }


def pgpass_line(variables: Mapping[str, str], password: str) -> str:
    """A password file entry for exactly this session (libpq matches PGHOST, not the address)."""
    fields = [variables[k] for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")] + [password]
    return ":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields) + "\n"
