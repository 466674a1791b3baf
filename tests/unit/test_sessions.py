"""`bandsyctl db` sessions: the relay pod and its NetworkPolicy (pure), the libpq variables,
and the relay itself with real sockets."""

from __future__ import annotations

import asyncio

import pytest

from bandsy_operator.builders.inputs import DatabasePeer, ServiceInputs
from bandsy_operator.builders.service import build_service_objects
from bandsy_operator.builders.sessions import (
    build_db_session_pod,
    libpq_variables,
    pgpass_line,
)
from bandsy_operator.cli import main, split_passthrough
from bandsy_operator.models import EgressTarget
from bandsy_operator.promotion import Image
from bandsy_operator.relay import serve
from factories import environment, service

CREDENTIALS = {
    "PGHOST": "db.example",
    "PGPORT": "5432",
    "PGUSER": "api-user",
    "PGDATABASE": "api-develop",
    "PGSSLMODE": "verify-full",
    "PGPASSWORD": "s3cr:t\\",
}


def test_the_relay_pod_runs_restricted_and_ends_by_itself() -> None:
    pod = build_db_session_pod("api", "develop", "dev-ns", "op:1", ("10.0.0.5", 5432), "a1b2c3")
    assert pod["metadata"]["name"] == "api-db-session-a1b2c3"
    assert pod["metadata"]["namespace"] == "dev-ns"
    # Not the service's selector (its Service would route here), not the operator's.
    assert pod["metadata"]["labels"] == {
        "bandsy.app/environment": "develop",
        "bandsy.app/db-session-of": "api",
    }
    spec = pod["spec"]
    assert spec["activeDeadlineSeconds"] == 8 * 3600
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "bandsy_operator.relay", "10.0.0.5", "5432"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "PGPASSWORD" not in str(pod)  # the relay carries bytes, never credentials


def test_services_with_postgres_get_the_session_policy() -> None:
    api = service("api", {"develop": {"image": {"tag": "v1"}}}, postgres={"enabled": True})
    peer = DatabasePeer(5432, EgressTarget(cidr="10.0.0.5/32"))
    inputs = ServiceInputs(
        api, environment("develop"), Image("r/api", "v1"), b"k" * 32, database_peers=[peer]
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in build_service_objects(inputs, str)}
    policy = objects[("NetworkPolicy", "bandsy-db-session-api")]
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "bandsy.app/environment": "develop",
        "bandsy.app/db-session-of": "api",
    }
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]  # nothing reaches a relay but its port-forward
    assert policy["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]}
    ]
    web = service("web", {"develop": {"image": {"tag": "v1"}}})
    plain = ServiceInputs(web, environment("develop"), Image("r/web", "v1"), b"k" * 32)
    kinds = {o["metadata"]["name"] for o in build_service_objects(plain, str)}
    assert "bandsy-db-session-web" not in kinds


def test_libpq_verifies_the_server_by_name_and_connects_to_the_forward() -> None:
    variables = libpq_variables(CREDENTIALS, 40123)
    assert variables == {
        "PGHOST": "db.example",
        "PGHOSTADDR": "127.0.0.1",
        "PGPORT": "40123",
        "PGUSER": "api-user",
        "PGDATABASE": "api-develop",
        "PGSSLMODE": "verify-full",
    }
    assert "PGPASSWORD" not in variables
    assert pgpass_line(variables, CREDENTIALS["PGPASSWORD"]) == (
        "db.example:40123:api-develop:api-user:s3cr\\:t\\\\\n"
    )


async def test_the_relay_joins_each_connection_to_the_target() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    relay = await serve("127.0.0.1", target_port, listen_port=0)
    relay_port = relay.sockets[0].getsockname()[1]
    async with target, relay:
        for word in (b"hello", b"again"):
            reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
            writer.write(word)
            await writer.drain()
            assert await reader.readexactly(len(word)) == word.upper()
            writer.close()
            await writer.wait_closed()
        # A target that does not answer closes the client's connection.
        target.close()
        await target.wait_closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
        assert await reader.read(10) == b""
        writer.close()


def test_what_follows_the_first_double_dash_is_psqls() -> None:
    ours, psql = split_passthrough(["db", "api", "--env", "dev", "--", "-tAc", "select 1", "--"])
    assert (ours, psql) == (["db", "api", "--env", "dev"], ["-tAc", "select 1", "--"])
    assert split_passthrough(["status"]) == (["status"], [])
    with pytest.raises(SystemExit) as refused:
        main(["status", "--", "-x"])
    assert refused.value.code == 2
