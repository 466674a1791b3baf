"""Restores (SPEC §11), the pure parts: the request `bandsyctl restore` writes, when one may
run, the names of the databases it makes, its Job, and the pods' restart after it."""

from __future__ import annotations

import argparse
import datetime
import json
from dataclasses import replace
from typing import Any, cast

import pytest

from bandsy_operator import naming
from bandsy_operator.builders.backup import build_backup_objects, build_restore_job
from bandsy_operator.builders.inputs import MirrorPlan
from bandsy_operator.builders.service import build_service_objects
from bandsy_operator.cli import CommandError, build_parser, restore_request
from bandsy_operator.constants import (
    BACKUP_LABEL,
    ENVIRONMENT_LABEL,
    MIRROR_LABEL,
    RESTORE_LABEL,
    RESTORED_ANNOTATION,
)
from bandsy_operator.jobs import job_news
from bandsy_operator.kube import KubeApi
from bandsy_operator.reconcile.databases import AccountRef, DatabaseReconciler
from bandsy_operator.reconcile.mirrors import MirrorRunner
from bandsy_operator.reconcile.mirrors import refused as refused_mirror
from bandsy_operator.reconcile.restores import RestoreRunner, job_outcome
from bandsy_operator.restores import (
    InvalidRestoreRequestError,
    RestoreRequest,
    annotation_key,
    mirror_refusal,
    new_request_id,
    parse_origin,
    parse_request,
    refusal,
    request_for,
    restored_marker,
    scrub_needed,
)
from bandsy_operator.world import World
from factories import _stored, environment, environment_body, service, service_body, tags
from unit.test_backups import BACKUPS, IMAGE, inputs

NOW = datetime.datetime(2026, 12, 1, 11, 5, tzinfo=datetime.UTC)


def test_a_request_reads_back_as_written() -> None:
    restore = RestoreRequest(new_request_id(NOW), "production", "20261201T030000Z")
    assert restore.id.startswith("20261201T110500Z-")
    assert parse_request(restore.to_annotation()) == restore
    assert restore.origin == "production@20261201T030000Z"
    cleanup = RestoreRequest("20261201T120000Z-0001")
    assert cleanup.cleanup
    assert parse_request(cleanup.to_annotation()) == cleanup
    assert json.loads(cleanup.to_annotation()) == {"id": cleanup.id, "cleanup": True}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("develop", "expected ENV@TIMESTAMP"),
        ("develop@", "expected ENV@TIMESTAMP"),
        ("@latest", "expected ENV@TIMESTAMP"),
        ("develop@yesterday", "neither 'latest' nor a backup's timestamp"),
    ],
)
def test_an_origin_is_an_environment_and_a_backup(text: str, why: str) -> None:
    with pytest.raises(InvalidRestoreRequestError, match=why):
        parse_origin(text)


def test_an_unreadable_annotation_is_reported_not_acted_on() -> None:
    key = annotation_key("develop")
    assert key == "bandsy.app/restore.develop"
    assert request_for({}, "develop") is None
    assert isinstance(request_for({key: "{not json"}, "develop"), InvalidRestoreRequestError)
    assert isinstance(request_for({key: '{"id": "x"}'}, "develop"), InvalidRestoreRequestError)
    found = request_for({key: '{"id": "x", "from": "develop@latest"}'}, "develop")
    assert found == RestoreRequest("x", "develop", "latest")
    assert request_for({key: '{"id": "x", "from": "develop@latest"}'}, "preprod") is None


def test_a_restore_reads_a_bucket_both_environments_back_up_to() -> None:
    develop = environment("develop", backups=BACKUPS)
    preprod = environment("preprod", backups=BACKUPS, promotion={"from": "develop"})
    production = environment("production", backups=BACKUPS, promotion={"from": "preprod"})
    assert refusal(develop, develop) is None
    assert refusal(preprod, develop) is None  # unprotected data into a protected environment
    assert refusal(production, preprod) is None
    assert "has no spec.backups" in str(refusal(environment("develop"), develop))
    assert "does not exist" in str(refusal(develop, None))
    assert "no backups to use" in str(refusal(develop, environment("qa")))
    elsewhere = {**BACKUPS, "storage": {"s3": {**BACKUPS["storage"]["s3"], "bucket": "other"}}}
    assert "different buckets" in str(refusal(develop, environment("qa", backups=elsewhere)))
    # Protected data reaches an unprotected environment only scrubbed (a mirror).
    assert "only scrubbed" in str(refusal(develop, production))


def test_restore_database_names_stay_within_postgres_limits() -> None:
    assert naming.restore_database("api-develop") == "api-develop-restore"
    request = "20261201T110500Z-3f2a"
    assert (
        naming.previous_database("api-develop", request)
        == "api-develop-before-20261201t110500z-3f2a"
    )
    long = "a" * 60
    for name in (naming.restore_database(long), naming.previous_database(long, request)):
        assert len(name.encode()) <= naming.MAX_IDENTIFIER_BYTES
    other = "a" * 59 + "b"
    assert naming.restore_database(long) != naming.restore_database(other)
    assert naming.restore_job("api", request) == naming.restore_job("api", request)
    assert naming.restore_job("api", request) != naming.restore_job("api", request + "x")


def test_the_restore_job_runs_as_the_services_role_into_the_new_database() -> None:
    built = inputs()
    backups = built.env.spec.backups
    assert backups is not None
    request = RestoreRequest("20261201T110500Z-3f2a", "develop", "latest")
    job = build_restore_job(built, backups, IMAGE, request, "api-develop-restore")
    assert job["metadata"]["name"] == naming.restore_job("api", request.id)
    assert job["metadata"]["labels"][RESTORE_LABEL] == "api"
    pod = job["spec"]["template"]
    # The backup pods' labels: their NetworkPolicy lets them reach the database and the bucket.
    assert pod["metadata"]["labels"] == {ENVIRONMENT_LABEL: "develop", BACKUP_LABEL: "api"}
    container = pod["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["command"][-1] == "restore"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGDATABASE"] == "api-develop-restore"  # listed env wins over envFrom's
    assert (env["BANDSY_RESTORE_SOURCE"], env["BANDSY_RESTORE_BACKUP"]) == ("develop", "latest")
    assert container["envFrom"] == [{"secretRef": {"name": "api-postgres"}}]
    assert "pg-password-1234" not in json.dumps(job)


def test_pods_restart_once_per_restore_swapped_in() -> None:
    def template_annotations(restored: str | None) -> dict[str, str]:
        objects = build_service_objects(replace(inputs(), restored=restored), lambda: "x")
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        return dict(deployment["spec"]["template"]["metadata"]["annotations"])

    assert RESTORED_ANNOTATION not in template_annotations(None)
    assert template_annotations("r1")[RESTORED_ANNOTATION] == "r1"
    assert restored_marker({"restoredId": "r1", "phase": "CleanedUp"}) == "r1"
    assert restored_marker({}) is None


def test_a_finished_restore_job_is_news_for_its_service() -> None:
    job = {
        "metadata": {"namespace": "develop", "labels": {RESTORE_LABEL: "api"}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    news = job_news("MODIFIED", job)
    assert news is not None
    assert (news.service, news.namespace, news.backup) == ("api", "develop", False)


def _cli(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["restore", "api", *argv])


def test_bandsyctl_restore_refuses_what_the_operator_would() -> None:
    world = World()
    world.observe_environment(_stored(environment_body("develop", backups=BACKUPS), "uid-d"))
    world.observe_environment(_stored(environment_body("production", backups=BACKUPS), "uid-p"))
    world.observe_service(_stored(service_body("api", tags(develop="v1")), "uid-api"))
    develop = world.valid_environments()["develop"]
    made = restore_request(_cli("--env", "develop", "--from", "develop@latest"), develop, world)
    assert (made.source, made.backup) == ("develop", "latest")
    with pytest.raises(CommandError, match="only scrubbed"):
        restore_request(_cli("--env", "develop", "--from", "production@latest"), develop, world)
    with pytest.raises(CommandError, match="ENV@TIMESTAMP"):
        restore_request(_cli("--env", "develop", "--from", "develop"), develop, world)
    with pytest.raises(CommandError, match="--cleanup"):
        restore_request(_cli("--env", "develop"), develop, world)
    assert restore_request(_cli("--env", "develop", "--cleanup"), develop, world).cleanup


# -- mirrors ------------------------------------------------------------------------------------


def _postgres(**extra: object) -> dict[str, object]:
    return {
        "host": "10.99.0.1",
        "adminSecretRef": {"namespace": "default", "name": "pg-admin"},
        **extra,
    }


def test_a_mirror_targets_only_an_unprotected_environment_sharing_the_bucket() -> None:
    mirror = {"from": "production", "schedule": "0 4 * * *"}
    production = environment("production", backups=BACKUPS)
    qa = environment("qa", backups=BACKUPS, postgres=_postgres(mirror=mirror))
    environments = {"production": production, "qa": qa}
    assert mirror_refusal(qa, environments) is None
    assert scrub_needed(qa, environments)
    assert mirror_refusal(environment("develop", postgres=_postgres()), environments) is None
    protected = environment(
        "staging", protected=True, backups=BACKUPS, postgres=_postgres(mirror=mirror)
    )
    assert "never a mirror target" in str(mirror_refusal(protected, environments))
    itself = environment("qa", backups=BACKUPS, postgres=_postgres(mirror={**mirror, "from": "qa"}))
    assert "cannot mirror itself" in str(mirror_refusal(itself, environments))
    assert "to mirror from does not exist" in str(mirror_refusal(qa, {"qa": qa}))
    unscrubbed = service("api", {"qa": {"image": {"tag": "v1"}}}, postgres={"enabled": True})
    assert "set spec.postgres.scrub" in str(refused_mirror(unscrubbed, qa, environments))
    scrubbed = service(
        "api",
        {"qa": {"image": {"tag": "v1"}}},
        postgres={"enabled": True, "scrub": "update users set email = 'x'"},
    )
    assert refused_mirror(scrubbed, qa, environments) is None
    # An unprotected source needs no scrub.
    develop = environment("develop", backups=BACKUPS)
    from_develop = environment(
        "qa", backups=BACKUPS, postgres=_postgres(mirror={**mirror, "from": "develop"})
    )
    assert refused_mirror(unscrubbed, from_develop, {"develop": develop}) is None


def test_the_mirror_cronjob_fills_the_copy_and_carries_the_scrub() -> None:
    built = replace(
        inputs(),
        mirror=MirrorPlan(IMAGE, "production", "0 4 * * *", "api-develop-mirror", "delete from x"),
    )
    objects = build_backup_objects(built)
    cronjob = next(o for o in objects if o["metadata"]["name"] == naming.mirror_cronjob("api"))
    assert cronjob["metadata"]["labels"][MIRROR_LABEL] == "api"
    assert cronjob["spec"]["schedule"] == "0 4 * * *"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["metadata"]["labels"] == {ENVIRONMENT_LABEL: "develop", BACKUP_LABEL: "api"}
    container = pod["spec"]["containers"][0]
    assert container["command"][-1] == "mirror"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PGDATABASE"] == "api-develop-mirror"
    assert (env["BANDSY_RESTORE_SOURCE"], env["BANDSY_MIRROR_SCRUB"]) == (
        "production",
        "delete from x",
    )
    assert "pg-password-1234" not in json.dumps(cronjob)
    assert not [o for o in build_backup_objects(inputs()) if o["kind"] == "CronJob"][1:]


def test_the_databases_next_to_a_service_database_go_with_it() -> None:
    assert naming.side_databases("api-develop") == (
        "api-develop-verify",
        "api-develop-mirror",
        "api-develop-restore",
    )
    assert naming.exchange_database("api-develop") == "api-develop-swap"


async def test_a_mirror_removed_keeps_its_record_and_leaves_the_pods_alone() -> None:
    # Nothing is read or written for an environment without a mirror.
    runner = MirrorRunner(cast(KubeApi, None), cast(DatabaseReconciler, None))
    api = service("api", {"develop": {"image": {"tag": "v1"}}}, postgres={"enabled": True})
    account = AccountRef("develop", "postgres", "10.99.0.1:5432", "api-user", "api-develop")
    before = {"lastMirrored": {"job": "api-mirror-1"}, "jobs": ["api-mirror-1"]}
    step = await runner.step(api, environment("develop", backups=BACKUPS), {}, account, before)
    assert (step.record, step.marker, step.runs) == (before, "api-mirror-1", False)
    never = await runner.step(api, environment("develop"), {}, account, None)
    assert (never.record, never.marker) == (None, None)
    refused = await runner.step(api, environment("develop"), {}, account, {"refused": "no"})
    assert refused.record is None


# -- the restore step's decisions that need no I/O -------------------------------------------------

ACCOUNT = AccountRef("develop", "postgres", "10.99.0.1:5432", "api-user", "api-develop")


def _requesting(text: str | None) -> Any:
    annotations = {} if text is None else {annotation_key("develop"): text}
    api = service("api", {"develop": {"image": {"tag": "v1"}}}, postgres={"enabled": True})
    return api.model_copy(update={"meta": api.meta.model_copy(update={"annotations": annotations})})


async def _step(text: str | None, before: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    # Every case here is decided before any database or API call.
    runner = RestoreRunner(cast(KubeApi, None), cast(DatabaseReconciler, None))
    env = kwargs.pop("env", environment("develop", backups=BACKUPS))
    environments = kwargs.pop("environments", {"develop": env})
    return await runner.step(
        _requesting(text),
        env,
        environments,
        kwargs.pop("account", ACCOUNT),
        before,
        NOW,
        kwargs.pop("job_image", IMAGE),
    )


async def test_restore_requests_the_operator_refuses_or_has_done() -> None:
    assert (await _step(None)).record is None
    unreadable = await _step("{oops")
    assert unreadable.record["phase"] == "Refused"
    assert "not JSON" in unreadable.record["invalid"]
    assert (await _step("{oops", unreadable.record)).record == unreadable.record

    ask = RestoreRequest("r1", "develop", "latest").to_annotation()
    no_database = await _step(ask, account=None)
    assert "no PostgreSQL database here" in no_database.record["message"]
    no_image = await _step(ask, job_image=None)
    assert "does not know its own image" in no_image.record["message"]
    production = environment("production", backups=BACKUPS)
    scrubbed_only = await _step(
        RestoreRequest("r2", "production", "latest").to_annotation(),
        environments={"production": production},
    )
    assert "only scrubbed" in scrubbed_only.record["message"]
    done = {"id": "r1", "phase": "Restored", "restoredId": "r1", "previous": "api-develop-before"}
    again = await _step(ask, done)
    assert (again.record, again.marker, again.start) == (done, "r1", None)
    nothing = await _step(RestoreRequest("c1").to_annotation(), {"id": "r0", "phase": "Failed"})
    assert (nothing.record["id"], nothing.record["phase"]) == ("c1", "Refused")
    assert "nothing to clean up" in nothing.record["message"]


def test_a_restore_for_an_account_not_recorded_yet_waits_and_changes_nothing() -> None:
    env = environment("develop", backups=BACKUPS)
    done = {"id": "r0", "phase": "Restored", "restoredId": "r0"}
    quiet = RestoreRunner.deferred(_requesting(None), env, done)
    assert (quiet.record, quiet.marker, quiet.start, quiet.deferred) == (done, "r0", None, False)
    asked = RestoreRequest("r1", "develop", "latest").to_annotation()
    waiting = RestoreRunner.deferred(_requesting(asked), env, None)
    assert (waiting.record, waiting.marker, waiting.start, waiting.deferred) == (
        None,
        None,
        None,
        True,
    )


def test_what_a_job_wrote_as_it_ended() -> None:
    assert job_outcome(None) == {}
    assert job_outcome('{"restored": true}') == {"restored": True}
    assert job_outcome("Traceback: boom") == {"error": "Traceback: boom"}
    assert job_outcome("[1, 2]") == {}


async def test_a_refused_mirror_is_recorded_without_any_call() -> None:
    runner = MirrorRunner(cast(KubeApi, None), cast(DatabaseReconciler, None))
    mirror = {"from": "production", "schedule": "0 4 * * *"}
    qa = environment("qa", backups=BACKUPS, postgres=_postgres(mirror=mirror))
    environments = {"production": environment("production", backups=BACKUPS), "qa": qa}
    api = service("api", {"qa": {"image": {"tag": "v1"}}}, postgres={"enabled": True})
    step = await runner.step(api, qa, environments, ACCOUNT, {"lastFailed": {"job": "x"}})
    assert "set spec.postgres.scrub" in step.record["refused"]
    assert step.record["lastFailed"] == {"job": "x"}
    assert not step.runs
