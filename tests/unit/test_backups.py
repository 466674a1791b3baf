"""Backups (SPEC §11) as the operator builds and reports them: the CronJob, its pods' policy,
the storage Secret, outcomes into status and BackupReady, and `bandsyctl backups`."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

from bandsy_operator.backup.outcome import FinishedBackup, condition, merge
from bandsy_operator.builders.backup import build_backup_cronjob, build_backup_network_policy
from bandsy_operator.builders.environment import build_environment_objects
from bandsy_operator.builders.inputs import BackupPlan, DatabasePeer, ServiceInputs
from bandsy_operator.builders.service import build_service_objects
from bandsy_operator.cli import backup_rows
from bandsy_operator.constants import BACKUP_LABEL, ENVIRONMENT_LABEL, MANAGED_BY_LABEL
from bandsy_operator.models import EgressTarget
from bandsy_operator.promotion import Image
from bandsy_operator.reconcile.backups import termination_message
from bandsy_operator.reconcile.service import backups_summary
from factories import environment, service

BACKUPS = {
    "schedule": "0 3 * * *",
    "retention": {"count": 5, "days": 30},
    "storage": {
        "s3": {
            "endpoint": "https://10.99.0.1:9443",
            "bucket": "bandsy-backups",
            "prefix": "teams/a",
            "credentialsSecretRef": {"namespace": "default", "name": "s3-keys"},
            "caSecretRef": {"namespace": "default", "name": "s3-ca"},
            "egressTo": {"cidr": "10.99.0.1/32"},
        }
    },
}
IMAGE = "localhost/bandsy/operator:dev"


def inputs(backups: dict[str, Any] | None = BACKUPS, plan: bool = True) -> ServiceInputs:
    api = service(
        "api", {"develop": {"image": {"tag": "develop-3f2a9c1"}}}, postgres={"enabled": True}
    )
    env = environment("develop", **({"backups": backups} if backups else {}))
    return ServiceInputs(
        service=api,
        env=env,
        image=Image(api.spec.image.repository, "develop-3f2a9c1"),
        hash_key=b"k" * 32,
        credentials={"postgres": {"PGPASSWORD": "pg-password-1234", "PGUSER": "api-user"}},
        database_peers=[DatabasePeer(5432, EgressTarget(cidr="10.99.0.1/32"))],
        backup=BackupPlan(IMAGE, "api-develop-verify") if plan else None,
    )


def test_the_cronjob_runs_the_operator_image_as_the_services_role() -> None:
    built = inputs()
    backups = built.env.spec.backups
    assert backups is not None
    cronjob = build_backup_cronjob(built, backups, IMAGE, "api-develop-verify")
    assert cronjob["metadata"]["name"] == "api-backup"
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 3 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]
    assert job["metadata"]["labels"][MANAGED_BY_LABEL] == "bandsy-operator"  # the Job watch
    assert job["metadata"]["labels"][BACKUP_LABEL] == "api"
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"] == {ENVIRONMENT_LABEL: "develop", BACKUP_LABEL: "api"}
    (container,) = pod["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "bandsy_operator.backup"]
    assert container["envFrom"] == [{"secretRef": {"name": "api-postgres"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["BANDSY_BACKUP_BUCKET"]["value"] == "bandsy-backups"
    assert env["BANDSY_BACKUP_PREFIX"]["value"] == "teams/a"
    assert env["BANDSY_BACKUP_SCRATCH_DATABASE"]["value"] == "api-develop-verify"
    assert env["BANDSY_BACKUP_RETENTION_COUNT"]["value"] == "5"
    assert env["BANDSY_BACKUP_RETENTION_DAYS"]["value"] == "30"
    assert env["AWS_CA_BUNDLE"]["value"] == "/etc/bandsy/backup-ca/ca.crt"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "bandsy-backup-storage", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/work", "/etc/bandsy/backup-ca"}
    assert "pg-password-1234" not in json.dumps(cronjob)


def test_backup_pods_reach_the_database_and_the_bucket_only() -> None:
    built = inputs()
    assert built.env.spec.backups is not None
    policy = build_backup_network_policy(built, built.env.spec.backups)
    assert policy["metadata"]["name"] == "bandsy-backup-api"
    assert policy["spec"]["podSelector"] == {
        "matchLabels": {ENVIRONMENT_LABEL: "develop", BACKUP_LABEL: "api"}
    }
    assert "ingress" not in policy["spec"]
    ports = [rule["ports"][0]["port"] for rule in policy["spec"]["egress"]]
    assert ports == [5432, 9443]


def test_the_service_objects_include_backups_only_where_planned() -> None:
    def names(built: ServiceInputs) -> set[str]:
        return {o["metadata"]["name"] for o in build_service_objects(built, lambda n: "g" * n)}

    assert {"api-backup", "bandsy-backup-api"} <= names(inputs())
    assert not {"api-backup", "bandsy-backup-api"} & names(inputs(plan=False))
    assert not {"api-backup", "bandsy-backup-api"} & names(inputs(backups=None, plan=False))


def test_the_storage_secret_is_copied_into_the_namespace() -> None:
    env = environment("develop", backups=BACKUPS)
    values = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "ca.crt": "PEM"}
    secrets = [o for o in build_environment_objects(env, values) if o["kind"] == "Secret"]
    assert [s["metadata"]["name"] for s in secrets] == ["bandsy-backup-storage"]
    data = {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
    assert data == values
    assert not [o for o in build_environment_objects(env, None) if o["kind"] == "Secret"]
    plain = environment("develop")
    assert not [o for o in build_environment_objects(plain, values) if o["kind"] == "Secret"]


VERIFIED = json.dumps(
    {
        "verified": True,
        "taken": "20261201T030000Z",
        "key": "teams/a/develop/api/20261201T030000Z.dump",
        "size": 2048,
        "sha256": "ab" * 32,
        "tables": 2,
        "rows": 13,
        "seconds": 4,
        "verifiedBackups": ["20261201T030000Z", "20261130T030000Z"],
    }
)


def test_outcomes_move_last_verified_and_last_failed() -> None:
    ok = FinishedBackup("api-backup-1", "2026-12-01T03:00:05Z", True, VERIFIED)
    status = merge({}, [ok])
    assert status["lastVerified"]["taken"] == "20261201T030000Z"
    assert status["lastVerified"]["rows"] == 13
    assert status["verified"] == ["20261201T030000Z", "20261130T030000Z"]
    ready = condition(status, "0 3 * * *")
    assert (ready.status, ready.reason) == ("True", "BackupVerified")
    assert merge(status, [ok]) == status  # counted once: a resync writes nothing

    down = json.dumps({"verified": False, "error": "EndpointConnectionError: s3 unreachable"})
    failed = FinishedBackup("api-backup-2", "2026-12-02T03:01:00Z", False, down)
    after = merge(status, [failed])
    assert after["lastVerified"] == status["lastVerified"]  # the last good one stays
    assert after["verified"] == status["verified"]
    assert "s3 unreachable" in after["lastFailed"]["reason"]
    blocked = condition(after, "0 3 * * *")
    assert (blocked.status, blocked.reason) == ("False", "BackupFailed")
    assert "nothing was deleted" in blocked.message
    assert "20261201T030000Z" in blocked.message

    silent = FinishedBackup("api-backup-3", "2026-12-03T03:00:00Z", False, None, "DeadlineExceeded")
    assert merge(after, [silent])["lastFailed"]["reason"] == "DeadlineExceeded"
    lying = FinishedBackup("api-backup-4", "2026-12-04T03:00:00Z", True, "not json")
    assert "no verified backup" in merge(after, [lying])["lastFailed"]["reason"]


def test_before_any_backup_finished() -> None:
    waiting = condition({}, "0 3 * * *")
    assert (waiting.status, waiting.reason) == ("Unknown", "AwaitingFirstBackup")


def test_the_termination_message_of_the_newest_attempt() -> None:
    def pod(created: str, message: str | None) -> dict[str, Any]:
        state = {"terminated": {"exitCode": 1, **({"message": message} if message else {})}}
        return {
            "metadata": {"creationTimestamp": created},
            "status": {"containerStatuses": [{"state": state}]},
        }

    pods = [pod("2026-12-01T03:00:00Z", "first"), pod("2026-12-01T03:00:30Z", "second")]
    assert termination_message(pods) == "second"
    assert termination_message([pod("2026-12-01T03:00:00Z", None)]) is None
    assert termination_message([]) is None


def test_bandsyctl_backups_rows() -> None:
    status = merge({}, [FinishedBackup("api-backup-1", "2026-12-01T03:00:05Z", True, VERIFIED)])
    known = SimpleNamespace(
        model=service("api", {"develop": {"image": {"tag": "develop-3f2a9c1"}}}),
        status={"environments": {"develop": {"backup": status}}},
    )
    rows = backup_rows(known, None)
    assert [(r["taken"], r["verified"], r["rows"]) for r in rows] == [
        ("20261201T030000Z", "2026-12-01T03:00:05Z", "13"),
        ("20261130T030000Z", "yes", ""),
    ]
    failed = merge(
        status,
        [FinishedBackup("api-backup-2", "2026-12-02T03:00:00Z", False, None, "BackoffLimit")],
    )
    known.status = {"environments": {"develop": {"backup": failed}}}
    assert backup_rows(known, "develop")[0]["verified"] == "FAILED: BackoffLimit"


def test_a_job_listed_late_or_gone_changes_nothing() -> None:
    newer = FinishedBackup("api-backup-2", "2026-12-02T03:00:05Z", True, VERIFIED)
    older = FinishedBackup("api-backup-1", "2026-12-01T03:00:05Z", False, None, "BackoffLimit")
    status = merge({}, [newer], existing=["api-backup-1", "api-backup-2"])
    after = merge(status, [older], existing=["api-backup-1", "api-backup-2"])
    assert "lastFailed" not in after  # it ended before the verified one
    assert after["jobs"] == ["api-backup-1", "api-backup-2"]
    # Jobs the CronJob removed are forgotten: the list stays as short as the Jobs kept.
    assert merge(after, [], existing=["api-backup-2"])["jobs"] == ["api-backup-2"]


def test_the_service_reports_its_worst_environments_backups() -> None:
    def env(status: str, reason: str) -> dict[str, Any]:
        return {
            "conditions": [
                {
                    "type": "BackupReady",
                    "status": status,
                    "reason": reason,
                    "message": reason.lower(),
                }
            ]
        }

    assert backups_summary({"develop": {"conditions": []}}) is None
    summary = backups_summary(
        {
            "develop": env("True", "BackupVerified"),
            "preprod": env("False", "BackupFailed"),
            "production": env("Unknown", "AwaitingFirstBackup"),
        }
    )
    assert summary is not None
    assert (summary.status, summary.reason, summary.message) == (
        "False",
        "BackupFailed",
        "preprod: backupfailed",
    )
    fine = backups_summary({"develop": env("True", "BackupVerified")})
    assert fine is not None
    assert (fine.status, fine.message) == ("True", "develop: backupverified")
