"""The secrecy sweep (SPEC §9): no generated password in operator logs, Events, CR statuses or
the database servers' logs. Shared by the database tests and the chaos suite."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bandsy_operator.constants import FIELD_MANAGER, MANAGED_BY_LABEL
from bandsy_operator.kube import KubeApi
from recorded_events import all_events

PROJECTIONS = ("-secrets", "-postgres", "-redis", "-mongo")
# Shorter values (a port, "require") would match by accident; generated ones are 16 or more.
MIN_LENGTH = 16


def decode(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def secret_values(secret: dict[str, Any]) -> set[str]:
    """The generated values of one managed projection: every ``*PASSWORD`` and every value of a
    ``-secrets`` Secret (generated keys; provided ones are people's, and no less secret)."""
    name = secret["metadata"]["name"]
    labels = secret["metadata"].get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != FIELD_MANAGER or not name.endswith(PROJECTIONS):
        return set()
    return {
        value
        for key, value in decode(secret).items()
        if key.endswith("PASSWORD") or name.endswith("-secrets")
    }


async def generated_passwords(kube: KubeApi) -> set[str]:
    """Canonical credentials in ``bandsy-system`` and every projection, cluster-wide."""
    passwords = {
        decode(secret)["password"]
        for secret in await kube.list("v1", "Secret", namespace="bandsy-system")
        if "password" in (secret.get("data") or {})
    }
    for secret in await kube.list("v1", "Secret"):
        passwords |= secret_values(secret)
    return {p for p in passwords if len(p) >= MIN_LENGTH}


async def haystacks(
    kube: KubeApi, servers: dict[str, str], operator_logs: dict[str, str]
) -> dict[str, str]:
    """Every place a password could leak to, by name."""
    await asyncio.sleep(1)  # let the servers flush their logs
    found = {
        "postgres log": Path(servers["BANDSY_PG_LOG_FILE"]).read_text(errors="replace"),
        "ferretdb log": Path(servers["BANDSY_MONGO_LOG_FILE"]).read_text(errors="replace"),
        "events": json.dumps(await all_events(kube)),
        "statuses": json.dumps(
            [
                o.get("status")
                for kind in ("BandsyService", "BandsyEnvironment")
                for o in await kube.list("bandsy.app/v1alpha1", kind)
            ]
        ),
    }
    return {**found, **operator_logs}


def assert_not_leaked(passwords: Iterable[str], places: dict[str, str]) -> None:
    for where, text in places.items():
        leaked = [p[:4] + "…" for p in passwords if p in text]
        assert not leaked, f"generated passwords found in the {where}: {leaked}"
    # The server learns verifiers only: proves the statement log is the one the operator wrote to.
    assert "SCRAM-SHA-256$4096:" in places["postgres log"]
