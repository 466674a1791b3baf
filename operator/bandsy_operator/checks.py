"""Production readiness (SPEC §12): the checks behind each environment's ``ProductionReady``
condition and ``bandsyctl doctor``, one list for both. Pure: a service, its environment and
what its status says of that environment.

Most of what kube-score and Polaris flag the operator already does for every service (the
Pod Security ``restricted`` context, no API token, a read-only root is the image's call): these
checks are what a service's own spec decides."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .builders.service import has_disruption_budget, spreads_pods
from .cron import CronError, longest_gap
from .jobs import parse_time
from .models import Environment, Service
from .status import FALSE, TRUE, ConditionUpdate

PRODUCTION_READY = "ProductionReady"
# Tags that name a branch or "the newest": what runs changes without the spec changing.
MOVING_TAGS = frozenset(
    {"latest", "main", "master", "develop", "dev", "staging", "stable", "edge", "nightly"}
)
BACKUP_PERIODS = 2  # a backup may be missed once, not twice


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    found: str  # what the check saw
    fix: str = ""  # how to pass it, when it does not


def _check(name: str, passed: bool, found: str, fix: str) -> Check:
    return Check(name, passed, found, "" if passed else fix)


def production_checks(
    service: Service,
    env: Environment,
    env_status: Mapping[str, Any],
    now: datetime.datetime,
) -> list[Check]:
    """Every check for ``service`` in ``env``, in a fixed order."""
    where = f"spec.environments.{env.name}"
    replicas = service.replicas_in(env.name)
    autoscaling = service.autoscaling_in(env.name)
    scale = (
        f"{autoscaling.min_replicas}-{autoscaling.max_replicas} replicas (autoscaled)"
        if autoscaling
        else f"{replicas} replica{'s' if replicas != 1 else ''}"
    )
    more_replicas = f"set {where}.replicas: 2 or more (or autoscaling.minReplicas)"
    memory = _memory(service, env)
    tag = service.spec.environments[env.name].image.tag
    return [
        _check("replicas", replicas >= 2, scale, more_replicas),
        _check(
            "probes",
            service.spec.health_check is not None,
            f"healthCheck {service.spec.health_check.path}"
            if service.spec.health_check
            else "no healthCheck",
            "serve a health endpoint and set spec.healthCheck.path (spec.port too, for a worker)",
        ),
        _check(
            "memory",
            set(memory) == {"requests", "limits"},
            ", ".join(f"{k} {v}" for k, v in memory.items()) or "no memory request or limit",
            "set resources.requests.memory and resources.limits.memory (or the "
            "environment's spec.defaults)",
        ),
        _check(
            "antiAffinity",
            spreads_pods(service, env),
            "pods prefer distinct nodes" if spreads_pods(service, env) else "one pod",
            f"{more_replicas}: pods then prefer distinct nodes",
        ),
        _check(
            "disruptionBudget",
            has_disruption_budget(service, env),
            "at most one pod evicted at a time"
            if has_disruption_budget(service, env)
            else "no PodDisruptionBudget (one replica)",
            f"{more_replicas}: a PodDisruptionBudget then keeps one up in a drain",
        ),
        _check(
            "pinnedTag",
            tag not in MOVING_TAGS and tag != env.name,
            f"tag {tag}",
            f"deploy an immutable tag (a release or a commit) in {where}.image.tag",
        ),
        *_database_checks(service, env, env_status, now),
    ]


def _memory(service: Service, env: Environment) -> dict[str, str]:
    """The container's memory request and limit: its own, else the environment's defaults
    (the LimitRange gives those at admission)."""
    resources = service.resources_in(env.name)
    defaults = env.spec.defaults
    found = {}
    for kind, own, default in (
        ("requests", resources.requests, defaults.requests.memory),
        ("limits", resources.limits, defaults.limits.memory),
    ):
        value = own.get("memory", default)
        if value is not None:
            found[kind] = str(value)
    return found


def _database_checks(
    service: Service, env: Environment, env_status: Mapping[str, Any], now: datetime.datetime
) -> list[Check]:
    spec = service.spec
    checks = []
    if spec.postgres.enabled or spec.mongo.enabled:
        checks.append(
            _check(
                "migrations",
                spec.migrations is not None,
                "spec.migrations declared" if spec.migrations else "no spec.migrations",
                "declare spec.migrations: the command that migrates the schema before a rollout",
            )
        )
    if spec.postgres.enabled:
        checks.append(_backup_check(env, env_status, now))
    return checks


def allowed_backup_age(env: Environment) -> datetime.timedelta | None:
    """How old the newest verified backup may be in ``env``; None without backups. Raises
    CronError for a schedule it cannot read. The check below and the alert's gauge use it."""
    backups = env.spec.backups
    return None if backups is None else longest_gap(backups.schedule) * BACKUP_PERIODS


def _backup_check(env: Environment, env_status: Mapping[str, Any], now: datetime.datetime) -> Check:
    try:
        allowed = allowed_backup_age(env)
    except CronError as error:
        schedule = env.spec.backups.schedule if env.spec.backups else ""
        return _check("backups", False, f"schedule {schedule!r}: {error}", "fix it")
    if allowed is None:
        return _check(
            "backups",
            False,
            "the environment takes no backups",
            f"set spec.backups on environment {env.name}",
        )
    verified = ((env_status.get("backup") or {}).get("lastVerified") or {}).get("at")
    at = parse_time(verified)
    fix = (
        f"a verified backup at least every {_duration(allowed)}: see `bandsyctl backups` for "
        "why the last ones failed"
    )
    if at is None:
        return _check("backups", False, "no verified backup yet", fix)
    # The time, not the age: a message that changed every minute would be a status write.
    return _check("backups", now - at <= allowed, f"last verified at {verified}", fix)


def _duration(delta: datetime.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes <= 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


def production_ready(checks: list[Check]) -> ConditionUpdate:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return ConditionUpdate(
            PRODUCTION_READY, TRUE, "ChecksPassed", f"{len(checks)}/{len(checks)} checks pass"
        )
    return ConditionUpdate(
        PRODUCTION_READY,
        FALSE,
        "ChecksFailed",
        "; ".join(f"{c.name}: {c.found} (fix: {c.fix})" for c in failed),
    )
