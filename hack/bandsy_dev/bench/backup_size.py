"""``python -m bandsy_dev.bench.backup_size [--rows N]`` (make bench-backup): how long one backup
of a service database of a given size takes, dump + upload + download + restore + check, on
fresh local servers (PostgreSQL and the S3 API), as the backup Job runs it.

The database is made like the operator makes a service's (role, database, scratch database, by
its own PostgreSQL backend) and filled with ``N`` rows of about 100 bytes in two tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import boto3

from bandsy_operator.backends import Account, AdminCredentials, Server
from bandsy_operator.backends.postgres import PostgresBackend
from bandsy_operator.naming import scratch_database

from .. import postgres
from ..packages import ensure_packages
from ..postgres import PostgresServer
from ..s3_server import REGION, S3Server

USER, DATABASE, BUCKET = "bench-user", "bench-backup", "bench-backups"


async def prepare(pg: PostgresServer, password: str, rows: int) -> int:
    """The service database, filled; returns its size in bytes."""

    async def admin() -> AdminCredentials:
        return AdminCredentials(postgres.ADMIN_USER, pg.admin_password)

    server = Server("127.0.0.1", pg.port, "require", admin)
    backend = PostgresBackend()
    account = Account(USER, database=DATABASE, scratch_database=scratch_database(DATABASE))
    await backend.ensure(server, account, password)
    await backend.close()
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=pg.port,
        user=USER,
        password=password,
        database=DATABASE,
        ssl="require",
    )
    try:
        orders = rows * 9 // 10
        await conn.execute(
            "create table orders (id bigint primary key, customer bigint, note text)"
        )
        await conn.execute(
            "insert into orders select n, n % 1000, md5(n::text) || md5((n * 7)::text)"
            " from generate_series(1, $1::bigint) n",
            orders,
        )
        await conn.execute("create table customers (id bigint primary key, email text)")
        await conn.execute(
            "insert into customers select n, 'user' || n || '@example.com'"
            " from generate_series(1, $1::bigint) n",
            rows - orders,
        )
        await conn.execute("vacuum analyze")
        return int(await conn.fetchval("select pg_database_size(current_database())"))
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    ensure_packages(node=False)
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as scratch:
        root = Path(scratch)
        pg, s3 = PostgresServer(root / "postgres"), S3Server(root / "s3")
        pg.start()
        try:
            s3.start()
            password = secrets.token_urlsafe(24)
            size = asyncio.run(prepare(pg, password, args.rows))
            boto3.client(
                "s3",
                endpoint_url=s3.endpoint(),
                region_name=REGION,
                aws_access_key_id=s3.access_key_id,
                aws_secret_access_key=s3.secret_access_key,
                verify=str(s3.ca_file),
            ).create_bucket(Bucket=BUCKET)
            env = {
                **os.environ,
                "PGHOST": "127.0.0.1",
                "PGPORT": str(pg.port),
                "PGUSER": USER,
                "PGPASSWORD": password,
                "PGDATABASE": DATABASE,
                "PGSSLMODE": "require",
                "AWS_ACCESS_KEY_ID": s3.access_key_id,
                "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
                "AWS_CA_BUNDLE": str(s3.ca_file),
                "BANDSY_SERVICE": "bench",
                "BANDSY_ENVIRONMENT": "develop",
                "BANDSY_BACKUP_BUCKET": BUCKET,
                "BANDSY_BACKUP_ENDPOINT": s3.endpoint(),
                "BANDSY_BACKUP_REGION": REGION,
                "BANDSY_BACKUP_SCRATCH_DATABASE": scratch_database(DATABASE),
                "BANDSY_BACKUP_WORK_DIR": str(root / "work"),
            }
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "bandsy_operator.backup"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            took = time.monotonic() - started
        finally:
            s3.stop()
            pg.stop()
    if done.returncode != 0:
        print(done.stdout, done.stderr, file=sys.stderr)
        return 1
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"backup of {args.rows} rows (database {size / 2**20:.0f} MiB, dump "
        f"{outcome['size'] / 2**20:.1f} MiB): dump + upload + restore + check {took:.1f} s "
        f"(the Job's own count: {outcome['seconds']} s), verified {outcome['rows']} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
