"""Migrations (SPEC §11): Job states, the status record, redaction, the Job and its policy."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest

from bandsy_operator.builders.inputs import DatabasePeer, ServiceInputs
from bandsy_operator.builders.migration import build_migration_job, build_migration_network_policy
from bandsy_operator.builders.service import build_service_objects
from bandsy_operator.constants import (
    BACKUP_LABEL,
    ENVIRONMENT_LABEL,
    MANAGED_BY_LABEL,
    MIGRATION_LABEL,
    NAME_LABEL,
)
from bandsy_operator.jobs import JobNews, job_news
from bandsy_operator.migrations import (
    LOG_TAIL_CHARACTERS,
    LOG_TAIL_LINES,
    REDACTED,
    Migration,
    MigrationState,
    job_state,
    log_tail,
    record,
    redact,
    succeeded,
)
from bandsy_operator.models import EgressTarget, Migrations
from bandsy_operator.naming import migration_job, migration_policy
from bandsy_operator.promotion import GateInput, GateReason, Image, Readiness, Rollout, evaluate
from factories import environment, service

IMAGE = "ghcr.io/feinwaru/api:develop-4b5c6d7"
T0 = datetime.datetime(2026, 12, 1, 8, 0, 0, tzinfo=datetime.UTC)


def job(status: dict[str, Any], name: str = "api-migrate-0123abcd") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {MIGRATION_LABEL: "api"}},
        "status": status,
    }


def condition(type_: str, **fields: str) -> dict[str, str]:
    return {"type": type_, "status": "True", **fields}


def test_a_job_runs_until_the_job_controller_says_complete_or_failed() -> None:
    started = {"startTime": "2026-12-01T08:00:00Z", "active": 1}
    running = job_state(job(started), IMAGE)
    assert running.state is MigrationState.RUNNING
    assert running.started_at == T0
    assert running.duration_seconds is None
    # A failed attempt within backoffLimit is still running: the Job controller retries it.
    retrying = job_state(job({**started, "failed": 1}), IMAGE)
    assert retrying.state is MigrationState.RUNNING

    done = {
        **started,
        "completionTime": "2026-12-01T08:00:07Z",
        "succeeded": 1,
        "conditions": [condition("SuccessCriteriaMet"), condition("Complete")],
    }
    complete = job_state(job(done), IMAGE)
    assert complete.state is MigrationState.SUCCEEDED
    assert complete.duration_seconds == 7
    assert complete.job == "api-migrate-0123abcd"

    failed = {
        **started,
        "failed": 1,
        "conditions": [
            condition(
                "Failed",
                reason="BackoffLimitExceeded",
                message="Job has reached the specified backoff limit",
                lastTransitionTime="2026-12-01T08:00:03Z",
            )
        ],
    }
    failure = job_state(job(failed), IMAGE)
    assert failure.state is MigrationState.FAILED
    assert failure.message == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert failure.duration_seconds == 3
    # A condition that is not True yet says nothing.
    pending = {**started, "conditions": [{"type": "Failed", "status": "False"}]}
    assert job_state(job(pending), IMAGE).state is MigrationState.RUNNING


def test_records_keep_one_entry_per_image_newest_first_and_round_trip() -> None:
    first = Migration("repo:a", "j-a", MigrationState.FAILED, T0, T0, "exit 1")
    second = Migration("repo:b", "j-b", MigrationState.SUCCEEDED, T0, T0)
    rerun = Migration("repo:a", "j-a", MigrationState.SUCCEEDED, T0, T0)
    records = record(record(record([], first), second), rerun)
    assert [(r.image, r.state) for r in records] == [
        ("repo:a", MigrationState.SUCCEEDED),
        ("repo:b", MigrationState.SUCCEEDED),
    ]
    assert succeeded(records, "repo:a") == rerun
    assert succeeded([first], "repo:a") is None
    capped = record(
        [Migration(f"repo:{n}", "j", MigrationState.SUCCEEDED) for n in range(9)], first, 3
    )
    assert [r.image for r in capped] == ["repo:a", "repo:0", "repo:1"]
    status = {"migrations": [r.to_status() for r in records]}
    assert Migration.records(json.loads(json.dumps(status))) == records
    assert records[0].to_status()["durationSeconds"] == 0


def test_a_rollout_keeps_its_migration_time_even_zero() -> None:
    rollout = Rollout("develop-4b5c6d7", T0, image=IMAGE, migration_seconds=0)
    assert Rollout.from_status(rollout.to_status()).migration_seconds == 0
    assert "migrationSeconds" not in Rollout("t", T0).to_status()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "connecting to postgres://api-user:s3cr3t-p4ss@10.99.0.1:5432/api-develop",
            f"connecting to postgres://api-user:{REDACTED}@10.99.0.1:5432/api-develop",
        ),
        ("PGPASSWORD=hunter22 psql", f"PGPASSWORD={REDACTED} psql"),
        ('stripe_api_key: "sk_live_xyz"', f"stripe_api_key: {REDACTED}"),
        ("auth token=abc.def.ghi ok", f"auth token={REDACTED} ok"),
        ("relation users already exists", "relation users already exists"),
    ],
)
def test_redaction_of_the_shapes_a_secret_is_printed_in(line: str, expected: str) -> None:
    assert redact(line, []) == expected


def test_redaction_of_the_services_own_values_longest_first() -> None:
    generated = "Zq8vN2kLpX4wR7tY"
    text = f"error near '{generated}' and '{generated}EXTRA' (id 42)"
    redacted = redact(text, [generated, f"{generated}EXTRA", "42"])  # too short to hunt
    assert generated not in redacted
    assert redacted == f"error near '{REDACTED}' and '{REDACTED}' (id 42)"


def test_the_log_tail_is_short_and_redacted() -> None:
    lines = [f"line {n}" for n in range(100)] + ["", "fatal: password=topsecret1"]
    tail = log_tail("\n".join(lines), [])
    assert tail.splitlines()[-1] == f"fatal: password={REDACTED}"
    assert len(tail.splitlines()) == LOG_TAIL_LINES
    assert len(log_tail("x" * 10_000, [])) == LOG_TAIL_CHARACTERS


def test_job_news_is_a_finish_or_a_deletion() -> None:
    def news(event: str, status: dict[str, Any], label: str = MIGRATION_LABEL) -> JobNews | None:
        body = job(status)
        body["metadata"] |= {"namespace": "develop", "labels": {label: "api"}}
        return job_news(event, body)

    migrated = JobNews("api", "develop", backup=False)
    assert news("MODIFIED", {"active": 1}) is None
    assert news("MODIFIED", {"conditions": [condition("Complete")]}) == migrated
    assert news("MODIFIED", {"conditions": [condition("Failed")]}) == migrated
    assert news("DELETED", {"active": 1}) == migrated
    backed_up = news("MODIFIED", {"conditions": [condition("Complete")]}, BACKUP_LABEL)
    assert backed_up == JobNews("api", "develop", backup=True)
    assert job_news("MODIFIED", {"metadata": {"name": "other"}, "status": {}}) is None


# -- the Job and its NetworkPolicy ----------------------------------------------------------------


def api_inputs(migrations: dict[str, Any] | None) -> ServiceInputs:
    extra = {"migrations": migrations} if migrations is not None else {}
    api = service(
        "api",
        {"develop": {"image": {"tag": "develop-3f2a9c1"}}},
        port=9000,
        postgres={"enabled": True},
        secrets=[{"name": "STRIPE_API_KEY"}],
        **extra,
    )
    env = environment("develop")
    return ServiceInputs(
        service=api,
        env=env,
        image=Image(api.spec.image.repository, "develop-3f2a9c1"),
        hash_key=b"k" * 32,
        existing_secrets={"STRIPE_API_KEY": "sk_test_value_1234"},
        credentials={"postgres": {"PGPASSWORD": "generated-password-5678", "PGUSER": "api-user"}},
        database_peers=[DatabasePeer(5432, EgressTarget(cidr="10.99.0.1/32"))],
    )


def test_the_migration_job_runs_the_new_image_with_the_services_environment() -> None:
    inputs = api_inputs({"args": ["migrate"], "timeoutSeconds": 120})
    migrations = inputs.service.spec.migrations
    assert migrations is not None
    new = Image(inputs.service.spec.image.repository, "develop-4b5c6d7")
    built = build_migration_job(inputs, migrations, new)
    assert built["metadata"]["name"] == migration_job("api", str(new))
    assert built["metadata"]["labels"][MANAGED_BY_LABEL] == "bandsy-operator"  # its watch
    spec = built["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 120
    pod = spec["template"]
    # Neither the service's selector (its Service would route to it) nor the pod watch's label.
    assert pod["metadata"]["labels"] == {ENVIRONMENT_LABEL: "develop", MIGRATION_LABEL: "api"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    (container,) = pod["spec"]["containers"]
    assert container["image"] == str(new)
    assert container["args"] == ["migrate"]
    assert "command" not in container  # the image's entrypoint
    assert container["envFrom"] == [
        {"configMapRef": {"name": "api-config"}},
        {"secretRef": {"name": "api-secrets"}},
        {"secretRef": {"name": "api-postgres"}},
    ]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    dumped = json.dumps(built)
    assert "generated-password-5678" not in dumped
    assert "sk_test_value_1234" not in dumped


def test_one_job_name_per_image() -> None:
    assert migration_job("api", "r:a") == migration_job("api", "r:a")
    assert migration_job("api", "r:a") != migration_job("api", "r:b")
    assert migration_job("api", "r:a") != migration_job("api", "other:a")
    assert len(migration_job("a" * 40, "r:a")) <= 63


def test_migration_pods_reach_the_databases_only() -> None:
    inputs = api_inputs({"args": ["migrate"]})
    policy = build_migration_network_policy(inputs)
    assert policy is not None
    assert policy["metadata"]["name"] == migration_policy("api") == "bandsy-migrate-api"
    spec = policy["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {ENVIRONMENT_LABEL: "develop", MIGRATION_LABEL: "api"}
    }
    assert "ingress" not in spec
    assert spec["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "10.99.0.1/32"}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]
    names = {o["metadata"]["name"] for o in build_service_objects(inputs, lambda n: "g" * n)}
    assert "bandsy-migrate-api" in names
    without = api_inputs(None)
    assert build_migration_network_policy(without) is None
    deployment = next(
        o for o in build_service_objects(without, lambda n: "g" * n) if o["kind"] == "Deployment"
    )
    assert NAME_LABEL in deployment["spec"]["template"]["metadata"]["labels"]


def test_migrations_defaults() -> None:
    assert Migrations() == Migrations(command=(), args=(), timeout_seconds=600, backoff_limit=0)


# -- the upstream gate ------------------------------------------------------------------------


def production_gate(migrated_upstream: bool | None) -> GateInput:
    new = Image("repo", "release-1.8.0")
    return GateInput(
        desired=new,
        current=Image("repo", "release-1.7.2"),
        tag_pattern="^release-",
        frozen=False,
        promotion_from="preprod",
        soak_seconds=0,
        upstream=Readiness(new, T0),
        skip_gates_tag=None,
        now=T0,
        migrated_upstream=migrated_upstream,
    )


def test_a_tag_must_have_migrated_upstream() -> None:
    held = evaluate(production_gate(False))
    assert not held.allowed
    assert held.reason is GateReason.NOT_MIGRATED_UPSTREAM
    assert held.image_to_apply == Image("repo", "release-1.7.2")
    assert "never migrated there" in held.message
    assert evaluate(production_gate(True)).allowed
    assert evaluate(production_gate(None)).allowed  # a service without migrations
    # Not Ready upstream is reported first: it names what to do first.
    not_ready = dataclasses.replace(production_gate(False), upstream=Readiness())
    assert evaluate(not_ready).reason is GateReason.NOT_READY_UPSTREAM
