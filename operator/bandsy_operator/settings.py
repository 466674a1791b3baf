"""Operator configuration, read once from the environment (documented in the README)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorSettings:
    # Namespace of the central credential store and the operator itself.
    operator_namespace: str = "bandsy-system"
    # Periodic drift check of every object, in seconds.
    resync_interval: float = 300.0
    liveness_port: int = 8080
    metrics_port: int = 9090
    json_logs: bool = False
    # Concurrent reconciles.
    workers: int = 16
    # The image of the backup Jobs (SPEC §11): the operator's own. In a cluster it is read from
    # the operator's pod (BANDSY_POD_NAME, from the downward API); this overrides it.
    job_image: str | None = None
    pod_name: str | None = None
    # Leader election (SPEC §12, docs/performance.md "High availability"): only the holder of
    # this Lease in operator_namespace watches and reconciles. Durations in seconds: a SIGKILLed
    # leader is replaced within lease_duration + 2 * retry_period; a leader that has not renewed
    # for renew_deadline exits, lease_duration - renew_deadline before anyone else may take over.
    leader_election: bool = True
    lease_name: str = "bandsy-operator"
    lease_duration: int = 8
    lease_renew_deadline: float = 5.0
    lease_retry_period: float = 1.5

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            operator_namespace=env.get("BANDSY_OPERATOR_NAMESPACE", cls.operator_namespace),
            resync_interval=float(env.get("BANDSY_RESYNC_INTERVAL", cls.resync_interval)),
            liveness_port=int(env.get("BANDSY_LIVENESS_PORT", cls.liveness_port)),
            metrics_port=int(env.get("BANDSY_METRICS_PORT", cls.metrics_port)),
            json_logs=env.get("BANDSY_LOG_FORMAT", "text").lower() == "json",
            workers=int(env.get("BANDSY_WORKERS", cls.workers)),
            job_image=env.get("BANDSY_JOB_IMAGE") or None,
            pod_name=env.get("BANDSY_POD_NAME") or None,
            leader_election=env.get("BANDSY_LEADER_ELECTION", "true").lower() != "false",
            lease_name=env.get("BANDSY_LEASE_NAME", cls.lease_name),
            lease_duration=int(env.get("BANDSY_LEASE_DURATION", cls.lease_duration)),
            lease_renew_deadline=float(
                env.get("BANDSY_LEASE_RENEW_DEADLINE", cls.lease_renew_deadline)
            ),
            lease_retry_period=float(env.get("BANDSY_LEASE_RETRY_PERIOD", cls.lease_retry_period)),
        )
