"""The backup Job's program (SPEC §11) against the real PostgreSQL and S3 API of the harness:
``python -m bandsy_operator.backup`` as a Job runs it, with a service's own role.

The role, its database and its scratch database are made by the operator's own PostgreSQL
backend, as for a service in an environment with backups.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import boto3
import pytest
import pytest_asyncio

from bandsy_dev.local_env import postgres_admin_args
from bandsy_dev.procs import free_port
from bandsy_operator import naming
from bandsy_operator.backends import Account, AdminCredentials, Server
from bandsy_operator.backends.postgres import PostgresBackend
from bandsy_operator.backup.manifest import Manifest
from bandsy_operator.naming import scratch_database


@dataclass
class ServiceDatabase:
    user: str
    password: str
    database: str
    bucket: str
    env: dict[str, str]  # what the CronJob gives the Job, pointed at the harness
    server: Server
    account: Account
    backend: PostgresBackend  # the operator's, with the harness's admin

    def run(self, *args: str, **overrides: str) -> tuple[int, dict[str, Any], str]:
        """One backup (or ``restore``); its exit code, its outcome (stdout's JSON), stderr."""
        done = subprocess.run(
            [sys.executable, "-m", "bandsy_operator.backup", *args],
            env={**self.env, **overrides},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


def s3_client(servers: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=servers["BANDSY_S3_ENDPOINT"],
        region_name=servers["BANDSY_S3_REGION"],
        aws_access_key_id=servers["BANDSY_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=servers["BANDSY_S3_SECRET_ACCESS_KEY"],
        verify=servers["BANDSY_S3_CA_FILE"],
    )


def keys(servers: dict[str, str], bucket: str) -> list[str]:
    listed = s3_client(servers).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listed.get("Contents") or [])


@pytest_asyncio.fixture
async def service_db(
    servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceDatabase]:
    name = f"bk-{uuid.uuid4().hex[:8]}"
    user, database, password = f"{name}-user", f"{name}-develop", secrets.token_urlsafe(24)
    admin = AdminCredentials(servers["BANDSY_PG_ADMIN_USER"], servers["BANDSY_PG_ADMIN_PASSWORD"])

    async def load() -> AdminCredentials:
        return admin

    server = Server(servers["BANDSY_PG_HOST"], int(servers["BANDSY_PG_PORT"]), "require", load)
    account = Account(user, database=database, scratch_database=scratch_database(database))
    backend = PostgresBackend()
    await backend.ensure(server, account, password)
    conn = await asyncpg.connect(
        host=server.host,
        port=server.port,
        user=user,
        password=password,
        database=database,
        ssl="require",
    )
    try:
        await conn.execute(
            "create schema shop;"
            "create table shop.orders (id bigint primary key, note text);"
            "insert into shop.orders select n, 'order ' || n from generate_series(1, 2500) n;"
            "create table public.users (email text primary key);"
            "insert into public.users values ('ada@example.com'), ('grace@example.com');"
        )
    finally:
        await conn.close()
    bucket = name
    s3_client(servers).create_bucket(Bucket=bucket)
    work = tmp_path_factory.mktemp("backup-work")
    env = {
        **os.environ,  # coverage measures the program through its variables too
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": database,
        "PGSSLMODE": "require",
        "AWS_ACCESS_KEY_ID": servers["BANDSY_S3_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": servers["BANDSY_S3_SECRET_ACCESS_KEY"],
        "AWS_CA_BUNDLE": servers["BANDSY_S3_CA_FILE"],
        "BANDSY_SERVICE": name,
        "BANDSY_ENVIRONMENT": "develop",
        "BANDSY_BACKUP_BUCKET": bucket,
        "BANDSY_BACKUP_PREFIX": "backups",
        "BANDSY_BACKUP_ENDPOINT": servers["BANDSY_S3_ENDPOINT"],
        "BANDSY_BACKUP_REGION": servers["BANDSY_S3_REGION"],
        "BANDSY_BACKUP_SCRATCH_DATABASE": scratch_database(database),
        "BANDSY_BACKUP_RETENTION_COUNT": "2",
        "BANDSY_BACKUP_WORK_DIR": str(work),
    }
    try:
        yield ServiceDatabase(user, password, database, bucket, env, server, account, backend)
    finally:
        await backend.delete(server, account)
        await backend.close()


async def scratch_tables(servers: dict[str, str], database: str) -> int:
    args = {**postgres_admin_args(servers), "database": scratch_database(database)}
    conn = await asyncpg.connect(**args, ssl="require")
    try:
        return int(
            await conn.fetchval(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')"
            )
        )
    finally:
        await conn.close()


async def test_a_backup_is_dumped_restored_checked_and_only_then_listed(
    servers: dict[str, str], service_db: ServiceDatabase
) -> None:
    code, outcome, stderr = service_db.run()
    assert code == 0, stderr
    assert outcome["verified"] is True
    assert outcome["tables"] == 2
    assert outcome["rows"] == 2502
    taken = outcome["taken"]
    folder = f"backups/develop/{service_db.env['BANDSY_SERVICE']}/"
    assert keys(servers, service_db.bucket) == [f"{folder}{taken}.dump", f"{folder}{taken}.json"]
    client = s3_client(servers)
    manifest = Manifest.from_json(
        client.get_object(Bucket=service_db.bucket, Key=f"{folder}{taken}.json")["Body"].read()
    )
    assert manifest.tables == {"public.users": 2, "shop.orders": 2500}
    assert manifest.database == service_db.database
    assert manifest.server_version.startswith("15")
    dumped = client.get_object(Bucket=service_db.bucket, Key=manifest.dump_key)["Body"].read()
    assert hashlib.sha256(dumped).hexdigest() == manifest.sha256 == outcome["sha256"]
    assert len(dumped) == manifest.size
    assert outcome["verifiedBackups"] == [taken]
    # The restored copy was checked and is gone again.
    assert await scratch_tables(servers, service_db.database) == 0
    # No secret in what the Job tells or stores.
    told = json.dumps(outcome) + manifest.to_json() + stderr
    assert service_db.password not in told
    assert servers["BANDSY_S3_SECRET_ACCESS_KEY"] not in told


async def test_retention_keeps_the_newest_verified_and_a_failure_deletes_nothing(
    servers: dict[str, str], service_db: ServiceDatabase
) -> None:
    taken = []
    for _ in range(3):
        code, outcome, stderr = service_db.run()
        assert code == 0, stderr
        taken.append(outcome["taken"])
        await asyncio.sleep(1.1)  # a stamp per second
    manifests = [k for k in keys(servers, service_db.bucket) if k.endswith(".json")]
    assert [m.rsplit("/", 1)[1] for m in manifests] == [f"{t}.json" for t in taken[1:]]
    before = keys(servers, service_db.bucket)

    # S3 down: the dump is taken, the upload fails, nothing is deleted, no secret told.
    closed = f"https://127.0.0.1:{free_port()}"
    code, outcome, _ = service_db.run(BANDSY_BACKUP_ENDPOINT=closed)
    assert code == 1
    assert outcome["verified"] is False
    assert "Could not connect" in outcome["error"] or "connect" in outcome["error"].lower()
    assert servers["BANDSY_S3_SECRET_ACCESS_KEY"] not in json.dumps(outcome)
    assert keys(servers, service_db.bucket) == before

    # A verify that cannot restore (its scratch database is gone): the dump stays unlisted,
    # nothing is deleted, and the next good run removes that unverified dump.
    code, outcome, _ = service_db.run(BANDSY_BACKUP_SCRATCH_DATABASE="no-such-database")
    assert code == 1
    assert "no-such-database" in outcome["error"]
    after_failure = keys(servers, service_db.bucket)
    assert set(before) < set(after_failure)
    assert all(k.endswith(".dump") for k in set(after_failure) - set(before))
    await asyncio.sleep(1.1)
    code, outcome, stderr = service_db.run()
    assert code == 0, stderr
    folder = f"backups/develop/{service_db.env['BANDSY_SERVICE']}/"
    kept = (taken[2], outcome["taken"])
    assert keys(servers, service_db.bucket) == sorted(
        f"{folder}{stamp}{suffix}" for stamp in kept for suffix in (".dump", ".json")
    )
    assert outcome["verifiedBackups"] == [outcome["taken"], taken[2]]


async def rows(db: ServiceDatabase, database: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(
        host=db.server.host,
        port=db.server.port,
        user=db.user,
        password=db.password,
        database=database,
        ssl="require",
    )
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_a_restore_brings_the_backup_back_and_swaps_it_in_keeping_the_old(
    servers: dict[str, str], service_db: ServiceDatabase
) -> None:
    code, backed_up, stderr = service_db.run()
    assert code == 0, stderr
    # Damage after the backup: the restore must bring back what the backup holds.
    await rows(service_db, service_db.database, "delete from shop.orders where id > 10")
    request = "20261201T110500Z-3f2a"
    target = naming.restore_database(service_db.database)
    previous = naming.previous_database(service_db.database, request)
    await service_db.backend.prepare_restore(service_db.server, service_db.account, target)
    code, outcome, stderr = service_db.run(
        "restore",
        PGDATABASE=target,
        BANDSY_RESTORE_SOURCE="develop",
        BANDSY_RESTORE_BACKUP="latest",
    )
    assert code == 0, stderr
    assert outcome["restored"] is True
    assert (outcome["backup"], outcome["rows"]) == (backed_up["taken"], 2502)
    assert service_db.password not in json.dumps(outcome) + stderr

    # The service's pool holds a session on the live database: the swap ends it.
    live = await asyncpg.connect(
        host=service_db.server.host,
        port=service_db.server.port,
        user=service_db.user,
        password=service_db.password,
        database=service_db.database,
        ssl="require",
    )
    assert await service_db.backend.swap_in(service_db.server, service_db.account, target, previous)
    assert live.is_closed() or await _ended(live)
    count = "select count(*) as n from shop.orders"
    assert (await rows(service_db, service_db.database, count))[0]["n"] == 2500
    assert (await rows(service_db, previous, count))[0]["n"] == 10  # kept, and open to look at
    # A swap retried after a crash finds it done.
    assert not await service_db.backend.swap_in(
        service_db.server, service_db.account, target, previous
    )
    await service_db.backend.drop_database(service_db.server, service_db.account, previous)
    found = await admin_databases(servers, [service_db.database, target, previous])
    assert found == [service_db.database]


async def _ended(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("select 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        return True
    return False


async def admin_databases(servers: dict[str, str], names: list[str]) -> list[str]:
    conn = await asyncpg.connect(**postgres_admin_args(servers), ssl="require")
    try:
        found = await conn.fetch(
            "select datname from pg_database where datname = any($1::text[]) order by 1", names
        )
        return [row["datname"] for row in found]
    finally:
        await conn.close()


async def test_a_restore_refuses_a_dump_its_manifest_does_not_vouch_for(
    servers: dict[str, str], service_db: ServiceDatabase
) -> None:
    code, backed_up, stderr = service_db.run()
    assert code == 0, stderr
    target = naming.restore_database(service_db.database)
    await service_db.backend.prepare_restore(service_db.server, service_db.account, target)
    restore = {"PGDATABASE": target, "BANDSY_RESTORE_SOURCE": "develop"}

    gone = "20200101T000000Z"
    code, outcome, _ = service_db.run("restore", **restore, BANDSY_RESTORE_BACKUP=gone)
    assert code == 1
    assert "is not a verified backup" in outcome["error"]
    assert backed_up["taken"] in outcome["error"]  # the ones there are

    s3_client(servers).put_object(Bucket=service_db.bucket, Key=backed_up["key"], Body=b"junk")
    code, outcome, _ = service_db.run("restore", **restore)
    assert (code, outcome["restored"]) == (1, False)
    assert "its manifest says" in outcome["error"]
    assert await rows(service_db, target, "select 1 from pg_tables where schemaname = 'shop'") == []
    await service_db.backend.drop_database(service_db.server, service_db.account, target)
    with pytest.raises(ValueError, match="live database"):
        await service_db.backend.drop_database(
            service_db.server, service_db.account, service_db.database
        )


async def test_a_mirror_copy_is_scrubbed_before_it_is_swapped_in(
    servers: dict[str, str], service_db: ServiceDatabase
) -> None:
    """The service's own backup, mirrored into its copy (the copy of another environment's
    database works the same: the folder is the source's): scrubbed, marked, exchanged."""
    code, _, stderr = service_db.run()
    assert code == 0, stderr
    copy = naming.mirror_database(service_db.database)
    account = replace(service_db.account, mirror_database=copy)
    await service_db.backend.ensure(service_db.server, account, service_db.password)
    mirror = {"PGDATABASE": copy, "BANDSY_RESTORE_SOURCE": "develop"}
    scrub = "update public.users set email = 'user-' || md5(email) || '@example.invalid'"

    code, outcome, stderr = service_db.run("mirror", **mirror, BANDSY_MIRROR_SCRUB=scrub)
    assert code == 0, stderr
    assert (outcome["mirrored"], outcome["scrubbed"], outcome["rows"]) == (True, True, 2502)
    emails = "select email from public.users order by 1"
    scrubbed = [r["email"] for r in await rows(service_db, copy, emails)]
    assert all(e.endswith("@example.invalid") for e in scrubbed), scrubbed
    live, marked = await service_db.backend.mirror_token(service_db.server, account)
    assert (live, marked) == ("", f"mirror {outcome['token']}")

    await service_db.backend.exchange_mirror(service_db.server, account)
    assert [r["email"] for r in await rows(service_db, service_db.database, emails)] == scrubbed
    # The replaced data is the next copy (the next run empties it first).
    assert "ada@example.com" in [r["email"] for r in await rows(service_db, copy, emails)]
    assert await service_db.backend.mirror_token(service_db.server, account) == (marked, "")

    # A scrub that fails leaves no unscrubbed copy behind, and nothing to swap in.
    code, outcome, _ = service_db.run("mirror", **mirror, BANDSY_MIRROR_SCRUB="update nowhere")
    assert (code, outcome["mirrored"]) == (1, False)
    assert "the scrub failed" in outcome["error"]
    assert await rows(service_db, copy, "select 1 from pg_tables where schemaname = 'shop'") == []
    assert await service_db.backend.mirror_token(service_db.server, account) == (marked, "")
