"""PostgreSQL through asyncpg: one login role and one owned database per service account.

Every statement that changes something runs only after a read showed it is needed, so a
converged account costs logins and SELECTs but no writes. Passwords reach the server only as
SCRAM verifiers.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from . import Account, LoginRefusedError, Server, ServerUnreachableError
from .scram import scram_sha256_verifier

MAX_IDENTIFIER_BYTES = 63
# Names come from templates; anything outside this set is refused before SQL is built.
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")
CONNECT_TIMEOUT = 10.0
ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"


class InvalidIdentifierError(ValueError):
    pass


def validate_identifier(name: str, what: str) -> str:
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise InvalidIdentifierError(f"{what} {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if not _SAFE_NAME.match(name):
        raise InvalidIdentifierError(
            f"{what} {name!r} must match {_SAFE_NAME.pattern} (lowercase, digits, _ and -)"
        )
    return name


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ssl_argument(sslmode: str) -> Any:
    """asyncpg's ``ssl`` for a libpq sslmode; verify modes use the system trust store."""
    if sslmode == "disable":
        return False
    if sslmode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context()
        context.check_hostname = sslmode == "verify-full"
        return context
    return sslmode


UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError)


class PostgresBackend:
    name = "postgres"

    @asynccontextmanager
    async def _connect(
        self, server: Server, database: str = "postgres", *, user: str = "", password: str = ""
    ) -> AsyncIterator[asyncpg.Connection]:
        if not user:
            admin = await server.admin()
            user, password = admin.username, admin.password
        try:
            conn = await asyncpg.connect(
                host=server.host,
                port=server.port,
                user=user,
                password=password,
                database=database,
                ssl=ssl_argument(server.tls),
                timeout=CONNECT_TIMEOUT,
            )
        except asyncpg.InvalidAuthorizationSpecificationError as error:
            raise LoginRefusedError(f"postgres {server.address}: {error}") from None
        except asyncpg.InvalidPasswordError:
            raise LoginRefusedError(
                f"postgres {server.address}: password authentication failed for {user!r}"
            ) from None
        except UNREACHABLE as error:
            raise ServerUnreachableError(
                f"postgres {server.address} unreachable: {error}"
            ) from None
        try:
            yield conn
        finally:
            await conn.close()

    async def can_login(self, server: Server, account: Account, password: str) -> bool:
        try:
            async with self._connect(
                server, account.database, user=account.user, password=password
            ) as conn:
                await conn.fetchval("SELECT 1")
        except LoginRefusedError:
            return False
        return True

    async def ensure(self, server: Server, account: Account, password: str) -> list[str]:
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        role, db = quote_identifier(user), quote_identifier(database)
        repairs: list[str] = []
        async with self._connect(server) as conn:
            found = await conn.fetchrow(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication"
                " FROM pg_roles WHERE rolname = $1",
                user,
            )
            verifier = quote_literal(scram_sha256_verifier(password))
            if found is None:
                await conn.execute(f"CREATE ROLE {role} {ROLE_ATTRIBUTES} PASSWORD {verifier}")
                repairs.append(f"created role {user}")
            elif not found["rolcanlogin"] or any(
                found[k] for k in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication")
            ):
                await conn.execute(f"ALTER ROLE {role} {ROLE_ATTRIBUTES}")
                repairs.append(f"reset attributes of role {user}")

            owner = await conn.fetchrow(
                "SELECT pg_get_userbyid(datdba) AS owner, datacl::text[] AS acl"
                " FROM pg_database WHERE datname = $1",
                database,
            )
            if owner is None:
                await conn.execute(f"CREATE DATABASE {db} OWNER {role}")
                repairs.append(f"created database {database}")
                owner = {"owner": user, "acl": None}
            elif owner["owner"] != user:
                await conn.execute(f"ALTER DATABASE {db} OWNER TO {role}")
                repairs.append(f"gave database {database} to {user}")
            acl = owner["acl"]
            if acl is None or any(item.startswith("=") for item in acl):
                # NULL means the defaults, which include CONNECT and TEMP for PUBLIC.
                await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")

        if account.extensions:
            async with self._connect(server, database) as conn:
                present = {
                    r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")
                }
                for extension in account.extensions:
                    if extension not in present:
                        name = validate_identifier(extension, "extension")
                        await conn.execute(
                            f"CREATE EXTENSION IF NOT EXISTS {quote_identifier(name)}"
                        )
                        repairs.append(f"created extension {name}")

        if found is not None and not await self.can_login(server, account, password):
            async with self._connect(server) as conn:
                await conn.execute(f"ALTER ROLE {role} PASSWORD {verifier}")
            repairs.append(f"reset password of role {user}")
        return repairs

    async def retain(self, server: Server, account: Account) -> None:
        role = quote_identifier(validate_identifier(account.user, "role"))
        async with self._connect(server) as conn:
            if await conn.fetchval(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", account.user
            ):
                await conn.execute(f"ALTER ROLE {role} NOLOGIN")

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        role, db = quote_identifier(user), quote_identifier(database)
        async with self._connect(server) as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            if keep_user:
                return
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user):
                await conn.execute(f"DROP OWNED BY {role}")
                await conn.execute(f"DROP ROLE {role}")
