"""The test app (SPEC §8.1, §11's `testapp migrate`): its binary, built with hack/testapp/build.sh,
against the session's real PostgreSQL (TLS only) and Redis (ACLs) with an account set up the way
the operator sets one up: a login role owning its database, an ACL user confined to its prefix."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
import redis.asyncio as aioredis

from bandsy_dev.local_env import postgres_admin_args

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "testapp" / "build.sh"
GO_BIN = "/usr/local/go/bin"
START_TIMEOUT = 15.0


@pytest.fixture(scope="session")
def testapp_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("testapp") / "testapp"
    # Go's own caches make this take seconds once they are warm; a cold build takes a minute or two.
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + os.pathsep + GO_BIN}
    subprocess.run([str(BUILD_SCRIPT), str(out)], env=env, check=True, timeout=900)
    return out


def test_the_apps_own_go_tests_pass() -> None:
    """Its handlers' edge cases (no URL, a bad parameter, redaction) are Go tests."""
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + os.pathsep + GO_BIN}
    env["GOTOOLCHAIN"] = "local"
    done = subprocess.run(
        ["go", "test", "-mod=readonly", "-count=1", "./..."],
        cwd=BUILD_SCRIPT.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok  " in done.stdout


@dataclass(frozen=True)
class Account:
    """What the operator would project into a service's pods, and the admin's view of it."""

    servers: dict[str, str]
    role: str
    database: str
    pg_password: str
    redis_user: str
    redis_password: str

    def database_url(self, sslmode: str = "require", **overrides: str) -> str:
        user = overrides.get("user", self.role)
        password = overrides.get("password", self.pg_password)
        database = overrides.get("database", self.database)
        host, port = self.servers["BANDSY_PG_HOST"], self.servers["BANDSY_PG_PORT"]
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"
            f"{quote(database, safe='')}?sslmode={sslmode}"
        )

    def redis_url(self, user: str | None = None, password: str | None = None) -> str:
        user = self.redis_user if user is None else user
        password = self.redis_password if password is None else password
        host, port = self.servers["BANDSY_REDIS_HOST"], self.servers["BANDSY_REDIS_PORT"]
        return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/0"

    def assert_no_secret_in(self, text: str) -> None:
        for secret in (self.pg_password, self.redis_password):
            assert secret not in text
            assert quote(secret, safe="") not in text


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# Characters a URL must percent-encode, so the app's URL decoding is part of what is tested.
def new_password() -> str:
    return secrets.token_urlsafe(18) + "@:/%+"


async def admin_sql(servers: dict[str, str], sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**postgres_admin_args(servers), ssl="require")
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def sql_in(servers: dict[str, str], database: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(
        **{**postgres_admin_args(servers), "database": database}, ssl="require"
    )
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def redis_admin(servers: dict[str, str]) -> aioredis.Redis:
    return aioredis.Redis(
        host=servers["BANDSY_REDIS_HOST"],
        port=int(servers["BANDSY_REDIS_PORT"]),
        username=servers["BANDSY_REDIS_ADMIN_USER"],
        password=servers["BANDSY_REDIS_ADMIN_PASSWORD"],
        decode_responses=True,
    )


async def create_database(servers: dict[str, str], role: str) -> str:
    database = unique("testapp")
    await admin_sql(servers, f'CREATE DATABASE "{database}" OWNER "{role}"')
    return database


@pytest.fixture(scope="module")
async def role(servers: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    name, password = unique("testapp"), new_password()
    await admin_sql(servers, f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
    yield name, password
    await admin_sql(servers, f'DROP ROLE "{name}"')


@pytest.fixture(scope="module")
async def redis_user(servers: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    name, password = unique("testapp"), new_password()
    async with redis_admin(servers) as admin:
        # The operator's rules for a service's user (backends/redis.py).
        rules = [f">{password}", f"~{name}:*", f"&{name}:*", "+@all", "-@admin", "-@dangerous"]
        await admin.execute_command("ACL", "SETUSER", name, "reset", "on", *rules)
    yield name, password
    async with redis_admin(servers) as admin:
        await admin.execute_command("ACL", "DELUSER", name)


@pytest.fixture
async def account(
    servers: dict[str, str], role: tuple[str, str], redis_user: tuple[str, str]
) -> AsyncIterator[Account]:
    """A fresh database per test, so each migration test starts from nothing."""
    database = await create_database(servers, role[0])
    yield Account(servers, role[0], database, role[1], *redis_user)
    await admin_sql(servers, f'DROP DATABASE "{database}" WITH (FORCE)')


@dataclass
class RunningApp:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stderr(self) -> str:
        return self.log.read_text()

    def terminate(self) -> str:
        """SIGTERM: the app must exit 0 within a second; returns its whole stderr."""
        self.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert self.proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 1.0
        return self.stderr()


StartApp = Callable[[dict[str, str]], RunningApp]


@pytest.fixture
def start_app(testapp_binary: Path, tmp_path: Path) -> Iterator[StartApp]:
    """start_app(env) runs the app with exactly env (plus PORT=0) until it logged its start."""
    started: list[RunningApp] = []

    def start(env: dict[str, str]) -> RunningApp:
        log = tmp_path / f"testapp-{len(started)}.log"
        with log.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(testapp_binary)],
                env={"PORT": "0", **env},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while (m := re.search(r"started: listening on \S+:(\d+);", log.read_text())) is None:
            assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"no start line: {log.read_text()}"
            time.sleep(0.05)
        app = RunningApp(proc, log, int(m.group(1)))
        started.append(app)
        return app

    yield start
    for app in started:
        if app.proc.poll() is None:
            app.proc.kill()
            app.proc.wait()


def run_to_exit(binary: Path, env: dict[str, str], *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode, done.stderr, time.monotonic() - started


def test_the_build_is_a_static_executable(testapp_binary: Path) -> None:
    # An ELF without PT_INTERP (3) or PT_DYNAMIC (2) needs no loader and no libc in its image.
    data = testapp_binary.read_bytes()
    assert data[:5] == b"\x7fELF\x02", "not a 64-bit ELF"
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        *struct.unpack_from("<HH", data, 0x36),
    )
    types = {struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)}
    assert 1 in types  # PT_LOAD: the header was read right
    assert not types & {2, 3}
    assert os.access(testapp_binary, os.X_OK)


@pytest.mark.parametrize("tls", ["require", "verify-full"])
async def test_serves_its_credentials_over_open_connections(
    account: Account, start_app: StartApp, tls: str
) -> None:
    servers = account.servers
    sslmode = tls if tls == "require" else f"verify-full&sslrootcert={servers['BANDSY_PG_CA_FILE']}"
    env = {
        "DATABASE_URL": account.database_url(sslmode),
        "REDIS_URL": account.redis_url(),
        "LOG_LEVEL": "debug",
        "PGPASSWORD": account.pg_password,
    }
    app = start_app(env)
    assert app.get("/healthz") == (200, "ok")
    for _ in range(3):
        assert app.get("/db") == (200, f"{account.role}|{account.database}")
        assert app.get("/redis") == (200, "PONG")
    status, rows = app.get("/db/rows?table=pg_namespace")
    assert (status, rows.isdigit() and int(rows) > 0) == (200, True)
    assert app.get("/env?key=LOG_LEVEL") == (200, "debug")
    assert app.get("/env?key=DATABASE_URL") == (200, "set")
    assert app.get("/env?key=PGPASSWORD") == (200, "set")
    assert app.get("/env?key=REDIS_PASSWORD") == (200, "unset")
    # One connection each, kept open across requests; PostgreSQL's over TLS.
    sessions = await admin_sql(
        servers,
        "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
        " WHERE a.usename = $1 AND a.datname = $2",
        account.role,
        account.database,
    )
    assert [r["ssl"] for r in sessions] == [True]
    async with redis_admin(servers) as admin:
        clients = await admin.execute_command("CLIENT", "LIST")
    assert clients.count(f" user={account.redis_user} ") == 1
    stderr = app.terminate()
    account.assert_no_secret_in(stderr)
    assert f"user={account.role} database={account.database}" in stderr
    assert len(stderr.splitlines()) == 2, stderr  # the start and the stop


async def test_a_dropped_database_connection_is_reported_not_replaced(
    account: Account, start_app: StartApp
) -> None:
    app = start_app({"DATABASE_URL": account.database_url()})
    await admin_sql(
        account.servers,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = $1 AND datname = $2",
        account.role,
        account.database,
    )
    status, body = app.get("/db")
    assert status == 503
    assert body.startswith("error: ")
    assert app.get("/healthz") == (200, "ok")
    stderr = app.terminate()
    assert f"/db: {body.removeprefix('error: ')}" in stderr
    account.assert_no_secret_in(stderr)


BAD_STARTS = {
    "wrong postgres password": lambda a: {"DATABASE_URL": a.database_url(password="nope")},
    "unknown postgres role": lambda a: {"DATABASE_URL": a.database_url(user="nobody_here")},
    "plaintext postgres": lambda a: {"DATABASE_URL": a.database_url("disable")},
    # Without sslrootcert only the system's roots are trusted, and the local CA is not among them.
    "unverifiable postgres": lambda a: {"DATABASE_URL": a.database_url("verify-full")},
    "missing database": lambda a: {"DATABASE_URL": a.database_url(database="no_such_db")},
    "wrong redis password": lambda a: {"REDIS_URL": a.redis_url(password="nope")},
    "unknown redis user": lambda a: {"REDIS_URL": a.redis_url(user="nobody-here")},
}


@pytest.mark.parametrize("case", list(BAD_STARTS))
def test_bad_credentials_fail_the_start(account: Account, testapp_binary: Path, case: str) -> None:
    env = {"PORT": "0", **BAD_STARTS[case](account)}
    # The real secrets are in the environment as well: none may reach the log.
    env["PGPASSWORD"] = account.pg_password
    env["REDIS_PASSWORD"] = account.redis_password
    code, stderr, took = run_to_exit(testapp_binary, env)
    assert code == 1, stderr
    assert took < 10
    assert stderr.count("\n") == 1, stderr
    assert "start failed: " in stderr
    account.assert_no_secret_in(stderr)
    assert "nope" not in stderr


def test_fail_at_start_exits_one_though_everything_else_is_fine(
    account: Account, testapp_binary: Path
) -> None:
    env = {"FAIL_AT_START": "1", "DATABASE_URL": account.database_url(), "PORT": "0"}
    code, stderr, _ = run_to_exit(testapp_binary, env)
    assert code == 1
    assert "FAIL_AT_START" in stderr


def migrate(binary: Path, account: Account, migrations: Path | None) -> tuple[int, str]:
    env = {"DATABASE_URL": account.database_url()}
    if migrations is not None:
        env["MIGRATIONS_DIR"] = str(migrations)
    code, stderr, _ = run_to_exit(binary, env, "migrate")
    account.assert_no_secret_in(stderr)
    return code, stderr


async def recorded(account: Account) -> dict[str, object]:
    rows = await sql_in(
        account.servers, account.database, "SELECT name, applied_at FROM testapp_migrations"
    )
    return {r["name"]: r["applied_at"] for r in rows}


async def test_migrate_applies_each_file_once_in_name_order(
    account: Account, testapp_binary: Path, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0002_fill.sql").write_text("INSERT INTO items (n) VALUES (1), (2);")
    (migrations / "0001_items.sql").write_text("CREATE TABLE items (n int primary key);")
    (migrations / "notes.txt").write_text("not SQL")

    code, stderr = migrate(testapp_binary, account, migrations)
    assert code == 0, stderr
    assert "2 applied, 0 already applied" in stderr
    first = await recorded(account)
    assert set(first) == {"0001_items.sql", "0002_fill.sql"}

    code, stderr = migrate(testapp_binary, account, migrations)
    assert code == 0, stderr
    assert "0 applied, 2 already applied" in stderr
    assert await recorded(account) == first
    assert len(await sql_in(account.servers, account.database, "SELECT n FROM items")) == 2

    # A failing file: its own statements roll back, it is not recorded, and the run exits 1.
    (migrations / "0003_broken.sql").write_text(
        "INSERT INTO items (n) VALUES (3); SELECT * FROM no_such_table;"
    )
    code, stderr = migrate(testapp_binary, account, migrations)
    assert code == 1
    assert "migrate failed: 0003_broken.sql: " in stderr
    assert "no_such_table" in stderr
    assert set(await recorded(account)) == set(first)
    assert len(await sql_in(account.servers, account.database, "SELECT n FROM items")) == 2


async def test_migrate_defaults_to_the_demo_and_concurrent_runs_apply_it_once(
    account: Account, testapp_binary: Path
) -> None:
    # The demo fails if applied twice; the advisory lock makes the second run wait and find it done.
    runs = await asyncio.gather(
        *(asyncio.to_thread(migrate, testapp_binary, account, None) for _ in range(2))
    )
    assert [code for code, _ in runs] == [0, 0], runs
    assert sorted(stderr.count("migrate applied") for _, stderr in runs) == [0, 1]
    assert list(await recorded(account)) == ["0001_testapp_demo.sql"]
    rows = await sql_in(account.servers, account.database, "SELECT note FROM testapp_demo")
    assert [r["note"] for r in rows] == ["created by testapp migrate"]


def test_migrate_with_a_wrong_password_exits_one(account: Account, testapp_binary: Path) -> None:
    env = {"DATABASE_URL": account.database_url(password=account.pg_password + "x")}
    code, stderr, _ = run_to_exit(testapp_binary, env, "migrate")
    assert code == 1
    assert "migrate failed: postgres: " in stderr
    assert "password authentication failed" in stderr
    account.assert_no_secret_in(stderr)
