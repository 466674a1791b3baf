"""Production readiness (SPEC §12): each check, what it finds and the fix it names."""

from __future__ import annotations

import datetime
from typing import Any

from bandsy_operator.checks import PRODUCTION_READY, production_checks, production_ready
from bandsy_operator.status import FALSE, TRUE
from factories import environment, service

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
BACKUPS = {
    "schedule": "0 3 * * *",
    "storage": {"s3": {"bucket": "b", "credentialsSecretRef": {"namespace": "d", "name": "s"}}},
}


def ready_service(env: str = "production", **spec: Any) -> Any:
    entry = {"image": {"tag": "release-1.7.2"}, "replicas": 3}
    defaults: dict[str, Any] = {
        "port": 8080,
        "healthCheck": {"path": "/healthz"},
        "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    }
    return service("web", {env: {**entry, **spec.pop("entry", {})}}, **{**defaults, **spec})


def results(svc: Any, env: Any, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {c.name: c for c in production_checks(svc, env, status or {}, NOW)}


def test_a_ready_service_passes_every_check() -> None:
    checks = production_checks(ready_service(), environment("production"), {}, NOW)
    assert [c.name for c in checks] == [
        "replicas",
        "probes",
        "memory",
        "antiAffinity",
        "disruptionBudget",
        "pinnedTag",
    ]
    assert all(c.passed and not c.fix for c in checks)
    condition = production_ready(checks)
    assert (condition.type, condition.status, condition.message) == (
        PRODUCTION_READY,
        TRUE,
        "6/6 checks pass",
    )


def test_one_replica_fails_three_checks_with_one_fix() -> None:
    checks = results(ready_service("preprod", entry={"replicas": 1}), environment("preprod"))
    failed = {name for name, c in checks.items() if not c.passed}
    assert failed == {"replicas", "antiAffinity", "disruptionBudget"}
    assert checks["replicas"].found == "1 replica"
    assert all("spec.environments.preprod.replicas: 2" in checks[n].fix for n in failed)
    condition = production_ready(list(checks.values()))
    assert condition.status == FALSE
    assert condition.reason == "ChecksFailed"
    assert condition.message.startswith("replicas: 1 replica (fix: set spec.environments.")


def test_autoscaling_counts_its_fewest_replicas() -> None:
    svc = ready_service(autoscaling={"minReplicas": 2, "maxReplicas": 6}, entry={"replicas": None})
    entry = svc.spec.environments["production"]
    assert entry.replicas is None
    checks = results(svc, environment("production"))
    assert checks["replicas"].passed
    assert checks["replicas"].found == "2-6 replicas (autoscaled)"


def test_probes_and_memory() -> None:
    bare = service("worker", {"production": {"image": {"tag": "v1.0.0"}, "replicas": 2}})
    checks = results(bare, environment("production"))
    assert not checks["probes"].passed
    assert "spec.healthCheck.path" in checks["probes"].fix
    assert not checks["memory"].passed
    assert checks["memory"].found == "no memory request or limit"
    # The environment's defaults (its LimitRange) count as the container's.
    defaults = {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    with_defaults = results(bare, environment("production", defaults=defaults))
    assert with_defaults["memory"].passed
    assert with_defaults["memory"].found == "requests 64Mi, limits 128Mi"


def test_a_moving_tag_is_not_pinned() -> None:
    for tag in ("latest", "main", "develop", "staging"):
        checks = results(ready_service(entry={"image": {"tag": tag}}), environment("production"))
        assert not checks["pinnedTag"].passed, tag
    named_after_env = service("web", {"qa": {"image": {"tag": "qa"}}})
    assert not results(named_after_env, environment("qa"))["pinnedTag"].passed


def test_a_database_needs_migrations_and_verified_backups() -> None:
    svc = ready_service(postgres={"enabled": True})
    checks = results(svc, environment("production"))
    assert not checks["migrations"].passed
    assert not checks["backups"].passed
    assert checks["backups"].fix == "set spec.backups on environment production"

    backed_up = environment("production", backups=BACKUPS)
    migrated = ready_service(postgres={"enabled": True}, migrations={"command": ["migrate"]})
    assert results(migrated, backed_up)["migrations"].passed
    assert results(migrated, backed_up)["backups"].found == "no verified backup yet"

    def verified(hours_ago: int) -> dict[str, Any]:
        at = (NOW - datetime.timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"backup": {"lastVerified": {"at": at}}}

    recent = results(migrated, backed_up, verified(30))["backups"]
    assert recent.passed
    assert recent.found == "last verified at 2026-11-30T06:00:00Z"  # a time, not an age
    stale = results(migrated, backed_up, verified(49))["backups"]
    assert not stale.passed
    assert "at least every 48 h" in stale.fix


def test_an_unreadable_schedule_fails_the_backup_check() -> None:
    env = environment("production", backups={**BACKUPS, "schedule": "every night"})
    checks = results(ready_service(postgres={"enabled": True}), env)
    assert not checks["backups"].passed
    assert "five fields" in checks["backups"].found


def test_the_backup_fix_names_the_allowed_age_in_readable_units() -> None:
    svc = ready_service(postgres={"enabled": True})
    for schedule, allowed in (
        ("*/15 * * * *", "30 min"),
        ("0 */6 * * *", "12 h"),
        ("@weekly", "14 d"),
    ):
        env = environment("production", backups={**BACKUPS, "schedule": schedule})
        assert f"at least every {allowed}:" in results(svc, env)["backups"].fix
