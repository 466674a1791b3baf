"""PostgreSQL through asyncpg: one login role and one owned database per service account.

Every statement that changes something runs only after a read showed it is needed, so a
converged account costs logins and SELECTs but no writes. Passwords reach the server only as
SCRAM verifiers.

The admin need not be a superuser: ``CREATEROLE CREATEDB`` (and INHERIT, the default) is enough,
as managed PostgreSQL services and Zalando's operator hand out. Such an admin makes itself a
member of each role it manages: ``CREATE DATABASE … OWNER`` and ``ALTER DATABASE … OWNER TO``
need that (PostgreSQL 16+: membership WITH SET), and holding the owner's privileges (INHERIT)
lets it connect to the database, whose CONNECT is revoked from PUBLIC, create trusted extensions
in it, and drop it. It cannot read ``pg_authid``: a password is then checked by logging in.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..naming import MAX_IDENTIFIER_BYTES, exchange_database, side_databases
from . import (
    Account,
    LoginRefusedError,
    PermissionDeniedError,
    Server,
    ServerReadOnlyError,
    ServerUnreachableError,
    StatementRefusedError,
)
from .scram import scram_sha256_verifier, verifier_matches

# Names come from templates; anything outside this set is refused before SQL is built.
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]*$")
CONNECT_TIMEOUT = 10.0
# A CREATEROLE admin may create a role with these (only their positive forms need more).
ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
# The same as (pg_roles column, wanted value, ALTER ROLE word to get there). A repair names only
# what differs: PostgreSQL 15 refuses NOSUPERUSER or NOREPLICATION from a non-superuser in
# ALTER ROLE even when they change nothing.
ROLE_ATTRIBUTE_REPAIRS = (
    ("rolcanlogin", True, "LOGIN"),
    ("rolsuper", False, "NOSUPERUSER"),
    ("rolcreatedb", False, "NOCREATEDB"),
    ("rolcreaterole", False, "NOCREATEROLE"),
    ("rolreplication", False, "NOREPLICATION"),
)


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
# Pass these through the extension step's "refused" mapping: they are no verdict on the spec.
_NOT_REFUSALS = (*UNREACHABLE, asyncpg.ReadOnlySQLTransactionError)
POOL_SIZE = 16
PoolKey = tuple[str, int, str, str, str]  # host, port, tls, admin user, admin password


# A role's attributes, and ``joined``: whether the admin may act as it (true for superusers).
# PostgreSQL 16 split membership into SET (become the role: needed to give it a database) and
# INHERIT (hold its privileges); the grant a CREATEROLE admin gets on the roles it creates has
# neither. Before 16 membership is both (for an INHERIT admin), and 'SET' is no privilege name.
_ROLE_QUERY_15 = (
    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
    " pg_has_role(oid, 'MEMBER') AS joined FROM pg_roles WHERE rolname = $1"
)
_ROLE_QUERY_16 = (
    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication,"
    " pg_has_role(oid, 'SET') AND pg_has_role(oid, 'USAGE') AS joined"
    " FROM pg_roles WHERE rolname = $1"
)


def _join_sql(role: str, version: int) -> str:
    """The admin grants itself ``role``: PostgreSQL 15 lets any CREATEROLE admin do that; 16+
    only with ADMIN OPTION on it, which a CREATEROLE admin holds on the roles it created."""
    options = " WITH INHERIT TRUE, SET TRUE" if version >= 16 else ""
    return f"GRANT {role} TO CURRENT_USER{options}"


def _admin_of(user: str) -> str:
    return (
        f"CREATEROLE (PostgreSQL 16+: and ADMIN OPTION on role {user!r}, which it holds on "
        "the roles it created)"
    )


def _server_says(error: asyncpg.PostgresError) -> str:
    """The server's message on one line, with its detail and hint (which often name the
    privilege that was missing)."""
    parts = [str(part) for part in (error.message, error.detail, error.hint) if part]
    return " ".join(parts[:1] + [f"({part})" for part in parts[1:]])


@dataclass(frozen=True)
class _Session:
    """One admin connection, and what error messages say about it."""

    server: Server
    admin: str
    conn: asyncpg.Connection

    @property
    def version(self) -> int:
        return int(self.conn.get_server_version().major)

    async def run(self, sql: str, refused: str, needs: str) -> None:
        """Execute ``sql``; a privilege error says what was refused and what the admin needs.
        (The SQL itself never goes into a message: it may hold a verifier.)"""
        try:
            await self.conn.execute(sql)
        except asyncpg.InsufficientPrivilegeError as error:
            raise PermissionDeniedError(
                f"postgres {self.server.address}: admin {self.admin!r} may not {refused}: "
                f"{_server_says(error)}; the admin needs {needs}"
            ) from None

    async def role(self, user: str) -> asyncpg.Record | None:
        """The role's attribute columns and ``joined``; None when there is no such role."""
        query = _ROLE_QUERY_16 if self.version >= 16 else _ROLE_QUERY_15
        return await self.conn.fetchrow(query, user)

    async def joined(self, user: str) -> bool | None:
        """Whether the admin may act as ``user``; None when there is no such role."""
        found = await self.role(user)
        return None if found is None else bool(found["joined"])

    async def join(self, user: str) -> None:
        await self.run(
            _join_sql(quote_identifier(user), self.version),
            f"make itself a member of role {user!r}",
            _admin_of(user),
        )


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
                # A new password of an admin retires the pool of its old one; another admin of
                # the same server (another environment's) keeps its own.
                for old in [k for k in self._pools if k[:4] == key[:4]]:
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
    async def _admin(self, server: Server) -> AsyncIterator[tuple[PoolKey, _Session]]:
        key, pool = await self._pool(server)
        try:
            async with _errors_mapped(server, key[3]), pool.acquire() as conn:
                yield key, _Session(server, key[3], conn)
        except ServerReadOnlyError:
            # Pooled sessions stay on a replica (or keep a read-only default): the next try
            # opens new ones, which may reach the new primary after a failover.
            await pool.expire_connections()
            raise

    @asynccontextmanager
    async def _connect(
        self, server: Server, database: str, *, user: str = "", password: str = "", needs: str = ""
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own: to a service's database, or as the service's user."""
        if not user:
            admin = await server.admin()
            user, password = admin.username, admin.password
        async with _errors_mapped(server, user, needs):
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
        repairs: list[str] = []
        async with self._admin(server) as (key, admin):
            existed = await self._ensure_role(admin, user, password, repairs)
            databases = [database]
            for side in (account.scratch_database, account.mirror_database):
                if side:
                    databases.append(validate_identifier(side, "database"))
            for name in databases:
                await self._ensure_database(admin, user, name, repairs)
            if existed and not await self._password_works(
                server, key, admin.conn, account, password
            ):
                verifier = quote_literal(scram_sha256_verifier(password))
                await admin.run(
                    f"ALTER ROLE {quote_identifier(user)} PASSWORD {verifier}",
                    f"reset the password of role {user!r}",
                    _admin_of(user),
                )
                repairs.append(f"reset password of role {user}")
        if account.extensions:
            # The scratch database too: a restore there as the service's role cannot create an
            # extension that needs the admin.
            for name in databases:
                await self._ensure_extensions(server, name, account.extensions, repairs)
        return repairs

    async def _ensure_role(
        self, admin: _Session, user: str, password: str, repairs: list[str]
    ) -> bool:
        """The role with its attributes, and the admin a member of it; whether it existed."""
        role = quote_identifier(user)
        found = await admin.role(user)
        if found is None:
            verifier = quote_literal(scram_sha256_verifier(password))
            await admin.run(
                f"CREATE ROLE {role} {ROLE_ATTRIBUTES} PASSWORD {verifier}",
                f"create role {user!r}",
                "CREATEROLE",
            )
            repairs.append(f"created role {user}")
            joined = await admin.joined(user)
        else:
            changes = [word for col, wanted, word in ROLE_ATTRIBUTE_REPAIRS if found[col] != wanted]
            if changes:
                needs = (
                    "SUPERUSER: only a superuser may change a superuser or replication role"
                    if found["rolsuper"] or found["rolreplication"]
                    else _admin_of(user)
                )
                await admin.run(
                    f"ALTER ROLE {role} {' '.join(changes)}",
                    f"set {' '.join(changes)} on role {user!r}",
                    needs,
                )
                repairs.append(f"reset attributes of role {user}")
            joined = found["joined"]
        if not joined:
            await admin.join(user)
        return found is not None

    async def _ensure_database(
        self, admin: _Session, user: str, database: str, repairs: list[str]
    ) -> None:
        role, db = quote_identifier(user), quote_identifier(database)
        found = await admin.conn.fetchrow(
            "SELECT pg_get_userbyid(datdba) AS owner, datacl::text[] AS acl"
            " FROM pg_database WHERE datname = $1",
            database,
        )
        acl: list[str] | None = None  # NULL: the defaults, with CONNECT and TEMP for PUBLIC
        if found is None:
            await admin.run(
                f"CREATE DATABASE {db} OWNER {role}",
                f"create database {database!r} owned by {user!r}",
                f"CREATEDB and membership in role {user!r}",
            )
            repairs.append(f"created database {database}")
        else:
            if found["owner"] != user:
                await admin.run(
                    f"ALTER DATABASE {db} OWNER TO {role}",
                    f"give database {database!r} of {found['owner']!r} to {user!r}",
                    f"CREATEDB, membership in role {user!r} and the privileges of role "
                    f"{found['owner']!r}",
                )
                repairs.append(f"gave database {database} to {user}")
            acl = found["acl"]
        if acl is None or any(item.startswith("=") for item in acl):
            await admin.run(
                f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
                f"revoke PUBLIC's access to database {database!r}",
                f"the privileges of its owner {user!r} (membership with INHERIT)",
            )

    async def _ensure_extensions(
        self, server: Server, database: str, extensions: tuple[str, ...], repairs: list[str]
    ) -> None:
        needs = "CONNECT on it: membership (with INHERIT) in its owner role"
        async with self._connect(server, database, needs=needs) as conn:
            present = {r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")}
            for extension in extensions:
                if extension in present:
                    continue
                name = validate_identifier(extension, "extension")
                try:
                    await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {quote_identifier(name)}")
                except _NOT_REFUSALS:
                    raise
                except asyncpg.PostgresError as error:
                    untrusted = (
                        "; an untrusted extension needs a superuser admin, or a superuser to "
                        "create it once"
                        if isinstance(error, asyncpg.InsufficientPrivilegeError)
                        else ""
                    )
                    raise StatementRefusedError(
                        f"postgres {server.address}: extension {name!r} in database "
                        f"{database!r}: {_server_says(error)}{untrusted}"
                    ) from None
                repairs.append(f"created extension {name}")

    async def retain(self, server: Server, account: Account) -> None:
        user = validate_identifier(account.user, "role")
        async with self._admin(server) as (_, admin):
            if await admin.conn.fetchval(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", user
            ):
                await admin.run(
                    f"ALTER ROLE {quote_identifier(user)} NOLOGIN",
                    f"set role {user!r} NOLOGIN",
                    _admin_of(user),
                )

    async def delete(self, server: Server, account: Account, keep_user: bool = False) -> None:
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        role = quote_identifier(user)
        # The databases made next to it go with it (their names follow from the database's,
        # whether backups or a mirror are still on or not).
        databases = [database, *side_databases(database)]
        async with self._admin(server) as (_, admin):
            joined = await admin.joined(user)
            if joined is False:  # a role another admin made: dropping its database needs this
                await admin.join(user)
            for name in databases:
                await _drop_database(admin, user, name)
            if keep_user or joined is None:
                return
            if await admin.conn.fetchval(
                "SELECT count(*) FROM pg_database d JOIN pg_roles r ON d.datdba = r.oid"
                " WHERE r.rolname = $1",
                user,
            ):
                # It owns a database kept on purpose (an environment's explicit move): the
                # role stays with it, locked, since dropping the role would need dropping it.
                await admin.run(
                    f"ALTER ROLE {role} NOLOGIN", f"set role {user!r} NOLOGIN", _admin_of(user)
                )
                return
            await admin.run(
                f"DROP OWNED BY {role}",
                f"drop what role {user!r} owns",
                f"the privileges of role {user!r} (membership with INHERIT)",
            )
            await admin.run(f"DROP ROLE {role}", f"drop role {user!r}", _admin_of(user))

    # -- restores (SPEC §11) --------------------------------------------------------------------

    async def prepare_restore(self, server: Server, account: Account, target: str) -> None:
        """An empty database ``target`` owned by the service's role, with its extensions, for a
        restore to fill; whatever an earlier attempt left under that name is dropped first."""
        user = validate_identifier(account.user, "role")
        name = validate_identifier(target, "database")
        async with self._admin(server) as (_, admin):
            await _act_as(admin, user)
            await _drop_database(admin, user, name)
            await self._ensure_database(admin, user, name, [])
        if account.extensions:
            await self._ensure_extensions(server, name, account.extensions, [])

    async def swap_in(self, server: Server, account: Account, restored: str, previous: str) -> bool:
        """``restored`` becomes the service's database; the one it replaces is kept as
        ``previous``. Sessions on it end (the service's pods reconnect to the new one). Both
        renames are one transaction: a crash leaves the old state or the new, never half.
        False when it was already done (a retry after a crash)."""
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        restored = validate_identifier(restored, "database")
        previous = validate_identifier(previous, "database")
        needs = f"the privileges of the owner {user!r} of the databases, and CREATEDB"
        async with self._admin(server) as (_, admin):
            found = {
                row["datname"]
                for row in await admin.conn.fetch(
                    "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])",
                    [database, restored, previous],
                )
            }
            if restored not in found:
                if {database, previous} <= found:
                    return False
                raise StatementRefusedError(
                    f"postgres {server.address}: the restored database {restored!r} is gone"
                )
            if previous in found:
                raise StatementRefusedError(
                    f"postgres {server.address}: {previous!r} exists already; nothing was swapped"
                )
            await _act_as(admin, user)
            renames = [(database, previous), (restored, database)]
            await _swap(admin, database, renames, replaced_as=previous, needs=needs)
        return True

    async def mirror_token(self, server: Server, account: Account) -> tuple[str, str]:
        """The mirror marks (``mirror <token>`` comments) on the service's database and on its
        mirror copy: which copy a finished mirror Job filled, after any swap."""
        database = validate_identifier(account.database, "database")
        mirror = validate_identifier(account.mirror_database, "database")
        async with self._admin(server) as (_, admin):
            rows = await admin.conn.fetch(
                "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') AS note"
                " FROM pg_database WHERE datname = ANY($1::text[])",
                [database, mirror],
            )
        notes = {row["datname"]: row["note"] for row in rows}
        return notes.get(database, ""), notes.get(mirror, "")

    async def exchange_mirror(self, server: Server, account: Account) -> None:
        """The mirror copy becomes the service's database and the service's database the next
        mirror copy, in one transaction; sessions on the service's database end first (its pods
        restart onto the new data)."""
        user = validate_identifier(account.user, "role")
        database = validate_identifier(account.database, "database")
        mirror = validate_identifier(account.mirror_database, "database")
        passing = validate_identifier(exchange_database(database), "database")
        needs = f"the privileges of the owner {user!r} of the databases, and CREATEDB"
        async with self._admin(server) as (_, admin):
            await _act_as(admin, user)
            renames = [(database, passing), (mirror, database), (passing, mirror)]
            await _swap(admin, database, renames, replaced_as=mirror, needs=needs, also=mirror)

    async def drop_database(self, server: Server, account: Account, name: str) -> None:
        """Drop one of the service's own databases other than its live one (a restore's)."""
        user = validate_identifier(account.user, "role")
        name = validate_identifier(name, "database")
        if name == account.database:
            raise ValueError(f"{name!r} is the service's live database")
        async with self._admin(server) as (_, admin):
            await _act_as(admin, user)
            await _drop_database(admin, user, name)


async def _act_as(admin: _Session, user: str) -> None:
    """Altering or dropping a database needs its owner's privileges: a role another admin
    made is joined first (as ``ensure`` does)."""
    if await admin.joined(user) is False:
        await admin.join(user)


async def _end_sessions(admin: _Session, database: str) -> None:
    """Only sessions the admin may end (all, for a superuser)."""
    await admin.conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pg_has_role(usesysid, 'USAGE')",
        database,
    )


async def _swap(
    admin: _Session,
    database: str,
    renames: list[tuple[str, str]],
    *,
    replaced_as: str,
    needs: str,
    also: str = "",
) -> None:
    """``database``'s data replaced by another database's: it is closed to new sessions, its
    sessions (and those of ``also``) end, and ``renames`` run in one transaction, so a crash
    leaves the old state or the new. The replaced data, named ``replaced_as`` by then (or still
    ``database`` if the renames failed), is open again either way."""
    await admin.run(
        f"ALTER DATABASE {quote_identifier(database)} WITH ALLOW_CONNECTIONS false",
        f"close database {database!r} to new sessions",
        needs,
    )
    swapped = False
    try:
        for name in (database, also):
            if name:
                await _end_sessions(admin, name)
        async with admin.conn.transaction():
            for old, new in renames:
                await admin.run(
                    f"ALTER DATABASE {quote_identifier(old)} RENAME TO {quote_identifier(new)}",
                    f"rename database {old!r} to {new!r}",
                    needs,
                )
        swapped = True
    finally:
        await admin.run(
            f"ALTER DATABASE {quote_identifier(replaced_as if swapped else database)}"
            " WITH ALLOW_CONNECTIONS true",
            "open the replaced database again",
            needs,
        )


async def _drop_database(admin: _Session, owner: str, name: str) -> None:
    await _end_sessions(admin, name)  # FORCE ends those of any other role
    await admin.run(
        f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)",
        f"drop database {name!r}",
        f"the privileges of its owner {owner!r} and of every role connected to it",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: admin work never LISTENs, SETs or opens cursors. asyncpg's default
    reset would send ``CLOSE ALL; UNLISTEN *; RESET ALL`` after every use."""


@asynccontextmanager
async def _errors_mapped(server: Server, user: str, needs: str = "") -> AsyncIterator[None]:
    """asyncpg's failures as the backend interface's: login refused, unreachable, read-only,
    permission denied (``needs``: what ``user`` would need), or a statement refused."""
    try:
        yield
    except asyncpg.InvalidPasswordError:  # a subclass of the next one
        raise LoginRefusedError(
            f"postgres {server.address}: password authentication failed for {user!r}"
        ) from None
    except asyncpg.InvalidAuthorizationSpecificationError as error:
        raise LoginRefusedError(f"postgres {server.address}: {error}") from None
    except UNREACHABLE as error:
        raise ServerUnreachableError(f"postgres {server.address} unreachable: {error}") from None
    except asyncpg.ReadOnlySQLTransactionError as error:
        raise ServerReadOnlyError(
            f"postgres {server.address} is read-only (a replica, say after a failover): "
            f"{error}; retrying"
        ) from None
    except asyncpg.InsufficientPrivilegeError as error:
        needed = f"; it needs {needs}" if needs else ""
        raise PermissionDeniedError(
            f"postgres {server.address}: {user!r} was refused: {_server_says(error)}{needed}"
        ) from None
    except asyncpg.PostgresError as error:
        raise StatementRefusedError(f"postgres {server.address}: {_server_says(error)}") from None
