"""The restore Job's program (``python -m bandsy_operator.backup restore``, SPEC §11): fill the
new database a restore swaps in with one verified backup, and prove it arrived whole. A
mirror's (``... backup mirror``) does the same into the mirror copy, then scrubs it.

It runs as the service's own role; PGDATABASE names the empty database the operator made for
it (``<db>-restore``, owned by that role). Steps, each failing the Job with a message that
carries no secret:

1. Choose the backup: the named one, or the newest with a manifest (only verified backups have
   one). Read its manifest.
2. Download the dump; its sha256 must be the manifest's.
3. Empty the database (a retried attempt finds the last one's tables), ``pg_restore`` into it,
   and count each table's rows: they must be the manifest's.

The operator swaps the database in only after this succeeded; the outcome, as JSON in the
termination message, says which backup it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from ..restores import LATEST
from .job import (
    BackupError,
    count_rows,
    empty_database,
    need_variable,
    quote_identifier,
    run_reported,
    run_tool,
    sha256_of,
)
from .manifest import MANIFEST_SUFFIX, Manifest, backup_prefix, manifest_key, mismatches, stamp_of
from .store import BackupStore


@dataclass(frozen=True)
class RestoreSettings:
    service: str
    database: str  # the empty one to fill (PGDATABASE)
    source: str  # the environment whose backup this is
    backup: str  # a stamp, or LATEST
    bucket: str
    folder: str  # the source's folder of this service
    endpoint: str | None
    region: str
    work_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RestoreSettings:
        def need(key: str) -> str:
            return need_variable(env, key)

        service, source = need("BANDSY_SERVICE"), need("BANDSY_RESTORE_SOURCE")
        return cls(
            service=service,
            database=need("PGDATABASE"),
            source=source,
            backup=env.get("BANDSY_RESTORE_BACKUP") or LATEST,
            bucket=need("BANDSY_BACKUP_BUCKET"),
            folder=backup_prefix(env.get("BANDSY_BACKUP_PREFIX", ""), source, service),
            endpoint=env.get("BANDSY_BACKUP_ENDPOINT") or None,
            region=env.get("BANDSY_BACKUP_REGION") or "us-east-1",
            work_dir=Path(env.get("BANDSY_BACKUP_WORK_DIR") or "/work"),
        )


def chosen_backup(settings: RestoreSettings, keys: list[str]) -> str:
    """The stamp to restore: the one asked for, if verified, or the newest verified one."""
    verified = sorted(
        {t for k in keys if k.endswith(MANIFEST_SUFFIX) and (t := stamp_of(k))}, reverse=True
    )
    where = f"{settings.source}'s backups of {settings.service} ({settings.folder})"
    if not verified:
        raise BackupError(f"there is no verified backup in {where}")
    if settings.backup == LATEST:
        return verified[0]
    if settings.backup not in verified:
        raise BackupError(
            f"{settings.backup} is not a verified backup in {where}; the newest are "
            f"{', '.join(verified[:5])}"
        )
    return settings.backup


async def restore(settings: RestoreSettings, store: BackupStore) -> dict[str, Any]:
    clock = time.monotonic()
    taken = chosen_backup(settings, store.list_keys())
    manifest = Manifest.from_json(store.read_text(manifest_key(settings.folder, taken)))
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    local = settings.work_dir / f"{taken}.restore.dump"
    try:
        store.download(manifest.dump_key, local)
        if (found := sha256_of(local)) != manifest.sha256:
            raise BackupError(
                f"{manifest.dump_key} has sha256 {found}, its manifest says {manifest.sha256}"
            )
        conn = await asyncpg.connect(database=settings.database)
        try:
            await empty_database(conn)
            await run_tool(
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={settings.database}",
                str(local),
            )
            restored = await count_rows(conn)
        finally:
            await conn.close()
    finally:
        local.unlink(missing_ok=True)
    if problems := mismatches(manifest.tables, restored):
        raise BackupError(f"the restored copy differs: {'; '.join(problems[:10])}")
    return {
        "restored": True,
        "backup": taken,
        "source": settings.source,
        "tables": len(restored),
        "rows": manifest.rows,
        "seconds": round(time.monotonic() - clock),
    }


async def mirror(settings: RestoreSettings, store: BackupStore, scrub: str) -> dict[str, Any]:
    """A restore into the mirror copy, then ``scrub`` in one transaction as the service's role;
    then the copy is marked ``mirror <token>`` (the operator swaps in only the copy this run
    marked). Whatever fails after the restore began empties the copy: no unscrubbed data stays
    behind."""
    try:
        outcome = await restore(settings, store)
        conn = await asyncpg.connect(database=settings.database)
        try:
            if scrub.strip():
                try:
                    async with conn.transaction():
                        await conn.execute(scrub)
                except asyncpg.PostgresError as error:
                    raise BackupError(f"the scrub failed: {error}") from None
            token = secrets.token_hex(8)
            await conn.execute(
                f"comment on database {quote_identifier(settings.database)} is 'mirror {token}'"
            )
        finally:
            await conn.close()
    except BaseException:
        with contextlib.suppress(Exception):  # the failure to report is the first one
            await _empty(settings.database)
        raise
    return {
        **{k: v for k, v in outcome.items() if k != "restored"},
        "mirrored": True,
        "scrubbed": bool(scrub.strip()),
        "token": token,
    }


async def _empty(database: str) -> None:
    conn = await asyncpg.connect(database=database)
    try:
        await empty_database(conn)
        await conn.execute(f"comment on database {quote_identifier(database)} is null")
    finally:
        await conn.close()


def main(env: Mapping[str, str] | None = None) -> int:
    """A restore's run."""
    env = os.environ if env is None else env

    async def work() -> dict[str, Any]:
        settings = RestoreSettings.from_env(env)
        return await restore(settings, _store(settings))

    return run_reported(work, env, "restored")


def mirror_main(env: Mapping[str, str] | None = None) -> int:
    """A mirror's run; ``BANDSY_MIRROR_SCRUB`` is the SQL."""
    env = os.environ if env is None else env

    async def work() -> dict[str, Any]:
        settings = RestoreSettings.from_env(env)
        return await mirror(settings, _store(settings), env.get("BANDSY_MIRROR_SCRUB", ""))

    return run_reported(work, env, "mirrored")


def _store(settings: RestoreSettings) -> BackupStore:
    return BackupStore(settings.bucket, settings.folder, settings.endpoint, settings.region)
