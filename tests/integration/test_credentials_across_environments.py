"""Database accounts where environments meet, against the real PostgreSQL: a shared role
rotates once, a protected environment never shares a role with an unprotected one, moving an
environment's database settings never moves or drops data silently, and deleting an environment
before its services locks their roles."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from bandsy_dev.local_env import postgres_admin_args
from bandsy_operator.controller import Controller, env_key, service_key
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.observation import ReadMode
from bandsy_operator.settings import OperatorSettings
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from secrecy import decode
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ADMIN = "across-pg-admin"


def uid() -> str:
    return uuid.uuid4().hex[:5]


@pytest.fixture(scope="module")
def admin(kubectl: KubectlRunner, servers: dict[str, str], operator: OperatorProcess) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ADMIN, "namespace": "default"},
            "stringData": {
                "username": servers["BANDSY_PG_ADMIN_USER"],
                "password": servers["BANDSY_PG_ADMIN_PASSWORD"],
            },
        }
    )


def pg_environment(name: str, servers: dict[str, str], **spec: Any) -> dict[str, Any]:
    postgres = {
        "host": servers["BANDSY_PG_HOST"],
        "port": int(servers["BANDSY_PG_PORT"]),
        "sslMode": "require",
        "adminSecretRef": {"namespace": "default", "name": ADMIN},
        **spec.pop("postgres", {}),
    }
    return environment_body(name, postgres=postgres, deletionPolicy="Delete", **spec)


async def projection(kube: KubeApi, namespace: str, service: str) -> dict[str, str]:
    secret = await kube.get(ObjectRef("v1", "Secret", namespace, f"{service}-postgres"))
    return decode(secret) if secret else {}


async def logs_in(creds: dict[str, str]) -> bool:
    try:
        conn = await asyncpg.connect(
            host=creds["PGHOST"],
            port=int(creds["PGPORT"]),
            user=creds["PGUSER"],
            password=creds["PGPASSWORD"],
            database=creds["PGDATABASE"],
            ssl="require",
        )
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
        return False  # a wrong password, or a role that may not log in
    await conn.close()
    return True


async def admin_fetch(servers: dict[str, str], sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(**postgres_admin_args(servers), ssl="require")
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def locked_with_its_data(servers: dict[str, str], creds: dict[str, str]) -> bool:
    """The service's role may no longer log in; the role and its database are still there."""
    role = "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1"
    rows = await admin_fetch(servers, role, creds["PGUSER"])
    assert rows, "the role is gone: its data may be too"
    database = "SELECT 1 FROM pg_database WHERE datname = $1"
    assert await admin_fetch(servers, database, creds["PGDATABASE"]), "its database is gone"
    return rows[0]["rolcanlogin"] is False


async def env_conditions(kube: KubeApi, service: str, env: str) -> dict[str, dict[str, Any]]:
    obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", service))
    assert obj is not None
    status = ((obj.get("status") or {}).get("environments") or {}).get(env) or {}
    return {c["type"]: c for c in status.get("conditions") or []}


async def generation(kube: KubeApi, namespace: str, name: str) -> int:
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", namespace, name))
    assert deployment is not None
    return int(deployment["metadata"]["generation"])


async def test_a_shared_role_rotates_once(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], admin: None
) -> None:
    """Two environments on one server with the default ``{service}-user`` share the role: a
    rotation gives it one new password, both projections get it, each Deployment rolls once."""
    one, two, name = f"rot1-{uid()}", f"rot2-{uid()}", f"rot-{uid()}"
    kubectl.apply(pg_environment(one, servers), pg_environment(two, servers))
    kubectl.apply(service_body(name, tags(**{one: "v1", two: "v1"}), postgres={"enabled": True}))

    async def both_projected() -> tuple[dict[str, str], dict[str, str]]:
        first, second = await projection(kube, one, name), await projection(kube, two, name)
        assert first
        assert second
        assert first["PGUSER"] == second["PGUSER"] == f"{name}-user"
        assert first["PGPASSWORD"] == second["PGPASSWORD"]
        await generation(kube, one, name)
        await generation(kube, two, name)
        return first, second

    before, _ = await eventually(both_projected)
    await asyncio.sleep(3)  # settled: nothing else is about to roll
    generations = [await generation(kube, one, name), await generation(kube, two, name)]

    kubectl("annotate", "bsvc", name, "bandsy.app/rotate-credentials=r1", "--overwrite")

    async def rotated() -> dict[str, str]:
        first, _ = await both_projected()
        assert first["PGPASSWORD"] != before["PGPASSWORD"]
        return first

    after = await eventually(rotated)
    assert await logs_in(after)
    assert not await logs_in(before)
    await asyncio.sleep(6)  # three resyncs: a second password would surface now
    first, second = await both_projected()
    assert first["PGPASSWORD"] == second["PGPASSWORD"] == after["PGPASSWORD"]
    assert [await generation(kube, one, name), await generation(kube, two, name)] == [
        generations[0] + 1,
        generations[1] + 1,
    ]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", one, two, "--wait=true", "--timeout=60s")


async def test_a_protected_environment_never_shares_a_role_with_an_unprotected_one(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], admin: None
) -> None:
    dev, prod, name = f"sdev-{uid()}", f"sprod-{uid()}", f"shr-{uid()}"
    kubectl.apply(
        pg_environment(dev, servers),
        pg_environment(prod, servers, protected=True),
    )
    kubectl.apply(service_body(name, tags(**{dev: "v1", prod: "v1"}), postgres={"enabled": True}))

    async def refused() -> bool:
        conditions = await env_conditions(kube, name, prod)
        for type_ in ("Ready", "DatabaseReady"):
            reason = conditions.get(type_, {}).get("reason")
            assert reason == "SharedCredentialsRefused", conditions
        assert "{env}" in conditions["DatabaseReady"]["message"]
        assert await projection(kube, dev, name)
        return True

    await eventually(refused)
    assert await projection(kube, prod, name) == {}  # develop's password never reaches it
    environment = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", prod))
    assert environment is not None
    database = [c for c in environment["status"]["conditions"] if c["type"] == "DatabaseReady"]
    assert database[0]["reason"] == "SharedCredentialsRefused", database

    # The fix the message names: a role of its own.
    kubectl.apply(
        pg_environment(
            prod, servers, protected=True, postgres={"userTemplate": "{service}-{env}-user"}
        )
    )

    async def own_role() -> dict[str, str]:
        creds = await projection(kube, prod, name)
        assert creds.get("PGUSER") == f"{name}-{prod}-user", creds
        return creds

    creds = await eventually(own_role)
    assert await logs_in(creds)
    assert creds["PGPASSWORD"] != (await projection(kube, dev, name))["PGPASSWORD"]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", dev, prod, "--wait=true", "--timeout=60s")


async def test_an_environment_deleted_under_a_running_reconcile_still_locks_its_roles(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    admin: None,
    operator: OperatorProcess,
) -> None:
    """The order CI once met: the environment's deletion is seen while a reconcile of its
    service is under way, and that reconcile writes its status before the finalizer reads
    it. The finalizer waits for the reconcile; whichever locks the role, it ends locked (the
    operator runs in this process to hold the service's turn; the session's is stopped)."""
    env, name = f"race-{uid()}", f"race-{uid()}"
    own = {"userTemplate": "{service}-{env}-user"}
    kubectl.apply(pg_environment(env, servers, postgres=own))
    kubectl.apply(service_body(name, tags(**{env: "v1"}), postgres={"enabled": True}))
    creds = await eventually(lambda: projection_with_database(kube, env, name))
    service_ref = ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name)

    async def recorded() -> bool:
        service = await kube.get(service_ref)
        assert service is not None
        return bool((service.get("status") or {}).get("databases"))

    await eventually(recorded)
    operator.stop()
    controller = Controller(kube, OperatorSettings())
    try:
        kubectl("delete", "benv", env, "--wait=false")
        deleting = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env))
        service = await kube.get(service_ref)
        assert deleting is not None
        assert service is not None
        controller.world.observe_environment(deleting)
        controller.world.observe_service(service)
        controller.services.hash_key = await controller.store.config_hash_key(create=False)
        async with controller._locks[service_key(name)]:  # the reconcile under way
            finalizing = asyncio.create_task(controller._handle(env_key(env)))
            await asyncio.sleep(1)
            assert not finalizing.done(), "the finalizer did not wait for the reconcile"
            await controller.services.reconcile(name, ReadMode.LIVE)
        await finalizing
    finally:
        await controller.stop()
        operator.start()

    assert await locked_with_its_data(servers, creds)
    assert not await logs_in(creds)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_service_deleted_with_its_environment_first_locks_its_role(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    admin: None,
    operator: OperatorProcess,
) -> None:
    """``kubectl delete -f`` of both: when the service's finalizer runs first, the
    environment's finds no account left to lock, so the service's locks it, and keeps its
    data even under ``reclaimPolicy: Delete`` as the environment's deletion promises."""
    env, name = f"both-{uid()}", f"both-{uid()}"
    own = {"userTemplate": "{service}-{env}-user"}
    kubectl.apply(pg_environment(env, servers, postgres=own))
    kubectl.apply(
        service_body(
            name, tags(**{env: "v1"}), postgres={"enabled": True, "reclaimPolicy": "Delete"}
        )
    )
    creds = await eventually(lambda: projection_with_database(kube, env, name))
    environment_ref = ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env)
    service_ref = ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name)
    operator.stop()
    controller = Controller(kube, OperatorSettings())
    try:
        kubectl("delete", "bsvc", name, "--wait=false")
        kubectl("delete", "benv", env, "--wait=false")
        for ref, observe in (
            (environment_ref, controller.world.observe_environment),
            (service_ref, controller.world.observe_service),
        ):
            deleting = await kube.get(ref)
            assert deleting is not None
            assert deleting["metadata"].get("deletionTimestamp")
            observe(deleting)
        await controller._handle(service_key(name))
        assert await kube.get(service_ref) is None
        controller.world.forget_service(controller.world.services[name].body)  # as its watch
        await controller._handle(env_key(env))
    finally:
        await controller.stop()
        operator.start()

    assert await locked_with_its_data(servers, creds)


async def test_a_changed_database_template_moves_nothing_silently(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], admin: None
) -> None:
    """With ``reclaimPolicy: Delete`` too: the old database is never dropped as a side effect
    of an environment edit; an explicit move starts over and keeps it."""
    env, name = f"mv-{uid()}", f"mv-{uid()}"
    kubectl.apply(pg_environment(env, servers))
    kubectl.apply(
        service_body(
            name, tags(**{env: "v1"}), postgres={"enabled": True, "reclaimPolicy": "Delete"}
        )
    )

    async def projected() -> dict[str, str]:
        creds = await projection(kube, env, name)
        assert creds.get("PGDATABASE"), creds
        return creds

    creds = await eventually(projected)
    old_database = creds["PGDATABASE"]
    assert old_database == f"{name}-{env}"
    moved_template = {"databaseTemplate": "{service}-{env}-v2"}
    kubectl.apply(pg_environment(env, servers, postgres=moved_template))

    async def refused() -> bool:
        conditions = await env_conditions(kube, name, env)
        assert conditions.get("Ready", {}).get("reason") == "DatabaseSettingsChanged", conditions
        assert old_database in conditions["Ready"]["message"]
        return True

    await eventually(refused)
    await asyncio.sleep(3)
    assert await admin_fetch(servers, "SELECT 1 FROM pg_database WHERE datname = $1", old_database)
    assert await projection(kube, env, name) == creds  # the service still uses its data
    assert await logs_in(creds)

    # An explicit move: the service starts over on the new settings; the old data stays.
    annotated = pg_environment(env, servers, postgres=moved_template)
    annotated["metadata"]["annotations"] = {"bandsy.app/move-databases": "true"}
    kubectl.apply(annotated)

    async def moved() -> dict[str, str]:
        creds = await projection(kube, env, name)
        assert creds.get("PGDATABASE") == f"{name}-{env}-v2", creds
        return creds

    assert await logs_in(await eventually(moved))
    await asyncio.sleep(3)
    assert await admin_fetch(servers, "SELECT 1 FROM pg_database WHERE datname = $1", old_database)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def test_an_environment_edit_arriving_mid_reconcile_moves_nothing(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    admin: None,
    operator: OperatorProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watch event of an environment edit may arrive while a reconcile of its service is
    under way. Here it arrives in that reconcile's first read (the operator runs in this
    process to place it there; the session's is stopped meanwhile): what the reconcile planned
    under the old settings, it builds under them too, and the next one refuses the move."""
    env, name = f"mid-{uid()}", f"mid-{uid()}"
    kubectl.apply(pg_environment(env, servers))
    kubectl.apply(service_body(name, tags(**{env: "v1"}), postgres={"enabled": True}))
    creds = await eventually(lambda: projection_with_database(kube, env, name))
    environment = ObjectRef("bandsy.app/v1alpha1", "BandsyEnvironment", "", env)
    before = await kube.get(environment)
    service = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
    assert before is not None
    assert service is not None

    operator.stop()
    controller = Controller(kube, OperatorSettings())
    try:
        kubectl.apply(
            pg_environment(env, servers, postgres={"databaseTemplate": "{service}-{env}-v2"})
        )
        edited = await kube.get(environment)
        assert edited is not None
        controller.world.observe_environment(before)
        controller.world.observe_service(service)
        controller.services.hash_key = await controller.store.config_hash_key(create=False)
        applier = controller.services.applier
        first_read = applier.observe

        async def read_with_the_edit_arriving(*args: Any) -> Any:
            controller.world.observe_environment(edited)
            return await first_read(*args)

        monkeypatch.setattr(applier, "observe", read_with_the_edit_arriving)
        await controller.services.reconcile(name, ReadMode.LIVE)
    finally:
        await controller.stop()
        operator.start()

    assert await projection(kube, env, name) == creds
    assert not await admin_fetch(
        servers, "SELECT 1 FROM pg_database WHERE datname = $1", f"{name}-{env}-v2"
    )

    async def refused() -> bool:
        conditions = await env_conditions(kube, name, env)
        assert conditions.get("Ready", {}).get("reason") == "DatabaseSettingsChanged", conditions
        return True

    await eventually(refused)
    assert await projection(kube, env, name) == creds
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")


async def projection_with_database(kube: KubeApi, env: str, name: str) -> dict[str, str]:
    creds = await projection(kube, env, name)
    assert creds.get("PGDATABASE"), creds
    return creds


async def test_deleting_an_environment_first_locks_its_services_roles(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str], admin: None
) -> None:
    env, other, name = f"gone-{uid()}", f"stay-{uid()}", f"orph-{uid()}"
    own = {"userTemplate": "{service}-{env}-user"}
    kubectl.apply(
        pg_environment(env, servers, postgres=own),
        pg_environment(other, servers, postgres=own),
    )
    kubectl.apply(service_body(name, tags(**{env: "v1", other: "v1"}), postgres={"enabled": True}))

    async def projected() -> dict[str, str]:
        creds = await projection(kube, env, name)
        assert creds.get("PGUSER"), creds
        assert await projection(kube, other, name)
        return creds

    creds = await eventually(projected)
    assert await logs_in(creds)
    kubectl("delete", "benv", env, "--wait=true", "--timeout=60s")

    await eventually(lambda: locked_with_its_data(servers, creds))
    assert not await logs_in(creds)
    # The service's other environment is untouched.
    assert await logs_in(await projection(kube, other, name))
    body = json.loads(kubectl("get", "bsvc", name, "-o", "json").stdout)
    assert env in body["spec"]["environments"]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")
    kubectl("delete", "benv", other, "--wait=true", "--timeout=60s")
