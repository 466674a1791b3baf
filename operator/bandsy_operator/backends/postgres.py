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

from . import (
    Account,
    LoginRefusedError,
    Server,
    ServerUnreachableError,
    StatementRefusedError,
)
from .scram import scram_sha256_verifier, verifier_matches

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


# Also a server starting up, shutting down or in recovery: it answers, but cannot serve yet.
UNREACHABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
POOL_SIZE = 16
PoolKey = tuple[str, int, str, str, str]  # host, port, tls, admin user, admin password


class PostgresBackend:
    """Admin work runs on one small connection pool per server and admin credential: a
    converged account then costs two catalog reads on a warm connection, no handshake."""

    name = "postgres"

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool_size = pool_size
        self._pools: dict[PoolKey, asyncpg.Pool] = {}
        self._pools_lock = asyncio.Lock()
        # Whether the admin may read pg_authid (superusers may): then a password is checked
        # against the stored verifier instead of by logging in.
        self._reads_verifiers: dict[PoolKey, bool] = {}

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools), return_exceptions=True)

    async def _pool(self, server: Server) -> tuple[PoolKey, asyncpg.Pool]:
        admin = await server.admin()
        key = (server.host, server.port, server.tls, admin.username, admin.password)
        async with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                # A new admin password retires the pool of the old one.
                for old in [k for k in self._pools if k[:3] == key[:3]]:
                    await self._pools.pop(old).close()
                # min_size=0: creating the pool connects nothing; acquiring does.
                pool = self._pools[key] = await asyncpg.create_pool(
                    host=server.host,
                    port=server.port,
                    user=admin.username,
                    password=admin.password,
                    database="postgres",
                    ssl=ssl_argument(server.tls),
                    timeout=CONNECT_TIMEOUT,
                    min_size=0,
                    max_size=self.pool_size,
                    reset=_keep_session,
                )
        return key, pool

    @asynccontextmanager
    async def _admin(self, server: Server) -> AsyncIterator[tuple[PoolKey, asyncpg.Connection]]:
        key, pool = await self._pool(server)
        async with _errors_mapped(server, key[3]), pool.acquire() as conn:
            yield key, conn

    @asynccontextmanager
    async def _connect(
        self, server: Server, database: str, *, user: str = "", password: str = ""
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own: to a service's database, or as the service's user."""
        if not user:
            admin = await server.admin()
            user, password = admin.username, admin.password
        async with _errors_mapped(server, user):
            conn = await asyncpg.connect(
                host=server.host,
                port=server.port,
                user=user,
                password=password,
                database=database,
                ssl=ssl_argument(server.tls),
                timeout=CONNECT_TIMEOUT,
            )
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

    async def _password_works(
        self,
        server: Server,
        key: PoolKey,
        conn: asyncpg.Connection,
        account: Account,
        password: str,
    ) -> bool:
        if self._reads_verifiers.get(key, True):
            try:
                verifier = await conn.fetchval(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1", account.user
                )
            except asyncpg.InsufficientPrivilegeError:
                self._reads_verifiers[key] = False
            else:
                self._reads_verifiers[key] = True
                return verifier is not None and verifier_matches(password, verifier)
        return await self.can_login(server, account, password)

    async def ensure(self, server: Server, account: Account, password: str) -> list[str]:
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        role, db = quote_identifier(user), quote_identifier(database)
        repairs: list[str] = []
        async with self._admin(server) as (key, conn):
            found = await conn.fetchrow(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication"
                " FROM pg_roles WHERE rolname = $1",
                user,
            )
            if found is None:
                verifier = quote_literal(scram_sha256_verifier(password))
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

            if found is not None and not await self._password_works(
                server, key, conn, account, password
            ):
                verifier = quote_literal(scram_sha256_verifier(password))
                await conn.execute(f"ALTER ROLE {role} PASSWORD {verifier}")
                repairs.append(f"reset password of role {user}")

        if account.extensions:
            async with self._connect(server, database) as conn:
                present = {
                    r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")
                }
                for extension in account.extensions:
                    if extension not in present:
                        name = validate_identifier(extension, "extension")
                        try:
                            await conn.execute(
                                f"CREATE EXTENSION IF NOT EXISTS {quote_identifier(name)}"
                            )
                        except asyncpg.PostgresError as error:
                            if isinstance(error, UNREACHABLE):
                                raise
                            raise StatementRefusedError(
                                f"postgres {server.address}: extension {name!r} in database "
                                f"{database!r}: {error}"
                            ) from None
                        repairs.append(f"created extension {name}")
        return repairs

    async def retain(self, server: Server, account: Account) -> None:
        role = quote_identifier(validate_identifier(account.user, "role"))
        async with self._admin(server) as (_, conn):
            if await conn.fetchval(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", account.user
            ):
                await conn.execute(f"ALTER ROLE {role} NOLOGIN")

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        role, db = quote_identifier(user), quote_identifier(database)
        async with self._admin(server) as (_, conn):
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            await conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            if keep_user:
                return
            if await conn.fetchval(
                "SELECT count(*) FROM pg_database d JOIN pg_roles r ON d.datdba = r.oid"
                " WHERE r.rolname = $1",
                user,
            ):
                # It owns a database kept on purpose (an environment's explicit move): the
                # role stays with it, locked, since dropping the role would need dropping it.
                await conn.execute(f"ALTER ROLE {role} NOLOGIN")
                return
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user):
                await conn.execute(f"DROP OWNED BY {role}")
                await conn.execute(f"DROP ROLE {role}")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: admin work never LISTENs, SETs or opens cursors. asyncpg's default
    reset would send ``CLOSE ALL; UNLISTEN *; RESET ALL`` after every use."""


@asynccontextmanager
async def _errors_mapped(server: Server, user: str) -> AsyncIterator[None]:
    """asyncpg's failures as the backend interface's: refused, or unreachable."""
    try:
        yield
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise LoginRefusedError(f"postgres {server.address}: {error}") from None
    except asyncpg.InvalidPasswordError:
        raise LoginRefusedError(
            f"postgres {server.address}: password authentication failed for {user!r}"
        ) from None
    except UNREACHABLE as error:
        raise ServerUnreachableError(f"postgres {server.address} unreachable: {error}") from None
