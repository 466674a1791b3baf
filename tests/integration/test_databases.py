"""Per-service database accounts against real PostgreSQL (TLS) and Redis (ACLs): login and
isolation, names, rotation, reclaim, drift repair, server outage, shared credentials, secrecy.

The PostgreSQL tests run twice: with a superuser admin, and with a least-privileged one
(``CREATEROLE CREATEDB``, as managed services give; SPEC §5)."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import redis.asyncio as aioredis
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import OperationFailure
from redis.exceptions import NoPermissionError

from bandsy_dev.local_env import LocalEnvironment, postgres_admin_args
from bandsy_operator.backends.scram import scram_sha256_verifier
from bandsy_operator.constants import CONFIG_HASH_ANNOTATION, FINALIZER
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.reconcile.databases import DATABASE_READY
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from recorded_events import events_about
from secrecy import assert_not_leaked, decode, generated_passwords, haystacks
from status_watch import condition_of, statuses_written
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def uid() -> str:
    return uuid.uuid4().hex[:6]


# The PostgreSQL admins the tests run with: their admin Secrets (namespace default) by kind.
PG_ADMINS = {"superuser": "pg-admin", "limited": "pg-limited-admin"}


def admin_secret(name: str, user: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "stringData": {"username": user, "password": password},
    }


def admin_ref(secret: str) -> dict[str, Any]:
    """``spec.postgres`` fields of an environment whose admin is ``secret``'s."""
    return {"adminSecretRef": {"namespace": "default", "name": secret}}


@pytest.fixture(scope="module")
def admin_secrets(kubectl: KubectlRunner, servers: dict[str, str]) -> None:
    for name, user, password in (
        ("pg-admin", servers["BANDSY_PG_ADMIN_USER"], servers["BANDSY_PG_ADMIN_PASSWORD"]),
        (
            "pg-limited-admin",
            servers["BANDSY_PG_LIMITED_ADMIN_USER"],
            servers["BANDSY_PG_LIMITED_ADMIN_PASSWORD"],
        ),
        ("redis-admin", servers["BANDSY_REDIS_ADMIN_USER"], servers["BANDSY_REDIS_ADMIN_PASSWORD"]),
        ("mongo-admin", servers["BANDSY_MONGO_ADMIN_USER"], servers["BANDSY_MONGO_ADMIN_PASSWORD"]),
    ):
        kubectl.apply(admin_secret(name, user, password))


def database_env(name: str, servers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    postgres = {
        "host": servers["BANDSY_PG_HOST"],
        "port": int(servers["BANDSY_PG_PORT"]),
        "sslMode": "require",
        "adminSecretRef": {"namespace": "default", "name": "pg-admin"},
        "egressTo": {"cidr": "127.0.0.1/32"},
        **overrides.pop("postgres", {}),
    }
    redis = {
        "host": servers["BANDSY_REDIS_HOST"],
        "port": int(servers["BANDSY_REDIS_PORT"]),
        "adminSecretRef": {"namespace": "default", "name": "redis-admin"},
        **overrides.pop("redis", {}),
    }
    mongo = {
        "host": servers["BANDSY_MONGO_HOST"],
        "port": int(servers["BANDSY_MONGO_PORT"]),
        "adminSecretRef": {"namespace": "default", "name": "mongo-admin"},
        "egressTo": {"cidr": "127.0.0.1/32"},
        **overrides.pop("mongo", {}),
    }
    return environment_body(
        name, postgres=postgres, redis=redis, mongo=mongo, deletionPolicy="Delete", **overrides
    )


async def projected(kube: KubeApi, namespace: str, service: str, backend: str) -> dict[str, str]:
    async def probe() -> dict[str, str]:
        secret = await kube.get(ObjectRef("v1", "Secret", namespace, f"{service}-{backend}"))
        return decode(secret) if secret else {}

    return await eventually(probe, timeout=30)


async def pg_connect(creds: dict[str, str], database: str | None = None) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=creds["PGHOST"],
        port=int(creds["PGPORT"]),
        user=creds["PGUSER"],
        password=creds["PGPASSWORD"],
        database=database or creds["PGDATABASE"],
        ssl=creds["PGSSLMODE"],
    )


async def bsvc(kube: KubeApi, name: str) -> dict[str, Any]:
    obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
    assert obj is not None
    return obj


def env_condition(obj: dict[str, Any], env: str, type_: str) -> dict[str, Any]:
    status = ((obj.get("status") or {}).get("environments") or {}).get(env) or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


async def pg_fetch(creds: dict[str, str], sql: str) -> list[asyncpg.Record]:
    """``sql``'s rows as the service's role; none while the role cannot log in yet."""
    try:
        conn = await pg_connect(creds)
    except asyncpg.PostgresError:
        return []
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql)
        return rows
    finally:
        await conn.close()


async def admin_connect(servers: dict[str, str]) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(**postgres_admin_args(servers), ssl="require")
    return conn


async def admin_sql(servers: dict[str, str], sql: str, *args: Any) -> Any:
    conn = await admin_connect(servers)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def drift_reported(kube: KubeApi, service: str, *phrases: str) -> bool:
    """A DriftRepaired Event of ``service`` whose note holds one of ``phrases``."""
    notes = [e["message"] for e in await events_about(kube, service, "DriftRepaired")]
    assert any(phrase in note for note in notes for phrase in phrases), notes
    return True


async def drop_database_and_role(servers: dict[str, str], database: str, role: str) -> None:
    """Drop both by hand, as a person would; the operator's repair may recreate the database
    in between, which then holds the role: drop again until both are gone."""
    conn = await admin_connect(servers)
    try:
        while True:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            try:
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
                return
            except asyncpg.DependentObjectsStillInUseError:
                continue
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def db_env(
    kubectl: KubectlRunner, servers: dict[str, str], admin_secrets: None, operator: OperatorProcess
) -> str:
    """An environment on every server, with the superuser PostgreSQL admin."""
    name = f"db-{uid()}"
    kubectl.apply(database_env(name, servers))
    return name


@pytest.fixture(scope="module", params=list(PG_ADMINS))
def pg_admin(request: pytest.FixtureRequest, admin_secrets: None) -> str:
    """Which PostgreSQL admin the test runs with: the name of its Secret."""
    return PG_ADMINS[request.param]


@pytest.fixture(scope="module")
def pg_env(
    kubectl: KubectlRunner, servers: dict[str, str], pg_admin: str, operator: OperatorProcess
) -> str:
    """An environment like ``db_env`` whose PostgreSQL admin is ``pg_admin``."""
    name = f"pg-{uid()}"
    kubectl.apply(database_env(name, servers, postgres=admin_ref(pg_admin)))
    return name


async def test_every_credential_logs_in_and_is_isolated(
    kube: KubeApi, kubectl: KubectlRunner, pg_env: str
) -> None:
    a, b = f"alpha-{uid()}", f"beta-{uid()}"
    for name in (a, b):
        kubectl.apply(
            service_body(
                name,
                tags(**{pg_env: "v1"}),
                postgres={"enabled": True, "extensions": ["pg_trgm"]},
                redis={"enabled": True},
            ),
        )
    pg_a = await projected(kube, pg_env, a, "postgres")
    pg_b = await projected(kube, pg_env, b, "postgres")
    assert set(pg_a) == {
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
        "PGSSLMODE",
        "DATABASE_URL",
    }
    assert pg_a["PGUSER"] == f"{a}-user"
    assert pg_a["PGDATABASE"] == f"{a}-{pg_env}"
    assert len(pg_a["PGPASSWORD"]) >= 32
    assert pg_a["DATABASE_URL"].endswith(f"/{a}-{pg_env}?sslmode=require")

    async def logs_in() -> bool:
        conn = await pg_connect(pg_a)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS t (id int)")
            await conn.execute("INSERT INTO t VALUES (1)")
            assert await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname='pg_trgm'")
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await conn.close()
        return True

    await eventually(logs_in, timeout=30)
    conn = await asyncpg.connect(pg_a["DATABASE_URL"])  # the URL works as it is
    await conn.close()
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pg_connect(pg_a, database=pg_b["PGDATABASE"])

    redis_a = await projected(kube, pg_env, a, "redis")
    assert set(redis_a) == {"REDIS_URL", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_KEY_PREFIX"}
    assert redis_a["REDIS_KEY_PREFIX"] == f"{a}:{pg_env}:"
    redis_b = await projected(kube, pg_env, b, "redis")

    async def redis_works() -> bool:
        async with aioredis.from_url(redis_a["REDIS_URL"]) as client:
            await client.set(f"{redis_a['REDIS_KEY_PREFIX']}k", "v")
            with pytest.raises(NoPermissionError):
                await client.set(f"{redis_b['REDIS_KEY_PREFIX']}k", "v")
            with pytest.raises(NoPermissionError):
                await client.flushall()
        return True

    await eventually(redis_works, timeout=30)

    async def database_ready() -> bool:
        cond = env_condition(await bsvc(kube, a), pg_env, "DatabaseReady")
        assert cond.get("status") == "True", cond
        return True

    await eventually(database_ready)
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", pg_env, a))
    assert deployment is not None
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": f"{a}-postgres"}} in env_from
    policy = await kube.get(ObjectRef("networking.k8s.io/v1", "NetworkPolicy", pg_env, a))
    assert policy is not None
    assert {
        "to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": int(pg_a["PGPORT"])}],
    } in policy["spec"]["egress"]


async def test_long_names_work_and_too_long_names_are_refused(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pg_admin: str,
    operator: OperatorProcess,
) -> None:
    env = f"lim-{uid()}"  # 10 characters
    templates = {
        "userTemplate": "{service}-{env}-{env}-u",
        "databaseTemplate": "{service}-{env}-{env}-d",
        **admin_ref(pg_admin),
    }
    kubectl.apply(database_env(env, servers, postgres=templates))
    fits = f"n{uid()}-".ljust(39, "x")  # role and database of exactly 63 bytes
    too_long = f"t{uid()}-".ljust(40, "x")  # 64 bytes
    for name in (fits, too_long):
        kubectl.apply(service_body(name, tags(**{env: "v1"}), postgres={"enabled": True}))
    creds = await projected(kube, env, fits, "postgres")
    assert len(creds["PGDATABASE"].encode()) == len(creds["PGUSER"].encode()) == 63

    async def logs_in() -> bool:
        conn = await pg_connect(creds)
        await conn.close()
        return True

    await eventually(logs_in, timeout=30)

    async def refused() -> dict[str, Any]:
        cond = env_condition(await bsvc(kube, too_long), env, "Ready")
        assert cond.get("reason") == "InvalidDatabaseName", cond
        return cond

    cond = await eventually(refused)
    assert "longer than 63 bytes" in cond["message"]
    assert not await admin_sql(
        servers, "SELECT 1 FROM pg_roles WHERE rolname LIKE $1", f"{too_long[:20]}%"
    )
    assert too_long not in Path(servers["BANDSY_PG_LOG_FILE"]).read_text(errors="replace")
    kubectl("delete", "bsvc", fits, too_long, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def test_rotation_issues_new_passwords_and_rolls(
    kube: KubeApi, kubectl: KubectlRunner, pg_env: str
) -> None:
    name = f"rot-{uid()}"
    body = service_body(
        name, tags(**{pg_env: "v1"}), postgres={"enabled": True}, redis={"enabled": True}
    )
    kubectl.apply(body)
    old = await projected(kube, pg_env, name, "postgres")
    old_redis = await projected(kube, pg_env, name, "redis")

    async def deployment_hash() -> str:
        obj = await kube.get(ObjectRef("apps/v1", "Deployment", pg_env, name))
        assert obj is not None
        return str(obj["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    before = await eventually(deployment_hash)
    kubectl("annotate", "bsvc", name, "bandsy.app/rotate-credentials=2026-11-26")

    async def rotated() -> dict[str, str]:
        new = await projected(kube, pg_env, name, "postgres")
        return new if new["PGPASSWORD"] != old["PGPASSWORD"] else {}

    new = await eventually(rotated)

    async def new_works() -> bool:
        conn = await pg_connect(new)
        await conn.close()
        return True

    await eventually(new_works, timeout=30)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await pg_connect(old)

    async def redis_rotated() -> bool:
        new_redis = await projected(kube, pg_env, name, "redis")
        return new_redis["REDIS_PASSWORD"] != old_redis["REDIS_PASSWORD"]

    # Each backend's Secret is applied concurrently with the others.
    await eventually(redis_rotated)
    assert await eventually(lambda: _differs(deployment_hash, before))


async def _differs(probe: Any, before: str) -> bool:
    return bool(await probe() != before)


async def test_retain_keeps_the_database_and_locks_the_role(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], pg_env: str
) -> None:
    name = f"keep-{uid()}"
    body = service_body(name, tags(**{pg_env: "v1"}), postgres={"enabled": True})
    kubectl.apply(body)
    creds = await projected(kube, pg_env, name, "postgres")

    async def write_row() -> bool:
        conn = await pg_connect(creds)
        try:
            await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('data')")
        finally:
            await conn.close()
        return True

    await eventually(write_row, timeout=30)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    (role,) = await admin_sql(
        servers, "SELECT rolcanlogin FROM pg_roles WHERE rolname=$1", creds["PGUSER"]
    )
    assert role["rolcanlogin"] is False
    assert await admin_sql(
        servers, "SELECT 1 FROM pg_database WHERE datname=$1", creds["PGDATABASE"]
    )

    kubectl.apply(body)
    again = await projected(kube, pg_env, name, "postgres")

    async def data_back() -> bool:
        conn = await pg_connect(again)
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "data"
        finally:
            await conn.close()
        return True

    await eventually(data_back, timeout=30)


async def test_delete_drops_database_role_and_credential(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], pg_env: str
) -> None:
    name = f"drop-{uid()}"
    kubectl.apply(
        service_body(
            name,
            tags(**{pg_env: "v1"}),
            postgres={"enabled": True, "reclaimPolicy": "Delete"},
            redis={"enabled": True},
        ),
    )
    creds = await projected(kube, pg_env, name, "postgres")
    redis_creds = await projected(kube, pg_env, name, "redis")

    async def connected() -> asyncpg.Connection:
        return await pg_connect(creds)

    holder = await eventually(connected, timeout=30)  # an open session must not block the drop
    try:
        kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    finally:
        holder.terminate()  # the server already ended it
    assert not await admin_sql(
        servers, "SELECT 1 FROM pg_database WHERE datname=$1", creds["PGDATABASE"]
    )
    assert not await admin_sql(servers, "SELECT 1 FROM pg_roles WHERE rolname=$1", creds["PGUSER"])
    credentials = await kube.list("v1", "Secret", namespace="bandsy-system")
    users = [decode(s).get("username") for s in credentials]
    assert creds["PGUSER"] not in users
    assert redis_creds["REDIS_USERNAME"] not in users


async def test_a_service_that_gains_a_database_gets_the_finalizer_that_reclaims_it(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], pg_env: str
) -> None:
    """Without a database a service carries no finalizer (the garbage collector reclaims its
    objects); the edit that asks for one puts it on before the account exists, so deleting
    the service drops what it made."""
    name = f"gain-{uid()}"
    kubectl.apply(service_body(name, tags(**{pg_env: "v1"})))
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", pg_env, name)))
    assert FINALIZER not in ((await bsvc(kube, name))["metadata"].get("finalizers") or [])

    kubectl.apply(
        service_body(
            name, tags(**{pg_env: "v1"}), postgres={"enabled": True, "reclaimPolicy": "Delete"}
        )
    )
    creds = await projected(kube, pg_env, name, "postgres")
    assert FINALIZER in (await bsvc(kube, name))["metadata"]["finalizers"]

    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    assert not await admin_sql(servers, "SELECT 1 FROM pg_roles WHERE rolname=$1", creds["PGUSER"])
    assert not await admin_sql(
        servers, "SELECT 1 FROM pg_database WHERE datname=$1", creds["PGDATABASE"]
    )


async def test_drift_is_repaired(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], pg_env: str
) -> None:
    name = f"drift-{uid()}"
    kubectl.apply(service_body(name, tags(**{pg_env: "v1"}), postgres={"enabled": True}))
    creds = await projected(kube, pg_env, name, "postgres")

    async def logs_in() -> bool:
        try:
            conn = await pg_connect(creds)
        except asyncpg.PostgresError:
            return False
        await conn.close()
        return True

    await eventually(logs_in, timeout=30)
    role = creds["PGUSER"]
    # The operator may repair this before a login could show it; the DriftRepaired Event
    # checked below proves it saw the tampering.
    await admin_sql(servers, f"ALTER ROLE \"{role}\" PASSWORD 'tampered-by-hand' NOLOGIN")
    await eventually(logs_in, timeout=30)

    await drop_database_and_role(servers, creds["PGDATABASE"], role)
    await eventually(logs_in, timeout=30)
    # The Events follow the repairs; a login can win that race.
    await eventually(lambda: drift_reported(kube, name, "reset password", "reset attributes"))
    await eventually(lambda: drift_reported(kube, name, "created role"))


async def test_new_accounts_and_objects_are_recorded_in_one_write_before_they_exist(
    kube: KubeApi, kubectl: KubectlRunner, pg_env: str
) -> None:
    """A crash leaves no role nor object that no status names, and that costs one status write
    of a new service: its accounts and its inventory are recorded together."""
    name = f"rec-{uid()}"
    async with statuses_written(kube, name) as seen:
        kubectl.apply(service_body(name, tags(**{pg_env: "v1"}), postgres={"enabled": True}))

        async def database_ready() -> bool:
            condition = env_condition(await bsvc(kube, name), pg_env, DATABASE_READY)
            assert condition.get("status") == "True", condition
            return True

        await eventually(database_ready)
    recording = [s for s in seen if s.get("databases")]
    assert recording, seen
    first = recording[0]
    # Before any server learned of them: the objects' status is presumed, a database's never.
    conditions = first["environments"][pg_env]["conditions"]
    assert DATABASE_READY not in {c["type"] for c in conditions}, first
    assert condition_of(first, "Ready")["status"] == "False", first
    assert [a.split("|")[:2] for a in first["databases"]] == [[pg_env, "postgres"]]
    assert f"{pg_env}|apps/v1|Deployment|{pg_env}|{name}" in first["inventory"], first
    assert f"{pg_env}|v1|Secret|{pg_env}|{name}-postgres" in first["inventory"], first
    assert all("inventory" in s for s in recording), recording
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_database_outage_is_reported_and_recovers(
    kube: KubeApi,
    kubectl: KubectlRunner,
    local_env: LocalEnvironment | None,
    pg_env: str,
) -> None:
    if local_env is None:
        pytest.skip("needs the servers this session started (not BANDSY_CLUSTER_ENV)")
    db_user, plain = f"out-{uid()}", f"plain-{uid()}"
    kubectl.apply(service_body(db_user, tags(**{pg_env: "v1"}), postgres={"enabled": True}))
    creds = await projected(kube, pg_env, db_user, "postgres")
    local_env.postgres.stop()
    try:

        async def unreachable() -> dict[str, Any]:
            cond = env_condition(await bsvc(kube, db_user), pg_env, "DatabaseReady")
            assert cond.get("reason") == "DatabaseUnreachable", cond
            return cond

        cond = await eventually(unreachable, timeout=30)
        assert creds["PGPASSWORD"] not in cond["message"]
        # Everything else keeps reconciling meanwhile.
        kubectl.apply(service_body(plain, tags(**{pg_env: "v1"})))
        await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", pg_env, plain)))
        kubectl.apply(service_body(db_user, tags(**{pg_env: "v2"}), postgres={"enabled": True}))

        async def retagged() -> bool:
            obj = await kube.get(ObjectRef("apps/v1", "Deployment", pg_env, db_user))
            assert obj is not None
            return bool(obj["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2"))

        await eventually(retagged, timeout=30)
    finally:
        local_env.postgres.start()

    async def recovered() -> bool:
        cond = env_condition(await bsvc(kube, db_user), pg_env, "DatabaseReady")
        assert cond.get("status") == "True", cond
        return True

    await eventually(recovered, timeout=30)


async def test_an_extension_the_server_lacks_is_reported(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess, pg_env: str
) -> None:
    name = f"ext-{uid()}"
    spec = {"enabled": True, "extensions": ["no_such_extension"]}
    kubectl.apply(service_body(name, tags(**{pg_env: "v1"}), postgres=spec))

    async def refused() -> dict[str, Any]:
        cond = env_condition(await bsvc(kube, name), pg_env, "DatabaseReady")
        assert cond.get("reason") == "DatabaseRefused", cond
        return cond

    cond = await eventually(refused, timeout=30)
    assert cond["status"] == "False"
    assert "no_such_extension" in cond["message"]


async def test_an_untrusted_extension_needs_a_superuser_admin(
    kube: KubeApi, kubectl: KubectlRunner, pg_admin: str, pg_env: str
) -> None:
    """pg_stat_statements is not a trusted extension: a superuser admin creates it, a limited
    one gets a refusal that says why instead of a stall."""
    name = f"untr-{uid()}"
    spec = {"enabled": True, "extensions": ["pg_stat_statements"]}
    kubectl.apply(service_body(name, tags(**{pg_env: "v1"}), postgres=spec))

    async def database_ready() -> dict[str, Any]:
        cond = env_condition(await bsvc(kube, name), pg_env, "DatabaseReady")
        assert cond.get("reason") in ("DatabaseReady", "DatabaseRefused"), cond
        return cond

    cond = await eventually(database_ready, timeout=30)
    if pg_admin == PG_ADMINS["superuser"]:
        assert cond["status"] == "True", cond
        creds = await projected(kube, pg_env, name, "postgres")
        extensions = await eventually(lambda: pg_fetch(creds, "SELECT extname FROM pg_extension"))
        assert "pg_stat_statements" in {row["extname"] for row in extensions}
    else:
        assert cond["status"] == "False", cond
        assert "pg_stat_statements" in cond["message"]
        assert "superuser" in cond["message"], cond["message"]


async def test_environments_sharing_a_role_report_it(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    pg_admin: str,
    operator: OperatorProcess,
) -> None:
    one, two = f"share-{uid()}", f"share-{uid()}"
    postgres = admin_ref(pg_admin)
    kubectl.apply(
        database_env(one, servers, postgres=postgres), database_env(two, servers, postgres=postgres)
    )

    async def shared() -> bool:
        for env in (one, two):
            obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env))
            assert obj is not None
            cond = next(
                (
                    c
                    for c in obj.get("status", {}).get("conditions", [])
                    if c["type"] == "SharedCredentials"
                ),
                {},
            )
            assert cond.get("status") == "True", cond
            assert (two if env == one else one) in cond["message"]
        return True

    await eventually(shared, timeout=30)
    name = f"shared-{uid()}"
    kubectl.apply(service_body(name, tags(**{one: "v1", two: "v1"}), postgres={"enabled": True}))
    first = await projected(kube, one, name, "postgres")
    second = await projected(kube, two, name, "postgres")
    assert first["PGUSER"] == second["PGUSER"]
    assert first["PGPASSWORD"] == second["PGPASSWORD"]
    assert first["PGDATABASE"] != second["PGDATABASE"]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", one, two, "--wait=true", "--timeout=60s")


async def extra_admin(kubectl: KubectlRunner, servers: dict[str, str], attributes: str) -> str:
    """A new PostgreSQL admin role with ``attributes`` and its Secret, both of one name."""
    name = f"admin_{uid()}"
    password = secrets.token_urlsafe(24)
    verifier = scram_sha256_verifier(password)
    await admin_sql(servers, f"CREATE ROLE {name} LOGIN {attributes} PASSWORD '{verifier}'")
    kubectl.apply(admin_secret(name.replace("_", "-"), name, password))
    return name


def two_admin_envs(kubectl: KubectlRunner, servers: dict[str, str], admin: str) -> tuple[str, str]:
    """An environment whose admin is ``admin`` and one with the limited harness admin; the
    user template gives each environment its own role."""
    odd, good = f"odd-{uid()}", f"good-{uid()}"
    per_env = {"userTemplate": "{service}-{env}-u"}
    kubectl.apply(
        database_env(odd, servers, postgres={**per_env, **admin_ref(admin.replace("_", "-"))}),
        database_env(good, servers, postgres={**per_env, **admin_ref(PG_ADMINS["limited"])}),
    )
    return odd, good


async def database_condition(kube: KubeApi, service: str, env: str, reason: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        cond = env_condition(await bsvc(kube, service), env, "DatabaseReady")
        assert cond.get("reason") == reason, cond
        return cond

    return await eventually(probe, timeout=45)


async def logs_in(kube: KubeApi, env: str, service: str) -> bool:
    creds = await projected(kube, env, service, "postgres")
    return bool(await eventually(lambda: pg_fetch(creds, "SELECT 1"), timeout=45))


async def test_an_admin_lacking_a_privilege_fails_only_its_environment(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    admin_secrets: None,
    operator: OperatorProcess,
) -> None:
    admin = await extra_admin(kubectl, servers, "CREATEDB NOCREATEROLE")
    weak, good = two_admin_envs(kubectl, servers, admin)
    name = f"priv-{uid()}"
    body = service_body(name, tags(**{weak: "v1", good: "v1"}), postgres={"enabled": True})
    kubectl.apply(body)

    cond = await database_condition(kube, name, weak, "DatabasePermissionDenied")
    assert cond["status"] == "False"
    # What was refused, to whom, and what would fix it.
    assert f"create role '{name}-{weak}-u'" in cond["message"], cond["message"]
    assert admin in cond["message"]
    assert "needs CREATEROLE" in cond["message"]
    # The service's other environment converged meanwhile.
    assert await logs_in(kube, good, name)
    await database_condition(kube, name, good, "DatabaseReady")
    # Still denied: the failure is retried, not forgotten.
    assert env_condition(await bsvc(kube, name), weak, "DatabaseReady")["status"] == "False"
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", weak, good, "--wait=true", "--timeout=60s")


async def test_a_read_only_server_fails_only_its_environment_and_recovers(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    admin_secrets: None,
    operator: OperatorProcess,
) -> None:
    """A replica after a failover takes no writes; here an admin whose sessions start
    read-only stands in for it (other sessions are undisturbed)."""
    admin = await extra_admin(kubectl, servers, "CREATEROLE CREATEDB")
    await admin_sql(servers, f"ALTER ROLE {admin} SET default_transaction_read_only = on")
    replica, good = two_admin_envs(kubectl, servers, admin)
    name = f"ro-{uid()}"
    body = service_body(name, tags(**{replica: "v1", good: "v1"}), postgres={"enabled": True})
    kubectl.apply(body)

    cond = await database_condition(kube, name, replica, "DatabaseReadOnly")
    assert cond["status"] == "False"
    assert "read-only" in cond["message"], cond["message"]
    assert await logs_in(kube, good, name)
    await database_condition(kube, name, good, "DatabaseReady")

    # The "failover" is over: the operator's next try, on new sessions, gets through.
    await admin_sql(servers, f"ALTER ROLE {admin} RESET default_transaction_read_only")
    await database_condition(kube, name, replica, "DatabaseReady")
    assert await logs_in(kube, replica, name)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", replica, good, "--wait=true", "--timeout=60s")


async def mongo_login(creds: dict[str, str]) -> bool:
    """Log in with the projected URI and write under the service's database."""
    client = AsyncIOMotorClient(creds["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    try:
        await client[creds["MONGODB_DATABASE"]]["probe"].insert_one({"ok": 1})
    except OperationFailure:
        return False
    finally:
        client.close()
    return True


def mongo_admin(servers: dict[str, str]) -> Any:
    return AsyncIOMotorClient(
        host=servers["BANDSY_MONGO_HOST"],
        port=int(servers["BANDSY_MONGO_PORT"]),
        username=servers["BANDSY_MONGO_ADMIN_USER"],
        password=servers["BANDSY_MONGO_ADMIN_PASSWORD"],
        authSource="admin",
        serverSelectionTimeoutMS=5000,
    )


async def test_mongo_users_log_in_rotate_drift_and_reclaim(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], db_env: str
) -> None:
    keep, drop = f"mkeep-{uid()}", f"mdrop-{uid()}"
    kubectl.apply(service_body(keep, tags(**{db_env: "v1"}), mongo={"enabled": True}))
    kubectl.apply(
        service_body(
            drop,
            tags(**{db_env: "v1"}),
            mongo={"enabled": True},
            postgres={"reclaimPolicy": "Delete"},
        ),
    )
    creds = await projected(kube, db_env, keep, "mongo")
    other = await projected(kube, db_env, drop, "mongo")
    assert set(creds) == {"MONGODB_URI", "MONGODB_USERNAME", "MONGODB_PASSWORD", "MONGODB_DATABASE"}
    assert creds["MONGODB_USERNAME"] == f"{keep}-user"
    assert creds["MONGODB_DATABASE"] == f"{keep}-{db_env}"
    assert f"authSource={keep}-{db_env}" in creds["MONGODB_URI"]
    await eventually(lambda: mongo_login(creds), timeout=30)
    await eventually(lambda: mongo_login(other), timeout=30)
    # One service's password does not authenticate as another's user.
    swapped = {
        **creds,
        "MONGODB_URI": creds["MONGODB_URI"].replace(
            quote(creds["MONGODB_PASSWORD"], safe=""), quote(other["MONGODB_PASSWORD"], safe="")
        ),
    }
    assert not await mongo_login(swapped)

    admin = mongo_admin(servers)
    database = admin[creds["MONGODB_DATABASE"]]
    try:
        # Drift: a changed password and a dropped user are repaired.
        # The operator may repair either before a login could show it; the DriftRepaired
        # Events prove it saw both.
        await database.command(
            "updateUser", creds["MONGODB_USERNAME"], pwd="changed-by-hand", roles=[]
        )
        await eventually(lambda: drift_reported(kube, keep, "reset password of user"))
        await eventually(lambda: mongo_login(creds), timeout=30)
        await database.command("dropUser", creds["MONGODB_USERNAME"])
        await eventually(lambda: drift_reported(kube, keep, "created user"))
        await eventually(lambda: mongo_login(creds), timeout=30)

        # Rotation: a new password works, the old one stops.
        kubectl("annotate", "bsvc", keep, "bandsy.app/rotate-credentials=m1")

        async def rotated() -> dict[str, str]:
            new = await projected(kube, db_env, keep, "mongo")
            return new if new["MONGODB_PASSWORD"] != creds["MONGODB_PASSWORD"] else {}

        new = await eventually(rotated)
        await eventually(lambda: mongo_login(new), timeout=30)
        assert not await mongo_login(creds)

        # Retain keeps the data and removes the user; re-creating brings both back together.
        kubectl("delete", "bsvc", keep, "--wait=true", "--timeout=60s")
        users = await database.command("usersInfo", new["MONGODB_USERNAME"])
        assert users["users"] == []
        assert await database["probe"].count_documents({}) > 0
        kubectl.apply(service_body(keep, tags(**{db_env: "v1"}), mongo={"enabled": True}))
        again = await projected(kube, db_env, keep, "mongo")
        await eventually(lambda: mongo_login(again), timeout=30)

        # Delete drops the database and the user.
        kubectl("delete", "bsvc", drop, "--wait=true", "--timeout=60s")
        assert other["MONGODB_DATABASE"] not in await admin.list_database_names()
        gone = await admin[other["MONGODB_DATABASE"]].command(
            "usersInfo", other["MONGODB_USERNAME"]
        )
        assert gone["users"] == []
    finally:
        admin.close()


async def test_mongo_outage_is_reported_and_recovers(
    kube: KubeApi, kubectl: KubectlRunner, local_env: LocalEnvironment | None, db_env: str
) -> None:
    if local_env is None:
        pytest.skip("needs the servers this session started (not BANDSY_CLUSTER_ENV)")
    name = f"mout-{uid()}"
    kubectl.apply(service_body(name, tags(**{db_env: "v1"}), mongo={"enabled": True}))
    creds = await projected(kube, db_env, name, "mongo")
    await eventually(lambda: mongo_login(creds), timeout=30)
    local_env.mongo.stop()
    try:

        async def unreachable() -> dict[str, Any]:
            cond = env_condition(await bsvc(kube, name), db_env, "DatabaseReady")
            assert cond.get("reason") == "DatabaseUnreachable", cond
            return cond

        cond = await eventually(unreachable, timeout=40)
        assert "mongo" in cond["message"]
        assert creds["MONGODB_PASSWORD"] not in cond["message"]
    finally:
        local_env.mongo.start()

    async def recovered() -> bool:
        cond = env_condition(await bsvc(kube, name), db_env, "DatabaseReady")
        assert cond.get("status") == "True", cond
        return True

    await eventually(recovered, timeout=60)
    assert await mongo_login(creds)


async def test_no_generated_password_leaks(
    kube: KubeApi, servers: dict[str, str], operator: OperatorProcess, db_env: str
) -> None:
    """Runs after the other database tests of this module: sweep every place a secret could
    leak to. (Module order is file order.)"""
    passwords = await generated_passwords(kube)
    assert len(passwords) > 5
    assert_not_leaked(passwords, await haystacks(kube, servers, {"operator log": operator.log()}))
