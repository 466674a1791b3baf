"""Migrations and backups (SPEC §11) as the operator drives them, on the real control plane and
PostgreSQL, with the session's operator (a host process).

There is no Job controller or kubelet here: the tests play them (``workloads.finish_job``: a
pod that ran to its end, then the Job's terminal status), as other tests play the deployment
controller. The real node runs the same Jobs for real (tests/node).
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator import naming
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from waiting import eventually
from workloads import finish_job

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BANDSY = "bandsy.app/v1alpha1"


def uid() -> str:
    return uuid.uuid4().hex[:5]


async def env_status(kube: KubeApi, service: str, env: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", service))
    assert obj is not None
    return dict(((obj.get("status") or {}).get("environments") or {}).get(env) or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in status.get("conditions") or [] if c["type"] == type_), {})


async def job_of(kube: KubeApi, env: str, service: str, image: str) -> dict[str, Any]:
    async def created() -> dict[str, Any] | None:
        return await kube.get(
            ObjectRef("batch/v1", "Job", env, naming.migration_job(service, image))
        )

    job = await eventually(created)
    assert job is not None
    return job


async def deployed_image(kube: KubeApi, env: str, service: str) -> str | None:
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", env, service))
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def test_a_migration_holds_its_rollout_until_its_job_succeeds(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    env, name = f"mig-{uid()}", f"mig-{uid()}"
    kubectl.apply(environment_body(env, deletionPolicy="Delete"))
    body = service_body(name, tags(**{env: "v1"}), migrations={"args": ["migrate"]})
    kubectl.apply(body)
    repository = body["spec"]["image"]["repository"]

    # A first rollout migrates first: no Deployment until the Job succeeded.
    first = await job_of(kube, env, name, f"{repository}:v1")
    container = first["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["args"]) == (f"{repository}:v1", ["migrate"])

    async def migrating() -> bool:
        status = await env_status(kube, name, env)
        blocked = condition(status, "PromotionBlocked")
        assert blocked.get("reason") == "Migrating", blocked
        assert status["summary"] == "v1 (migrating)"
        return True

    await eventually(migrating)
    assert await deployed_image(kube, env, name) is None
    await finish_job(kube, first, succeeded=True)

    async def rolled(image: str) -> bool:
        return await deployed_image(kube, env, name) == image

    await eventually(lambda: rolled(f"{repository}:v1"))
    await make_deployment_ready(kube, env, name)

    # A failed migration keeps v1; deleting its Job runs it again.
    body["spec"]["environments"][env]["image"]["tag"] = "v2"
    kubectl.apply(body)
    second = await job_of(kube, env, name, f"{repository}:v2")
    await finish_job(kube, second, succeeded=False, message="boom")

    async def failed() -> dict[str, Any]:
        blocked = condition(await env_status(kube, name, env), "PromotionBlocked")
        assert blocked.get("reason") == "MigrationFailed", blocked
        return blocked

    blocked = await eventually(failed)
    assert f"delete job {second['metadata']['name']}" in blocked["message"]
    assert "v1 keeps running" in blocked["message"]
    assert await deployed_image(kube, env, name) == f"{repository}:v1"
    kubectl("-n", env, "delete", "job", second["metadata"]["name"], "--wait=true")

    async def again() -> dict[str, Any] | None:
        job = await job_of(kube, env, name, f"{repository}:v2")
        return job if job["metadata"]["uid"] != second["metadata"]["uid"] else None

    third = await eventually(again)
    assert third is not None
    await finish_job(kube, third, succeeded=True)
    await eventually(lambda: rolled(f"{repository}:v2"))

    async def recorded() -> dict[str, Any]:
        # The Deployment is applied before the reconcile writes the status.
        status = await env_status(kube, name, env)
        assert [(m["image"], m["state"]) for m in status["migrations"]] == [
            (f"{repository}:v2", "Succeeded"),
            (f"{repository}:v1", "Succeeded"),
        ]
        return status

    status = await eventually(recorded)
    assert status["history"][0]["migrationSeconds"] >= 0
    # The older migration's Job went once the newer one succeeded.
    v1_job = ObjectRef("batch/v1", "Job", env, first["metadata"]["name"])
    await eventually(lambda: _gone(kube, v1_job))
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def _gone(kube: KubeApi, ref: ObjectRef) -> bool:
    return await kube.get(ref) is None


S3_KEYS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret-1234"}


def backed_up_environment(kubectl: KubectlRunner, servers: dict[str, str], env: str) -> None:
    """``env`` on the session's PostgreSQL, backed up to its S3 API; the CA Secret it names,
    ``<env>-ca``, is the test's to make."""
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{env}-s3", "namespace": "default"},
            "stringData": S3_KEYS,
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{env}-pg", "namespace": "default"},
            "stringData": {
                "username": servers["BANDSY_PG_ADMIN_USER"],
                "password": servers["BANDSY_PG_ADMIN_PASSWORD"],
            },
        },
    )
    backups = {
        "schedule": "0 3 * * *",
        "storage": {
            "s3": {
                "endpoint": servers["BANDSY_S3_ENDPOINT"],
                "bucket": "bandsy-backups",
                "credentialsSecretRef": {"namespace": "default", "name": f"{env}-s3"},
                "caSecretRef": {"namespace": "default", "name": f"{env}-ca"},
            }
        },
    }
    postgres = {
        "host": servers["BANDSY_PG_HOST"],
        "port": int(servers["BANDSY_PG_PORT"]),
        "adminSecretRef": {"namespace": "default", "name": f"{env}-pg"},
    }
    kubectl.apply(
        environment_body(env, postgres=postgres, backups=backups, deletionPolicy="Delete")
    )


def ca_secret(env: str) -> dict[str, Any]:
    ca = "-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{env}-ca", "namespace": "default"},
        "stringData": {"ca.crt": ca},
    }


async def test_backup_outcomes_reach_the_status(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], operator: OperatorProcess
) -> None:
    env, name = f"bk-{uid()}", f"bk-{uid()}"
    keys = S3_KEYS
    backed_up_environment(kubectl, servers, env)

    async def environment_condition(reason: str) -> bool:
        found = await kube.get(ObjectRef(BANDSY, "BandsyEnvironment", "", env))
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        storage = next((c for c in conditions if c["type"] == "BackupStorage"), {})
        assert storage.get("reason") == reason, storage
        return True

    # The CA Secret it names is missing: said so, and nothing is copied.
    await eventually(lambda: environment_condition("BackupStorageSecretMissing"))
    kubectl.apply(ca_secret(env))
    kubectl("annotate", "benv", env, f"test/touch={uid()}")  # Secrets are not watched
    await eventually(lambda: environment_condition("BackupStorageReady"))
    copied = await kube.get(ObjectRef("v1", "Secret", env, naming.BACKUP_STORAGE_SECRET))
    assert copied is not None
    decoded = {k: base64.b64decode(v).decode() for k, v in copied["data"].items()}
    assert decoded == {**keys, "ca.crt": ca_secret(env)["stringData"]["ca.crt"]}

    kubectl.apply(service_body(name, tags(**{env: "v1"}), postgres={"enabled": True}))
    cronjob_ref = ObjectRef("batch/v1", "CronJob", env, naming.backup_cronjob(name))
    cronjob = await eventually(lambda: kube.get(cronjob_ref))
    assert cronjob is not None
    template = cronjob["spec"]["jobTemplate"]
    container = template["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == operator.env["BANDSY_JOB_IMAGE"]

    async def backup_ready(reason: str) -> dict[str, Any]:
        ready = condition(await env_status(kube, name, env), "BackupReady")
        assert ready.get("reason") == reason, ready
        return ready

    await eventually(lambda: backup_ready("AwaitingFirstBackup"))

    async def run(job_name: str, succeeded: bool, outcome: dict[str, Any]) -> None:
        job = await kube.create(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": job_name, "namespace": env, **template["metadata"]},
                "spec": template["spec"],
            }
        )
        await finish_job(kube, job, succeeded=succeeded, message=json.dumps(outcome))

    verified = {
        "verified": True,
        "taken": "20261201T030000Z",
        "key": f"{env}/{name}/20261201T030000Z.dump",
        "size": 4096,
        "tables": 3,
        "rows": 42,
        "seconds": 2,
        "verifiedBackups": ["20261201T030000Z"],
    }
    await run(f"{name}-backup-1", True, verified)
    ready = await eventually(lambda: backup_ready("BackupVerified"))
    assert "42 rows in 3 tables" in ready["message"]
    await run(f"{name}-backup-2", False, {"verified": False, "error": "S3 unreachable"})
    failed = await eventually(lambda: backup_ready("BackupFailed"))
    assert "S3 unreachable" in failed["message"]
    assert "20261201T030000Z" in failed["message"]
    status = await env_status(kube, name, env)
    assert status["backup"]["lastVerified"]["taken"] == "20261201T030000Z"
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", name))
    assert obj is not None
    top = condition(obj["status"], "BackupReady")
    assert (top.get("status"), top.get("reason")) == ("False", "BackupFailed")
    assert keys["AWS_SECRET_ACCESS_KEY"] not in json.dumps(obj)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def test_an_operator_that_does_not_know_its_image_keeps_the_backup_cronjob(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], operator: OperatorProcess
) -> None:
    """The image runs the backups: an operator that cannot tell it (its own pod already gone,
    say, as a standby's that takes the Lease while its pod is deleted) says so and deletes
    nothing, neither the CronJob nor, with it, the Jobs whose outcomes it has not taken in."""
    env, name = f"bki-{uid()}", f"bki-{uid()}"
    kubectl.apply(ca_secret(env))
    backed_up_environment(kubectl, servers, env)
    kubectl.apply(service_body(name, tags(**{env: "v1"}), postgres={"enabled": True}))
    cronjob_ref = ObjectRef("batch/v1", "CronJob", env, naming.backup_cronjob(name))
    policy_ref = ObjectRef("networking.k8s.io/v1", "NetworkPolicy", env, naming.backup_policy(name))
    cronjob = await eventually(lambda: kube.get(cronjob_ref))
    assert cronjob is not None

    image = operator.env.pop("BANDSY_JOB_IMAGE")
    operator.stop()
    operator.start()
    try:

        async def image_unknown() -> bool:
            ready = condition(await env_status(kube, name, env), "BackupReady")
            assert ready.get("reason") == "BackupImageUnknown", ready
            return True

        await eventually(image_unknown)
        kept = await kube.get(cronjob_ref)
        assert kept is not None
        assert kept["metadata"]["uid"] == cronjob["metadata"]["uid"]
        assert await kube.get(policy_ref) is not None
    finally:
        operator.stop()
        operator.env["BANDSY_JOB_IMAGE"] = image
        operator.start()
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")
