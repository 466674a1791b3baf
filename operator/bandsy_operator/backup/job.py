"""The backup Job's program: dump, upload, verify by restoring, record, then apply retention.

It runs as the service's own database role (its ``<svc>-postgres`` Secret as PG* variables),
never as the admin. Steps, each failing the Job with a message that carries no secret:

1. In one REPEATABLE READ transaction: export its snapshot, count each table's rows, and run
   ``pg_dump -Fc --snapshot`` of that very snapshot, so the counts describe the dump exactly.
2. Upload the dump.
3. Download it again (what a restore would read), check its sha256, restore it into the
   service's scratch database, count the rows again and compare; empty the scratch database.
4. Only then write the manifest: a manifest in the bucket is a verified backup.
5. Retention: delete what ``retention.expired`` allows, which never includes the newest verified
   backup, so a run that failed before step 4 deletes nothing.

The outcome is written as JSON to the termination message, where the operator reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from ..migrations import redact
from .manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    backup_prefix,
    dump_key,
    major_version,
    manifest_key,
    mismatches,
    stamp,
    stamp_of,
)
from .retention import Retention, expired
from .store import BackupStore

TERMINATION_LOG = "/dev/termination-log"
# The kubelet keeps at most 4096 bytes of a termination message.
TERMINATION_LIMIT = 4000
# The verified backups the outcome lists (newest first), what `bandsyctl backups` shows.
VERIFIED_LISTED = 30
# User tables (partitions included, their parents hold no rows), not those of extensions.
_TABLES = """
select n.nspname as schema, c.relname as name
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and not exists (
    select 1 from pg_depend d
    where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'
  )
order by 1, 2
"""
# Schemas the scratch database may hold after a restore (its owner empties it).
_SCHEMAS = """
select nspname from pg_namespace
where nspname not in ('pg_catalog', 'information_schema')
  and nspname not like 'pg\\_toast%' and nspname not like 'pg\\_temp%'
"""


class BackupError(Exception):
    """A step failed; the message says which and why, without secrets."""


def need_variable(env: Mapping[str, str], key: str) -> str:
    if not env.get(key):
        raise BackupError(f"{key} is not set")
    return env[key]


@dataclass(frozen=True)
class BackupSettings:
    service: str
    environment: str
    bucket: str
    folder: str
    endpoint: str | None
    region: str
    scratch_database: str
    retention: Retention
    work_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BackupSettings:
        def need(key: str) -> str:
            return need_variable(env, key)

        days = env.get("BANDSY_BACKUP_RETENTION_DAYS")
        service, environment = need("BANDSY_SERVICE"), need("BANDSY_ENVIRONMENT")
        return cls(
            service=service,
            environment=environment,
            bucket=need("BANDSY_BACKUP_BUCKET"),
            folder=backup_prefix(env.get("BANDSY_BACKUP_PREFIX", ""), environment, service),
            endpoint=env.get("BANDSY_BACKUP_ENDPOINT") or None,
            region=env.get("BANDSY_BACKUP_REGION") or "us-east-1",
            scratch_database=need("BANDSY_BACKUP_SCRATCH_DATABASE"),
            retention=Retention(
                count=int(env.get("BANDSY_BACKUP_RETENTION_COUNT") or 7),
                days=int(days) if days else None,
            ),
            work_dir=Path(env.get("BANDSY_BACKUP_WORK_DIR") or "/work"),
        )


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def count_rows(conn: asyncpg.Connection) -> dict[str, int]:
    counts = {}
    for row in await conn.fetch(_TABLES):
        table = f"{quote_identifier(row['schema'])}.{quote_identifier(row['name'])}"
        counts[f"{row['schema']}.{row['name']}"] = int(
            await conn.fetchval(f"select count(*) from {table}")  # noqa: S608 (quoted names)
        )
    return counts


async def run_tool(*args: str) -> str:
    """A PostgreSQL client program with the PG* variables; its stderr when it fails."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"{args[0]} failed: {err.decode(errors='replace').strip()[-1500:]}")
    return out.decode(errors="replace")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def dump(settings: BackupSettings, path: Path) -> tuple[dict[str, int], str, str]:
    """The dump of one consistent snapshot and its row counts; also the server's and
    pg_dump's versions (pg_dump must not be older than the server: it refuses to dump)."""
    tool_version = (await run_tool("pg_dump", "--version")).strip()
    conn = await asyncpg.connect()
    try:
        server_version = str(await conn.fetchval("show server_version"))
        server_major = major_version(str(await conn.fetchval("show server_version_num")))
        if major_version(tool_version) < server_major:
            raise BackupError(
                f"{tool_version} cannot dump a PostgreSQL {server_major} server: the image "
                f"needs pg_dump {server_major} or newer"
            )
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = str(await conn.fetchval("select pg_export_snapshot()"))
            counts = await count_rows(conn)
            await run_tool("pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={path}")
    finally:
        await conn.close()
    return counts, server_version, tool_version


async def empty_database(conn: asyncpg.Connection) -> None:
    """Drop every schema of a database its role owns and give it ``public`` back."""
    for row in await conn.fetch(_SCHEMAS):
        await conn.execute(f"drop schema {quote_identifier(row['nspname'])} cascade")
    await conn.execute("create schema public")


async def verify(settings: BackupSettings, path: Path) -> dict[str, int]:
    """Restore ``path`` into the scratch database and count what arrived; leaves it empty."""
    conn = await asyncpg.connect(database=settings.scratch_database)
    try:
        await empty_database(conn)
        try:
            await run_tool(
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={settings.scratch_database}",
                str(path),
            )
            return await count_rows(conn)
        finally:
            await empty_database(conn)
    finally:
        await conn.close()


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def back_up(settings: BackupSettings, store: BackupStore) -> dict[str, Any]:
    clock = time.monotonic()
    started = now()
    taken = stamp(started)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    local = settings.work_dir / f"{taken}.dump"
    fetched = settings.work_dir / f"{taken}.verify.dump"
    key = dump_key(settings.folder, taken)
    try:
        counts, server_version, tool_version = await dump(settings, local)
        size, digest = local.stat().st_size, sha256_of(local)
        store.upload(local, key)
        local.unlink()
        store.download(key, fetched)
        if (found := sha256_of(fetched)) != digest:
            raise BackupError(f"{key} reads back with sha256 {found}, uploaded {digest}")
        restored = await verify(settings, fetched)
    finally:
        for leftover in (local, fetched):
            leftover.unlink(missing_ok=True)
    if problems := mismatches(counts, restored):
        raise BackupError(f"the restored copy differs: {'; '.join(problems[:10])}")
    manifest = Manifest(
        service=settings.service,
        environment=settings.environment,
        database=os.environ.get("PGDATABASE", ""),
        taken=taken,
        dump_key=key,
        size=size,
        sha256=digest,
        server_version=server_version,
        pg_dump_version=tool_version,
        started_at=rfc3339(started),
        finished_at=rfc3339(now()),
        verified_at=rfc3339(now()),
        tables=counts,
    )
    store.put_text(manifest_key(settings.folder, taken), manifest.to_json())
    deleted = expired(store.list_keys(), settings.retention, now())
    for old in deleted:
        store.delete(old)
    remaining = sorted(
        {t for k in store.list_keys() if k.endswith(MANIFEST_SUFFIX) and (t := stamp_of(k))},
        reverse=True,
    )
    return {
        "verifiedBackups": remaining[:VERIFIED_LISTED],
        "verified": True,
        "taken": taken,
        "key": key,
        "size": size,
        "sha256": digest,
        "tables": len(counts),
        "rows": manifest.rows,
        "seconds": round(time.monotonic() - clock),
        "deleted": len(deleted),
    }


def report(outcome: Mapping[str, Any], path: str = TERMINATION_LOG) -> None:
    text = json.dumps(outcome, sort_keys=True)[:TERMINATION_LIMIT]
    print(text, flush=True)
    with contextlib.suppress(OSError):  # not in a pod: stdout has it
        Path(path).write_text(text)


def run_reported(
    work: Callable[[], Coroutine[Any, Any, dict[str, Any]]], env: Mapping[str, str], done: str
) -> int:
    """Run a Job's program; its outcome, or its failure with ``done`` false, is reported."""
    secrets = [v for k, v in env.items() if k in ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY") and v]
    try:
        outcome = asyncio.run(work())
    except Exception as error:  # every failure is reported, none leaks a secret
        message = redact(f"{type(error).__name__}: {error}", secrets)
        report({done: False, "error": message})
        return 1
    report(outcome)
    return 0


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env

    async def work() -> dict[str, Any]:
        settings = BackupSettings.from_env(env)
        store = BackupStore(settings.bucket, settings.folder, settings.endpoint, settings.region)
        return await back_up(settings, store)

    return run_reported(work, env, "verified")
