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

from bandsy_operator import naming
from bandsy_operator.constants import RESTORED_ANNOTATION
from bandsy_operator.kube import KubeApi, ObjectRef
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


@dataclass
class Restorable:
    """A service with rows in its database, in an environment that backs up to the harness's
    S3 API, and one verified backup of those rows."""

    env: str
    name: str
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
    ca = Path(servers["BANDSY_S3_CA_FILE"]).read_text()
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
            "metadata": {"name": f"{env}-s3", "namespace": "default"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": servers["BANDSY_S3_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": servers["BANDSY_S3_SECRET_ACCESS_KEY"],
                "ca.crt": ca,
            },
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
    storage = {"namespace": "default", "name": f"{env}-s3"}
    backups = {
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
    postgres = {
        "host": servers["BANDSY_PG_HOST"],
        "port": int(servers["BANDSY_PG_PORT"]),
        "sslMode": "require",
        "adminSecretRef": {"namespace": "default", "name": f"{env}-pg"},
    }
    kubectl.apply(
        environment_body(env, postgres=postgres, backups=backups, deletionPolicy="Delete")
    )
    kubectl.apply(
        service_body(
            name, tags(**{env: "v1"}), postgres={"enabled": True, "reclaimPolicy": "Delete"}
        )
    )

    async def projection() -> dict[str, str]:
        secret = await kube.get(ObjectRef("v1", "Secret", env, f"{name}-postgres"))
        assert secret is not None
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

    creds = await eventually(projection, timeout=60)
    await service_execute(
        creds,
        "create table notes (id int primary key, body text);"
        "insert into notes select n, 'note ' || n from generate_series(1, 300) n;",
    )
    cronjob = await eventually(
        lambda: kube.get(ObjectRef("batch/v1", "CronJob", env, naming.backup_cronjob(name)))
    )
    assert cronjob is not None
    template = cronjob["spec"]["jobTemplate"]
    backup_job = await kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{name}-backup-1", "namespace": env, **template["metadata"]},
            "spec": template["spec"],
        }
    )
    backed_up = await run_job_here(kube, backup_job, tmp_path, servers["BANDSY_S3_CA_FILE"])
    assert backed_up["verified"] is True, backed_up

    yield Restorable(env, name, creds, backed_up, tmp_path, servers["BANDSY_S3_CA_FILE"])
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def restore_record(kube: KubeApi, name: str, env: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef(BANDSY, "BandsyService", "", name))
    status = (((obj or {}).get("status") or {}).get("environments") or {}).get(env) or {}
    return dict(status.get("restore") or {})


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
    assert (await restore_record(kube, name, env))["phase"] == "Restoring"
    # A second request while one runs is refused by bandsyctl.
    again = bandsyctl(admin, "restore", name, "--env", env, "--from", f"{env}@latest", "--yes")
    assert again.returncode == 1
    assert "under way" in again.stderr

    restored = await restorable.run(kube, restore_job)
    assert restored["restored"] is True, restored

    async def swapped() -> dict[str, Any]:
        found = await restore_record(kube, name, env)
        assert found.get("phase") == "Restored", found
        return found

    done = await eventually(swapped)
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
