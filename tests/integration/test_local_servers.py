"""Foundation: the real control plane, PostgreSQL with TLS and Redis with ACLs."""

from __future__ import annotations

import json
import ssl
import time
import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from conftest import KubectlRunner

pytestmark = pytest.mark.integration

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.test.bandsy.app}
spec:
  group: test.bandsy.app
  scope: Cluster
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
          status: {type: object, properties: {phase: {type: string}}}
"""


def wait_for(predicate: object, timeout: float, interval: float = 0.5) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def widget_crd(kubectl: KubectlRunner) -> None:
    kubectl("apply", "-f", "-", input=WIDGET_CRD)
    kubectl("wait", "--for=condition=Established", "crd/widgets.test.bandsy.app", "--timeout=60s")


def test_api_server_reports_the_built_version(kubectl: KubectlRunner) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.37.2"
    assert version["clientVersion"]["gitVersion"] == "v1.37.2"


def test_deleted_namespace_disappears(kubectl: KubectlRunner) -> None:
    name = unique("ns")
    kubectl("create", "namespace", name)
    kubectl("-n", name, "create", "configmap", "content", "--from-literal=a=b")
    kubectl("delete", "namespace", name, "--wait=true", "--timeout=60s")
    gone = kubectl("get", "namespace", name, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def _owner_ref(kubectl: KubectlRunner, *target: str) -> dict[str, object]:
    obj = json.loads(kubectl("get", *target, "-o", "json").stdout)
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
    }


def _configmap_owned_by(namespace: str, name: str, owner: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
            "data": {"k": "v"},
        }
    )


def test_garbage_collector_removes_namespaced_dependent(kubectl: KubectlRunner) -> None:
    owner = unique("owner")
    kubectl("-n", "default", "create", "configmap", owner)
    ref = _owner_ref(kubectl, "-n", "default", "configmap", owner)
    kubectl("apply", "-f", "-", input=_configmap_owned_by("default", f"{owner}-child", ref))
    kubectl("-n", "default", "delete", "configmap", owner)
    wait_for(
        lambda: (
            kubectl("-n", "default", "get", "cm", f"{owner}-child", check=False).returncode != 0
        ),
        timeout=60,
    )


def test_garbage_collector_follows_cluster_scoped_custom_owner(
    kubectl: KubectlRunner, widget_crd: None
) -> None:
    owner = unique("widget")
    kubectl(
        "apply",
        "-f",
        "-",
        input=f"{{apiVersion: test.bandsy.app/v1, kind: Widget, "
        f"metadata: {{name: {owner}}}, spec: {{size: 1}}}}",
    )
    ref = _owner_ref(kubectl, "widget", owner)
    kubectl("apply", "-f", "-", input=_configmap_owned_by("default", f"{owner}-child", ref))
    assert kubectl("-n", "default", "get", "cm", f"{owner}-child").returncode == 0
    kubectl("delete", "widget", owner)
    wait_for(
        lambda: (
            kubectl("-n", "default", "get", "cm", f"{owner}-child", check=False).returncode != 0
        ),
        timeout=60,
    )


def test_custom_object_round_trips_with_status_subresource(
    kubectl: KubectlRunner, widget_crd: None
) -> None:
    name = unique("widget")
    kubectl(
        "apply",
        "-f",
        "-",
        input=f"{{apiVersion: test.bandsy.app/v1, kind: Widget, "
        f"metadata: {{name: {name}}}, spec: {{size: 3}}, status: {{phase: ignored}}}}",
    )
    created = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert created["spec"] == {"size": 3}
    assert "status" not in created  # status is only written through the subresource
    kubectl(
        "patch",
        "widget",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Ready"}}',
    )
    patched = json.loads(kubectl("get", "widget", name, "-o", "json").stdout)
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"] == {"size": 3}
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]
    kubectl("delete", "widget", name)


async def test_postgres_accepts_tls_and_verifies_against_the_ca(servers: dict[str, str]) -> None:
    ctx = ssl.create_default_context(cafile=servers["BANDSY_PG_CA_FILE"])
    conn = await asyncpg.connect(
        host=servers["BANDSY_PG_HOST"],
        port=int(servers["BANDSY_PG_PORT"]),
        user=servers["BANDSY_PG_ADMIN_USER"],
        password=servers["BANDSY_PG_ADMIN_PASSWORD"],
        database="postgres",
        ssl=ctx,
    )
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    conn = await asyncpg.connect(
        host=servers["BANDSY_PG_HOST"],
        port=int(servers["BANDSY_PG_PORT"]),
        user=servers["BANDSY_PG_ADMIN_USER"],
        password=servers["BANDSY_PG_ADMIN_PASSWORD"],
        database="postgres",
        ssl="require",
    )
    await conn.close()


async def test_postgres_refuses_plaintext_tcp(servers: dict[str, str]) -> None:
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(
            host=servers["BANDSY_PG_HOST"],
            port=int(servers["BANDSY_PG_PORT"]),
            user=servers["BANDSY_PG_ADMIN_USER"],
            password=servers["BANDSY_PG_ADMIN_PASSWORD"],
            database="postgres",
            ssl="disable",
        )


async def test_redis_acl_user_is_confined_to_its_prefix(servers: dict[str, str]) -> None:
    host, port = servers["BANDSY_REDIS_HOST"], int(servers["BANDSY_REDIS_PORT"])
    user = unique("svc")
    async with aioredis.Redis(
        host=host,
        port=port,
        username=servers["BANDSY_REDIS_ADMIN_USER"],
        password=servers["BANDSY_REDIS_ADMIN_PASSWORD"],
    ) as admin:
        await admin.execute_command(
            "ACL", "SETUSER", user, "reset", "on", ">s3cret-for-test", f"~{user}:*", "+@all"
        )
    async with aioredis.Redis(host=host, port=port, username=user, password="s3cret-for-test") as r:
        await r.set(f"{user}:key", "value")
        assert await r.get(f"{user}:key") == b"value"
        with pytest.raises(NoPermissionError):
            await r.set("other:key", "value")
