"""Two operator processes with leader election (docs/performance.md "High availability"), the
Lease they compete for, and who wrote what when, from the API server's audit log.

Each process has a token of its own (the shipped ServiceAccount's), so the audit log tells its
writes apart: ``user.extra`` carries the token's credential id (its JWT ID).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bandsy_dev.operator_process import (
    KubectlRunner,
    OperatorProcess,
    least_privilege_kubeconfig,
)
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.settings import OperatorSettings
from waiting import eventually

DEFAULTS = OperatorSettings()
LEASE = ObjectRef(
    "coordination.k8s.io/v1", "Lease", DEFAULTS.operator_namespace, DEFAULTS.lease_name
)
# The bound of docs/performance.md "High availability": lease duration + 2 retry periods
# (11 s), in 15 s.
SIGKILL_TAKEOVER_SECONDS = 15.0
# The standby's next retry (1.5 s) after the leader's clean stop.
SIGTERM_TAKEOVER_SECONDS = 3.0
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


@dataclass
class Candidate:
    """One operator process with leader election on, named as its pod would be."""

    name: str
    process: OperatorProcess
    credential: str  # in the audit log's user.extra


def candidate(
    kubectl: KubectlRunner, admin_kubeconfig: str, workdir: Path, name: str, resync: float
) -> Candidate:
    kubeconfig = least_privilege_kubeconfig(kubectl, admin_kubeconfig, workdir / f"{name}.conf")
    process = OperatorProcess(
        kubeconfig,
        workdir / f"{name}.log",
        resync,
        extra_env={
            "BANDSY_LEADER_ELECTION": "true",
            "BANDSY_POD_NAME": name,  # its holder identity; no pod to read the job image from
            "BANDSY_JOB_IMAGE": "localhost/bandsy/operator:dev",
        },
    )
    return Candidate(name, process, credential_of(kubeconfig))


def credential_of(kubeconfig: str) -> str:
    """How the API server names this kubeconfig's ServiceAccount token: ``JTI=<its JWT ID>``."""
    token = yaml.safe_load(Path(kubeconfig).read_text())["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


async def lease_spec(kube: KubeApi) -> dict[str, Any]:
    lease = await kube.get(LEASE)
    return dict((lease or {}).get("spec") or {})


async def takeover(kube: KubeApi, by: Candidate, since: float, timeout: float) -> float:
    """Seconds from ``since`` (time.monotonic()) until ``by`` holds the Lease."""

    async def held() -> bool:
        holder = (await lease_spec(kube)).get("holderIdentity")
        assert holder == by.name, f"the Lease is held by {holder!r}"
        return True

    await eventually(held, timeout=timeout, interval=0.05)
    return time.monotonic() - since


@dataclass(frozen=True)
class Write:
    at: datetime  # when the API server received it
    verb: str
    resource: str
    namespace: str
    name: str


def writes_of(audit_log: str, who: Candidate) -> list[Write]:
    """Every completed write of ``who``, in the order the API server received them."""
    found = []
    for line in Path(audit_log).read_text().splitlines():
        event = json.loads(line)
        if who.credential not in (event["user"].get("extra") or {}).get(CREDENTIAL_ID, []):
            continue
        ref = event.get("objectRef") or {}
        found.append(
            Write(
                datetime.fromisoformat(event["requestReceivedTimestamp"]),
                event["verb"],
                ref.get("resource", ""),
                ref.get("namespace", ""),
                ref.get("name", ""),
            )
        )
    return sorted(found, key=lambda write: write.at)


@dataclass(frozen=True)
class Handover:
    acquired: datetime  # the new leader's acquireTime
    old: list[Write]
    new: list[Write]


async def one_writer_at_a_time(
    kube: KubeApi, audit_log: str, old: Candidate, new: Candidate
) -> Handover:
    """Assert that the old leader's last write came before the new one acquired the Lease, and
    every write of the new one after that."""
    acquired = datetime.fromisoformat((await lease_spec(kube))["acquireTime"])
    handover = Handover(acquired, writes_of(audit_log, old), writes_of(audit_log, new))
    assert handover.old, f"the audit log has no write of {old.name}"
    late = [write for write in handover.old if write.at >= acquired]
    assert late == [], f"{old.name} wrote after {new.name} acquired the Lease: {late[:5]}"
    first = handover.new[0]
    assert first.at >= acquired, f"{new.name} wrote before it acquired the Lease: {first}"
    return handover
