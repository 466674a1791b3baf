"""A restore (SPEC §11) as a person asks for it and the operator carries it out, on the real
control plane, PostgreSQL and S3 API, with the session's operator.

There is no kubelet here: the tests play it for the operator's Jobs by running the Job's own
program on this host with the environment its pod would get (its variables, its Secrets'
keys), then report the pod's end and the Job's (``workloads.finish_job``). The real node runs
the same Jobs in pods (tests/node).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
import pytest_asyncio

from bandsy_dev.local_env import postgres_admin_args
from bandsy_operator import naming
from bandsy_operator.constants import RESTORED_ANNOTATION
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.restores import RestoreRequest, annotation_key
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from waiting import eventually
from workloads import finish_job

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
BANDSY = "bandsy.app/v1alpha1"
BIN = Path(sys.executable).parent


def uid() -> str:
    return uuid.uuid4().hex[:5]


async def pod_environment(
    kube: KubeApi, namespace: str, container: dict[str, Any]
) -> dict[str, str]:
    """The variables the kubelet would give ``container``: envFrom Secrets, then env (which
    wins), values from Secrets resolved."""

    async def secret(name: str) -> dict[str, str]:
        found = await kube.get(ObjectRef("v1", "Secret", namespace, name))
        assert found is not None, f"{namespace}/{name} is missing"
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}

    values: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        values.update(await secret(source["secretRef"]["name"]))
    for item in container.get("env") or []:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            values[item["name"]] = (await secret(ref["name"]))[ref["key"]]
        else:  # the API server leaves out an empty value
            values[item["name"]] = item.get("value", "")
    return values


async def run_job_here(
    kube: KubeApi, job: dict[str, Any], work: Path, ca_file: str
) -> dict[str, Any]:
    """Play the kubelet for one of the operator's Jobs: its program, on this host."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = await pod_environment(kube, job["metadata"]["namespace"], container)
    # Paths of the pod's volumes, on this host.
    env.update(BANDSY_BACKUP_WORK_DIR=str(work), AWS_CA_BUNDLE=ca_file)
    command = container["command"]
    assert command[:3] == ["python", "-m", "bandsy_operator.backup"], command
    done = subprocess.run(
        [sys.executable, *command[1:]],
        env={**os.environ, **env},  # coverage measures the program through its variables
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    outcome: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    await finish_job(kube, job, succeeded=done.returncode == 0, message=lines[-1] if lines else "")
    assert env["PGPASSWORD"] not in done.stdout + done.stderr
    return outcome


async def service_execute(creds: dict[str, str], sql: str) -> None:
    await service_sql(creds, sql, fetch=False)


async def service_sql(creds: dict[str, str], sql: str, fetch: bool = True) -> list[asyncpg.Record]:
    """As the service (its projection): rows of one query, or run statements."""
    conn = await asyncpg.connect(
        host=creds["PGHOST"],
        port=int(creds["PGPORT"]),
        user=creds["PGUSER"],
        password=creds["PGPASSWORD"],
        database=creds["PGDATABASE"],
        ssl="require",
    )
    try:
        if not fetch:
            await conn.execute(sql)
            return []
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def bandsyctl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    return subprocess.run(
        [str(BIN / "bandsyctl"), *args], capture_output=True, text=True, env=env, timeout=120
    )


def storage_for(kubectl: KubectlRunner, servers: dict[str, str], bucket: str) -> dict[str, Any]:
    """A bucket of the harness's S3 API, and ``spec.backups`` for it (keys and CA in a
    Secret named after it)."""
    boto3.client(
        "s3",
        endpoint_url=servers["BANDSY_S3_ENDPOINT"],
        region_name=servers["BANDSY_S3_REGION"],
        aws_access_key_id=servers["BANDSY_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=servers["BANDSY_S3_SECRET_ACCESS_KEY"],
        verify=servers["BANDSY_S3_CA_FILE"],
    ).create_bucket(Bucket=bucket)
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": bucket, "namespace": "default"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": servers["BANDSY_S3_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": servers["BANDSY_S3_SECRET_ACCESS_KEY"],
                "ca.crt": Path(servers["BANDSY_S3_CA_FILE"]).read_text(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{bucket}-pg", "namespace": "default"},
            "stringData": {
                "username": servers["BANDSY_PG_ADMIN_USER"],
                "password": servers["BANDSY_PG_ADMIN_PASSWORD"],
            },
        },
    )
    storage = {"namespace": "default", "name": bucket}
    return {
        "schedule": "0 3 * * *",
        "storage": {
            "s3": {
                "endpoint": servers["BANDSY_S3_ENDPOINT"],
                "bucket": bucket,
                "region": servers["BANDSY_S3_REGION"],
                "credentialsSecretRef": storage,
                "caSecretRef": storage,
            }
        },
    }


def postgres_for(servers: dict[str, str], bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": servers["BANDSY_PG_HOST"],
        "port": int(servers["BANDSY_PG_PORT"]),
        "sslMode": "require",
        "adminSecretRef": {"namespace": "default", "name": f"{bucket}-pg"},
        **extra,
    }


async def projection(kube: KubeApi, env: str, name: str) -> dict[str, str]:
    secret = await kube.get(ObjectRef("v1", "Secret", env, f"{name}-postgres"))
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


async def back_up_here(
    kube: KubeApi, env: str, name: str, work: Path, ca_file: str, job: str
) -> dict[str, Any]:
    """One run of the service's backup CronJob in ``env``, played here."""
    cronjob = await eventually(
        lambda: kube.get(ObjectRef("batch/v1", "CronJob", env, naming.backup_cronjob(name)))
    )
    assert cronjob is not None
    template = cronjob["spec"]["jobTemplate"]
    created = await kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job, "namespace": env, **template["metadata"]},
            "spec": template["spec"],
        }
    )
    outcome = await run_job_here(kube, created, work, ca_file)
    assert outcome["verified"] is True, outcome
    return outcome


@dataclass
class Restorable:
    """A service with rows in its database, in an environment that backs up to the harness's
    S3 API, and one verified backup of those rows."""

    env: str
    name: str
    environment: dict[str, Any]  # as applied
    creds: dict[str, str]  # its projection
    backup: dict[str, Any]  # the backup Job's outcome
    work: Path
    ca_file: str

    async def run(self, kube: KubeApi, job: dict[str, Any]) -> dict[str, Any]:
        return await run_job_here(kube, job, self.work, self.ca_file)


@pytest_asyncio.fixture(loop_scope="session")
async def restorable(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    operator: OperatorProcess,
    tmp_path: Path,
) -> AsyncIterator[Restorable]:
    env, name = f"rs-{uid()}", f"rs-{uid()}"
    bucket = f"bandsy-{env}"
    backups = storage_for(kubectl, servers, bucket)
    postgres = postgres_for(servers, bucket)
    environment = environment_body(env, postgres=postgres, backups=backups, deletionPolicy="Delete")
    kubectl.apply(environment)
    kubectl.apply(
        service_body(
            name, tags(**{env: "v1"}), postgres={"enabled": True, "reclaimPolicy": "Delete"}
        )
    )

    creds = await eventually(lambda: projection(kube, env, name), timeout=60)
    await service_execute(
        creds,
        "create table notes (id int primary key, body text);"
        "insert into notes select n, 'note ' || n from generate_series(1, 300) n;",
    )
    ca_file = servers["BANDSY_S3_CA_FILE"]
    backed_up = await back_up_here(kube, env, name, tmp_path, ca_file, f"{name}-backup-1")

    yield Restorable(
        env, name, environment, creds, backed_up, tmp_path, servers["BANDSY_S3_CA_FILE"]
    )
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def restore_record(kube: KubeApi, name: str, env: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", name))
    status = (((obj or {}).get("status") or {}).get("environments") or {}).get(env) or {}
    return dict(status.get("restore") or {})


async def restore_in_phase(kube: KubeApi, name: str, env: str, phase: str) -> dict[str, Any]:
    found = await restore_record(kube, name, env)
    assert found.get("phase") == phase, found
    return found


async def requested(kube: KubeApi, name: str, env: str) -> dict[str, Any]:
    """The restore Job of the service's current request."""
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", name))
    assert obj is not None
    request = json.loads(obj["metadata"]["annotations"][f"bandsy.app/restore.{env}"])["id"]
    job_ref = ObjectRef("batch/v1", "Job", env, naming.restore_job(name, request))
    job = await eventually(lambda: kube.get(job_ref))
    assert job is not None
    return job


async def test_a_restore_brings_back_the_backup_and_keeps_the_replaced_data_until_cleanup(
    kube: KubeApi, servers: dict[str, str], restorable: Restorable
) -> None:
    env, name, creds = restorable.env, restorable.name, restorable.creds
    # The damage a restore undoes.
    await service_execute(creds, "delete from notes where id > 5; update notes set body = 'lost'")

    admin = servers["KUBECONFIG"]
    asked = bandsyctl(admin, "restore", name, "--env", env, "--from", f"{env}@latest", "--yes")
    assert asked.returncode == 0, asked.stderr
    restore_job = await requested(kube, name, env)
    request = restore_job["metadata"]["annotations"]["bandsy.app/restore-request"]
    assert creds["PGPASSWORD"] not in json.dumps(restore_job)

    async def restoring() -> bool:
        # The Job is made before the reconcile writes the status.
        found = await restore_record(kube, name, env)
        assert (found.get("id"), found.get("phase")) == (request, "Restoring"), found
        return True

    await eventually(restoring)
    # A second request while one runs is refused by bandsyctl.
    again = bandsyctl(admin, "restore", name, "--env", env, "--from", f"{env}@latest", "--yes")
    assert again.returncode == 1
    assert "under way" in again.stderr

    restored = await restorable.run(kube, restore_job)
    assert restored["restored"] is True, restored

    done = await eventually(lambda: restore_in_phase(kube, name, env, "Restored"))
    assert done["backup"] == restorable.backup["taken"]
    previous = naming.previous_database(creds["PGDATABASE"], request)
    assert done["previous"] == previous
    rows = await service_sql(creds, "select count(*) as n, min(body) as b from notes")
    assert (rows[0]["n"], rows[0]["b"]) == (300, "note 1")
    count = "select count(*) as n from notes"
    replaced = await service_sql({**creds, "PGDATABASE": previous}, count)
    assert replaced[0]["n"] == 5

    async def pods_restart() -> bool:
        deployment = await kube.get(ObjectRef("apps/v1", "Deployment", env, name))
        assert deployment is not None
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations.get(RESTORED_ANNOTATION) == request, annotations
        return True

    await eventually(pods_restart)

    cleanup = bandsyctl(admin, "restore", name, "--env", env, "--cleanup", "--yes", "--wait", "60")
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"dropped {previous}" in cleanup.stdout
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await service_sql({**creds, "PGDATABASE": previous}, "select 1")
    # The pods do not restart for a cleanup.
    await pods_restart()


async def test_a_restore_asked_for_with_its_environment_runs_once_the_account_exists(
    kube: KubeApi, kubectl: KubectlRunner, restorable: Restorable
) -> None:
    """The service enters an environment, asking at once for a restore there: its account
    there is new, so its server learns it only after the status records it; the restore,
    which works on that server, waits for that and then runs."""
    env, name = f"rs2-{uid()}", restorable.name
    spec = restorable.environment["spec"]
    # A role of its own there, as new as the database.
    postgres = {**spec["postgres"], "userTemplate": "{service}-{env}"}
    kubectl.apply(
        environment_body(env, postgres=postgres, backups=spec["backups"], deletionPolicy="Delete")
    )
    body = service_body(
        name,
        tags(**{restorable.env: "v1", env: "v1"}),
        postgres={"enabled": True, "reclaimPolicy": "Delete"},
    )
    request = RestoreRequest(f"{uid()}-0001", restorable.env)
    body["metadata"]["annotations"] = {annotation_key(env): request.to_annotation()}
    kubectl.apply(body)

    restore_job = await requested(kube, name, env)
    restored = await restorable.run(kube, restore_job)
    assert restored["restored"] is True, restored

    await eventually(lambda: restore_in_phase(kube, name, env, "Restored"))
    creds = await projection(kube, env, name)
    rows = await service_sql(creds, "select count(*) as n from notes")
    assert rows[0]["n"] == 300
    del body["spec"]["environments"][env]
    kubectl.apply(body)
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def test_a_restore_that_fails_or_is_refused_changes_nothing(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], restorable: Restorable
) -> None:
    env, name, creds = restorable.env, restorable.name, restorable.creds
    admin = servers["KUBECONFIG"]
    gone = f"{env}@20200101T000000Z"
    asked = bandsyctl(admin, "restore", name, "--env", env, "--from", gone, "--yes")
    assert asked.returncode == 0, asked.stderr
    job = await requested(kube, name, env)
    target = naming.restore_database(creds["PGDATABASE"])
    assert await service_sql({**creds, "PGDATABASE": target}, "select 1")  # made for the Job
    outcome = await restorable.run(kube, job)
    assert outcome["restored"] is False

    async def failed() -> dict[str, Any]:
        found = await restore_record(kube, name, env)
        assert found.get("phase") == "Failed", found
        return found

    record = await eventually(failed)
    assert "is not a verified backup" in record["message"]
    assert restorable.backup["taken"] in record["message"]
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await service_sql({**creds, "PGDATABASE": target}, "select 1")
    rows = await service_sql(creds, "select count(*) as n from notes")
    assert rows[0]["n"] == 300
    # Asked past bandsyctl: the operator refuses what bandsyctl would, and says why.
    kubectl(
        "annotate",
        "--overwrite",
        "bsvc",
        name,
        f'bandsy.app/restore.{env}={{"id": "x1", "from": "nowhere@latest"}}',
    )

    async def refused() -> dict[str, Any]:
        found = await restore_record(kube, name, env)
        assert (found.get("id"), found.get("phase")) == ("x1", "Refused"), found
        return found

    assert "does not exist" in (await eventually(refused))["message"]
    kubectl("annotate", "--overwrite", "bsvc", name, f"bandsy.app/restore.{env}=not json")

    async def unreadable() -> dict[str, Any]:
        found = await restore_record(kube, name, env)
        assert "not JSON" in found.get("invalid", ""), found
        return found

    await eventually(unreadable)
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", env, name))
    assert deployment is not None
    assert RESTORED_ANNOTATION not in deployment["spec"]["template"]["metadata"]["annotations"]


async def pg_dump_text(servers: dict[str, str], database: str) -> str:
    """A plain-text dump of ``database``, as the admin: every value in it."""
    admin = postgres_admin_args(servers)
    env = {
        **os.environ,
        "PGHOST": str(admin["host"]),
        "PGPORT": str(admin["port"]),
        "PGUSER": str(admin["user"]),
        "PGPASSWORD": str(admin["password"]),
        "PGSSLMODE": "require",
    }
    done = subprocess.run(
        ["pg_dump", "--format=plain", f"--dbname={database}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


async def test_a_mirror_brings_only_scrubbed_data_from_a_protected_environment(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    source, target, name = f"mp-{uid()}", f"mq-{uid()}", f"mi-{uid()}"
    bucket = f"bandsy-{source}"
    backups = storage_for(kubectl, servers, bucket)
    kubectl.apply(
        environment_body(
            source,
            protected=True,
            # Its own role: a protected environment refuses to share one with any unprotected
            # environment on the server (the samples', say).
            postgres=postgres_for(servers, bucket, userTemplate="{service}-{env}-user"),
            backups=backups,
            deletionPolicy="Delete",
        ),
        environment_body(
            target,
            postgres=postgres_for(
                servers,
                bucket,
                mirror={"from": source, "schedule": "0 4 * * *"},
                userTemplate="{service}-{env}-user",
            ),
            backups=backups,
            deletionPolicy="Delete",
        ),
    )
    originals = ["ada@lovelace.example", "grace@hopper.example"]
    body = service_body(name, tags(**{source: "v1", target: "v1"}), postgres={"enabled": True})
    kubectl.apply(body)

    async def refused() -> bool:
        mirror = await mirror_record(kube, name, target)
        assert "set spec.postgres.scrub" in mirror.get("refused", ""), mirror
        return True

    await eventually(refused)  # a protected source: no mirror without a scrub
    cronjob_ref = ObjectRef("batch/v1", "CronJob", target, naming.mirror_cronjob(name))
    assert await kube.get(cronjob_ref) is None
    scrub = "update people set email = 'person-' || id || '@example.invalid'"
    body["spec"]["postgres"]["scrub"] = scrub
    kubectl.apply(body)
    cronjob = await eventually(lambda: kube.get(cronjob_ref))
    assert cronjob is not None

    live = await eventually(lambda: projection(kube, source, name), timeout=60)
    await service_execute(
        live,
        "create table people (id int primary key, email text not null);"
        "insert into people values (1, 'ada@lovelace.example'), (2, 'grace@hopper.example');",
    )
    ca_file = servers["BANDSY_S3_CA_FILE"]
    await back_up_here(kube, source, name, tmp_path, ca_file, f"{name}-backup-1")
    # A restore there replaces protected data: bandsyctl asks for the flag first.
    admin = servers["KUBECONFIG"]
    asked = bandsyctl(admin, "restore", name, "--env", source, "--from", f"{source}@latest")
    assert asked.returncode == 1
    assert "--allow-production" in asked.stderr
    copy = await eventually(lambda: projection(kube, target, name), timeout=60)
    template = cronjob["spec"]["jobTemplate"]

    async def mirror_run(job: str) -> dict[str, Any]:
        created = await kube.create(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": job, "namespace": target, **template["metadata"]},
                "spec": template["spec"],
            }
        )
        return await run_job_here(kube, created, tmp_path, ca_file)

    outcome = await mirror_run(f"{name}-mirror-1")
    assert outcome["mirrored"] is True, outcome

    async def swapped() -> dict[str, Any]:
        mirror = await mirror_record(kube, name, target)
        assert (mirror.get("lastMirrored") or {}).get("job") == f"{name}-mirror-1", mirror
        return mirror

    await eventually(swapped)
    rows = await service_sql(copy, "select email from people order by id")
    assert [r["email"] for r in rows] == ["person-1@example.invalid", "person-2@example.invalid"]
    dumped = await pg_dump_text(servers, copy["PGDATABASE"])
    assert "person-1@example.invalid" in dumped
    for original in originals:
        assert original not in dumped
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", target, name))
    assert deployment is not None
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations.get("bandsy.app/mirrored") == f"{name}-mirror-1"

    # A scrub that fails: the target keeps its data; no unscrubbed copy is left.
    body["spec"]["postgres"]["scrub"] = "update people set nowhere = 1"
    kubectl.apply(body)

    async def new_scrub() -> dict[str, Any]:
        found = await kube.get(cronjob_ref)
        assert found is not None
        container = found["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        values = {e["name"]: e.get("value") for e in container["env"]}
        assert values["BANDSY_MIRROR_SCRUB"] == "update people set nowhere = 1"
        return dict(found)

    template = (await eventually(new_scrub))["spec"]["jobTemplate"]
    outcome = await mirror_run(f"{name}-mirror-2")
    assert outcome["mirrored"] is False

    async def failed() -> dict[str, Any]:
        mirror = await mirror_record(kube, name, target)
        assert (mirror.get("lastFailed") or {}).get("job") == f"{name}-mirror-2", mirror
        return mirror

    assert "the scrub failed" in (await eventually(failed))["lastFailed"]["reason"]
    rows = await service_sql(copy, "select email from people order by id")
    assert [r["email"] for r in rows] == ["person-1@example.invalid", "person-2@example.invalid"]
    leftover = await pg_dump_text(servers, naming.mirror_database(copy["PGDATABASE"]))
    for original in originals:
        assert original not in leftover
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", source, target, "--wait=true", "--timeout=60s")


async def mirror_record(kube: KubeApi, name: str, env: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", name))
    status = (((obj or {}).get("status") or {}).get("environments") or {}).get(env) or {}
    return dict(status.get("mirror") or {})
