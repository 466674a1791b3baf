"""Foundation: the real control plane, PostgreSQL with TLS, Redis with ACLs and the S3 API."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import botocore.exceptions
import pytest
import redis.asyncio as aioredis
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from redis.exceptions import NoPermissionError

from bandsy_dev.s3_server import REGION, S3Server
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


def s3_client(servers: dict[str, str], **overrides: Any) -> Any:
    """A boto3 S3 client as cluster.env describes it (TLS verified against its CA)."""
    args: dict[str, Any] = {
        "endpoint_url": servers["BANDSY_S3_ENDPOINT"],
        "region_name": servers["BANDSY_S3_REGION"],
        "aws_access_key_id": servers["BANDSY_S3_ACCESS_KEY_ID"],
        "aws_secret_access_key": servers["BANDSY_S3_SECRET_ACCESS_KEY"],
        "verify": servers["BANDSY_S3_CA_FILE"],
        # Path-style: the endpoint is an address, so there is no bucket host name. One attempt:
        # a refusal shows at once instead of after botocore's retries.
        "config": Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    }
    return boto3.client("s3", **{**args, **overrides})


def http_status(
    endpoint: str, method: str, path: str, body: bytes = b"", context: ssl.SSLContext | None = None
) -> int:
    """One raw request to ``endpoint`` (``http://`` or ``https://host:port``); its status."""
    scheme, _, address = endpoint.partition("://")
    host, port = address.rsplit(":", 1)
    conn = (
        http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
        if scheme == "https"
        else http.client.HTTPConnection(host, int(port), timeout=10)
    )
    try:
        conn.request(method, path, body=body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_s3_stores_lists_and_deletes_objects_over_verified_tls(servers: dict[str, str]) -> None:
    s3 = s3_client(servers)
    bucket = unique("backups")
    s3.create_bucket(Bucket=bucket)
    small, large = os.urandom(3 * 2**20), os.urandom(11 * 2**20)
    s3.put_object(Bucket=bucket, Key="dumps/develop/api/1.dump", Body=small)
    # What a backup of a large database does: boto3 switches to a multipart upload (5 MiB parts).
    parts = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
    s3.upload_fileobj(io.BytesIO(large), bucket, "dumps/develop/api/2.dump", Config=parts)
    s3.put_object(Bucket=bucket, Key="dumps/production/api/1.dump", Body=b"other environment")

    head = s3.head_object(Bucket=bucket, Key="dumps/develop/api/2.dump")
    assert head["ContentLength"] == len(large)
    assert head["ETag"].strip('"').endswith("-3")  # S3's ETag of a three-part upload
    for key, data in (("1.dump", small), ("2.dump", large)):
        body = s3.get_object(Bucket=bucket, Key=f"dumps/develop/api/{key}")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()

    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dumps/develop/")
    assert [o["Key"] for o in listed["Contents"]] == [
        "dumps/develop/api/1.dump",
        "dumps/develop/api/2.dump",
    ]
    s3.delete_object(Bucket=bucket, Key="dumps/develop/api/1.dump")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dumps/")
    assert [o["Key"] for o in listed["Contents"]] == [
        "dumps/develop/api/2.dump",
        "dumps/production/api/1.dump",
    ]
    for obj in listed["Contents"]:
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3_refuses_requests_not_signed_with_the_generated_key(servers: dict[str, str]) -> None:
    wrong_secret = s3_client(servers, aws_secret_access_key="not-" + "the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        wrong_secret.list_buckets()
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    unknown_key = s3_client(servers, aws_access_key_id="AKIA" + "0" * 16)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        unknown_key.list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    # moto's unsigned control API could switch authentication off: the harness refuses it.
    context = ssl.create_default_context(cafile=servers["BANDSY_S3_CA_FILE"])
    endpoint = servers["BANDSY_S3_ENDPOINT"]
    assert http_status(endpoint, "POST", "/moto-api/reset-auth", b"inf", context) == 403


def test_s3_speaks_https_only_with_a_certificate_of_the_harness_ca(
    servers: dict[str, str],
) -> None:
    # Without the CA file, the system's trust store rejects the chain.
    with pytest.raises(botocore.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        s3_client(servers, verify=True).list_buckets()
    # Plain HTTP gets no HTTP answer: the TLS handshake fails and the connection closes.
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        http_status(servers["BANDSY_S3_ENDPOINT"].replace("https://", "http://"), "GET", "/")


def test_s3_second_listener_serves_the_same_buckets(tmp_path: Path) -> None:
    # The node's path without a node: 127.0.0.2 stands in for the pods' gateway (any 127/8
    # address is loopback), so the second listener and its certificate name are exercised.
    server = S3Server(tmp_path / "s3", pod_gateway="127.0.0.2")
    server.start()
    variables = {
        "BANDSY_S3_REGION": REGION,
        "BANDSY_S3_ACCESS_KEY_ID": server.access_key_id,
        "BANDSY_S3_SECRET_ACCESS_KEY": server.secret_access_key,
        "BANDSY_S3_CA_FILE": str(server.ca_file),
    }
    try:
        clients = [
            s3_client({**variables, "BANDSY_S3_ENDPOINT": server.endpoint(host)})
            for host in ("127.0.0.1", "127.0.0.2")
        ]
        clients[0].create_bucket(Bucket="shared")
        clients[1].put_object(Bucket="shared", Key="k", Body=b"from the gateway")
        assert clients[0].get_object(Bucket="shared", Key="k")["Body"].read() == b"from the gateway"
    finally:
        server.stop()
    assert server.process is not None
    assert not server.process.running()  # stop() ends the launcher
