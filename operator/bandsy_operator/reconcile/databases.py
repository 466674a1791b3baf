"""Per-service database accounts (SPEC §5): names, canonical credentials, server state,
projections, and reclaiming accounts a service no longer uses."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field

from ..backends import (
    Account,
    AdminCredentials,
    AdminLoader,
    Backend,
    BackendUnavailableError,
    Server,
    ServerUnreachableError,
)
from ..backends.postgres import InvalidIdentifierError, validate_identifier
from ..builders.credentials import mongo_env, postgres_env, redis_env
from ..builders.inputs import DatabasePeer
from ..constants import MOVE_DATABASES_ANNOTATION, PRODUCTION, ROTATE_CREDENTIALS_ANNOTATION
from ..credentials import CredentialStore
from ..kube import KubeApi, ObjectRef
from ..metrics import DATABASE_OPERATIONS
from ..models import (
    BACKENDS,
    Environment,
    MongoServer,
    PostgresServer,
    RedisServer,
    SecretRef,
    Service,
    server_key,
)
from ..naming import InvalidNameError, mirror_database, render_template, scratch_database
from ..observation import ReadMode, basis
from ..status import FALSE, TRUE, ConditionUpdate
from ..validation import Problem, sharing_refused

log = logging.getLogger(__name__)

DATABASE_READY = "DatabaseReady"
ADMIN_SECRET_TTL = 5.0
ServerSettings = PostgresServer | RedisServer | MongoServer
# Problems of planning an account, reported on DatabaseReady as well as Ready.
SHARED_CREDENTIALS_REFUSED = "SharedCredentialsRefused"
DATABASE_SETTINGS_CHANGED = "DatabaseSettingsChanged"
PLAN_PROBLEMS = frozenset(
    {
        "DatabaseNotConfigured",
        "InvalidDatabaseName",
        SHARED_CREDENTIALS_REFUSED,
        DATABASE_SETTINGS_CHANGED,
    }
)


class AdminSecretError(BackendUnavailableError):
    pass


@dataclass(frozen=True)
class AccountRef:
    """One account a service uses in one environment; its string form goes into status."""

    env: str
    backend: str
    server: str
    user: str
    scope: str  # database (postgres) or key prefix (redis)

    def __str__(self) -> str:
        return f"{self.env}|{self.backend}|{self.server}|{self.user}|{self.scope}"

    @property
    def role(self) -> tuple[str, str, str]:
        """The user on its server, which several environments may share."""
        return (self.backend, self.server, self.user)

    @property
    def data(self) -> tuple[str, str, str]:
        """The database (or key prefix) on its server."""
        return (self.backend, self.server, self.scope)

    def describe(self) -> str:
        return f"{self.user}@{self.server}/{self.scope}"

    @classmethod
    def parse(cls, entry: str) -> AccountRef:
        env, backend, server, user, scope = entry.split("|", 4)
        return cls(env, backend, server, user, scope)


@dataclass(frozen=True)
class PendingAccount:
    """An account whose server has not been asked yet to match it."""

    ref: AccountRef
    account: Account
    password: str = field(repr=False)


@dataclass
class DatabaseResult:
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    peers: list[DatabasePeer] = field(default_factory=list)
    accounts: list[AccountRef] = field(default_factory=list)
    # Asked for by ``DatabaseReconciler.credentials``, taken off by ``ensure``.
    pending: list[PendingAccount] = field(default_factory=list)
    failures: list[BackendUnavailableError] = field(default_factory=list)
    # Servers ("backend|host:port") that did not answer, and those that did (even to refuse).
    unreachable: set[str] = field(default_factory=set)
    reached: set[str] = field(default_factory=set)

    @property
    def retry(self) -> bool:
        return bool(self.failures)

    @property
    def condition(self) -> ConditionUpdate | None:
        """DatabaseReady, once every server was asked (None before, or without accounts)."""
        if self.pending:
            return None
        if self.failures:
            reason = self.failures[0].reason
            return ConditionUpdate(
                DATABASE_READY, FALSE, reason, "; ".join(map(str, self.failures))
            )
        if not self.accounts:
            return None
        return ConditionUpdate(
            DATABASE_READY,
            TRUE,
            "DatabaseReady",
            ", ".join(f"{a.backend} {a.user}@{a.server}" for a in self.accounts),
        )


def _enabled(service: Service) -> list[str]:
    return [backend for backend in BACKENDS if getattr(service.spec, backend).enabled]


def _settings(env: Environment, backend: str) -> ServerSettings | None:
    settings: ServerSettings | None = getattr(env.spec, backend)
    return settings


def _account(ref: AccountRef) -> Account:
    if ref.backend == "redis":
        return Account(ref.user, key_prefix=ref.scope)
    return Account(ref.user, database=ref.scope)


def account_for(service: Service, env: Environment, backend: str) -> tuple[AccountRef, Account]:
    """Names from the environment's templates; refused before any SQL when unsafe."""
    settings = _settings(env, backend)
    assert settings is not None
    user = render_template(settings.user_template, service.name, env.name)
    server = settings.address
    if isinstance(settings, PostgresServer):
        database = render_template(settings.database_template, service.name, env.name)
        validate_identifier(user, "role")
        validate_identifier(database, "database")
        scratch = scratch_database(database) if env.spec.backups is not None else ""
        copy = mirror_database(database) if settings.mirror is not None else ""
        for side in (scratch, copy):
            if side:
                validate_identifier(side, "database")
        account = Account(
            user,
            database=database,
            extensions=service.spec.postgres.extensions,
            scratch_database=scratch,
            mirror_database=copy,
        )
        return AccountRef(env.name, backend, server, user, database), account
    if isinstance(settings, MongoServer):
        database = render_template(settings.database_template, service.name, env.name)
        validate_identifier(user, "user")
        validate_identifier(database, "database")
        ref = AccountRef(env.name, backend, server, user, database)
        return ref, _account(ref)
    prefix = render_template(settings.key_prefix_template, service.name, env.name)
    return AccountRef(env.name, backend, server, user, prefix), Account(user, key_prefix=prefix)


class DatabaseReconciler:
    def __init__(
        self,
        api: KubeApi,
        store: CredentialStore,
        backends: Mapping[str, Backend],
        concurrency: int = 8,
    ) -> None:
        self.api = api
        self.store = store
        self.backends = backends
        self._limit = asyncio.Semaphore(concurrency)
        self._admins: dict[tuple[str, str], tuple[float, AdminCredentials]] = {}
        self._admin_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._user_locks: defaultdict[tuple[str, str, str], asyncio.Lock] = defaultdict(
            asyncio.Lock
        )

    def server(self, env: Environment, backend: str) -> Server:
        settings = _settings(env, backend)
        assert settings is not None
        tls = (
            settings.ssl_mode
            if isinstance(settings, PostgresServer)
            else ("require" if settings.tls else "disable")
        )
        return Server(
            settings.host, settings.port, tls, self._admin_loader(settings.admin_secret_ref)
        )

    def _admin_loader(self, ref: SecretRef) -> AdminLoader:
        key = (ref.namespace, ref.name)

        async def load() -> AdminCredentials:
            # Read at most every few seconds, by one of the account checks that all need it: a
            # rotation of the admin Secret is still seen at once for practical purposes.
            async with self._admin_locks[key]:
                cached = self._admins.get(key)
                if cached is not None and time.monotonic() - cached[0] < ADMIN_SECRET_TTL:
                    return cached[1]
                admin = await fetch()
                self._admins[key] = (time.monotonic(), admin)
                return admin

        async def fetch() -> AdminCredentials:
            secret = await self.api.get(ObjectRef("v1", "Secret", ref.namespace, ref.name))
            data = (secret or {}).get("data") or {}
            if "username" not in data or "password" not in data:
                raise AdminSecretError(
                    f"admin Secret {ref.namespace}/{ref.name} is missing or lacks the keys "
                    "username and password"
                )
            return AdminCredentials(
                base64.b64decode(data["username"]).decode(),
                base64.b64decode(data["password"]).decode(),
            )

        return load

    def plan(
        self,
        service: Service,
        env: Environment,
        environments: Mapping[str, Environment] | None = None,
        held: Set[AccountRef] = frozenset(),
    ) -> tuple[list[AccountRef], list[Problem]]:
        """The accounts the service needs here, or why it cannot have them (no I/O).
        ``environments``: all of them, for roles shared across protection; ``held``: the
        accounts the service holds now, whose server and database the environment's settings
        may not silently change."""
        accounts, problems = [], []
        for backend in _enabled(service):
            if _settings(env, backend) is None:
                problems.append(
                    Problem(
                        "DatabaseNotConfigured",
                        f"{backend} is enabled but environment {env.name!r} has no {backend} "
                        f"server (spec.{backend})",
                    )
                )
                continue
            try:
                ref = account_for(service, env, backend)[0]
            except (InvalidIdentifierError, InvalidNameError) as error:
                problems.append(Problem("InvalidDatabaseName", str(error)))
                continue
            refused = sharing_refused(env, environments or {}, backend, service.name)
            moved = _moved(ref, held, env)
            if refused:
                problems.append(_refused_problem(ref, env, refused))
            elif moved is not None:
                problems.append(_moved_problem(ref, moved, env))
            else:
                accounts.append(ref)
        return accounts, problems

    async def credentials(
        self,
        service: Service,
        env: Environment,
        recorded: Set[AccountRef] = frozenset(),
        mode: ReadMode = ReadMode.LIVE,
    ) -> DatabaseResult:
        """The credential of every account ``plan`` allowed (made if new, rotated when asked)
        and what the pods get: the credential store only, no database server is asked (see
        ``ensure``). With ``TRUSTED``, credentials of ``recorded`` accounts already read or
        written are not read again."""
        result = DatabaseResult()
        for backend in _enabled(service):
            settings = _settings(env, backend)
            assert settings is not None, "plan() refuses environments without the server"
            ref, account = account_for(service, env, backend)
            credential = await self.store.get_or_create(
                backend, ref.server, ref.user, basis(mode, ref in recorded)
            )
            token = service.meta.annotations.get(ROTATE_CREDENTIALS_ANNOTATION, "")
            if token and token != credential.rotation:
                # Environments sharing this role ask together; the store rotates it once.
                rotated = await self.store.rotate(credential, token)
                if rotated.password != credential.password:
                    log.info(
                        "%s/%s: the %s credential of %s answers rotation %r",
                        service.name,
                        env.name,
                        backend,
                        ref.user,
                        token,
                    )
                credential = rotated
            result.accounts.append(ref)
            result.credentials[backend] = self._projection(settings, ref, credential.password)
            if settings.egress_to is not None:
                result.peers.append(DatabasePeer(settings.port, settings.egress_to))
            result.pending.append(PendingAccount(ref, account, credential.password))
        return result

    async def ensure(
        self, env: Environment, result: DatabaseResult, only: Set[AccountRef] | None = None
    ) -> list[str]:
        """Each pending account of ``result`` (of ``only``, when given) is made on its server,
        or repaired to match: returns the repairs. A server that fails is on ``result``."""
        chosen = [p for p in result.pending if only is None or p.ref in only]
        result.pending = [p for p in result.pending if p not in chosen]
        repairs: list[str] = []
        for pending in chosen:
            backend, ref = pending.ref.backend, pending.ref
            try:
                # Environments of one service run concurrently and may share a user.
                async with self._user_locks[(backend, ref.server, ref.user)], self._limit:
                    repairs += await self.backends[backend].ensure(
                        self.server(env, backend), pending.account, pending.password
                    )
            except BackendUnavailableError as error:
                DATABASE_OPERATIONS.labels(backend, "ensure", "unreachable").inc()
                result.failures.append(type(error)(_redact(str(error), pending.password)))
                answered = not isinstance(error, ServerUnreachableError)
            else:
                DATABASE_OPERATIONS.labels(backend, "ensure", "success").inc()
                answered = True
            answers = result.reached if answered else result.unreachable
            answers.add(server_key(backend, ref.server))
        return repairs

    async def projections(self, service: Service, env: Environment) -> DatabaseResult:
        """What ``credentials`` would project, without making or rotating a credential: the
        stored ones only, and nothing is created (``bandsyctl render``)."""
        result = DatabaseResult()
        for ref in self.plan(service, env)[0]:
            settings = _settings(env, ref.backend)
            assert settings is not None
            credential = await self.store.get(ref.backend, ref.server, ref.user)
            password = credential.password if credential else "<not created yet>"
            result.accounts.append(ref)
            result.credentials[ref.backend] = self._projection(settings, ref, password)
            if settings.egress_to is not None:
                result.peers.append(DatabasePeer(settings.port, settings.egress_to))
        return result

    @staticmethod
    def _projection(settings: ServerSettings, ref: AccountRef, password: str) -> dict[str, str]:
        if isinstance(settings, PostgresServer):
            return postgres_env(
                settings.host, settings.port, settings.ssl_mode, ref.user, ref.scope, password
            )
        if isinstance(settings, MongoServer):
            return mongo_env(
                settings.host, settings.port, settings.tls, ref.user, ref.scope, password
            )
        return redis_env(settings.host, settings.port, settings.tls, ref.user, password, ref.scope)

    async def reclaim(
        self,
        stale: Iterable[AccountRef],
        in_use: Set[AccountRef],
        drop: Set[AccountRef],
        environments: Mapping[str, Environment],
    ) -> list[AccountRef]:
        """Retire accounts no longer used: the user is locked (Retain), or, for accounts in
        ``drop``, its data and the user are dropped (Delete). A user another account still
        uses (``in_use``: of any service) stays; data another account still uses, and
        production's, are never dropped. Returns what could not be reclaimed yet (server down)."""
        pending = []
        ordered = sorted(stale, key=str)
        for i, ref in enumerate(ordered):
            env = environments.get(ref.env)
            if env is None or _settings(env, ref.backend) is None:
                # Its finalizer locked every account recorded there; none is opened after.
                log.info("%s: environment %s is gone, its finalizer locked it", ref, ref.env)
                continue
            # One user for several environments (a template without {env}) is removed by the
            # last of them, once it owns no other database: DROP ROLE refuses before that.
            later = ordered[i + 1 :]
            shared = any(ref.role == other.role for other in (*in_use, *later))
            data_in_use = any(ref.data == other.data for other in in_use)
            backend = self.backends[ref.backend]
            server = self.server(env, ref.backend)
            account = _account(ref)
            dropping = ref in drop and ref.env != PRODUCTION and not data_in_use
            operation = "delete" if dropping else "retain"
            try:
                if dropping:
                    await backend.delete(server, account, keep_user=shared)
                    if not shared:
                        await self.store.forget(ref.backend, ref.server, ref.user)
                elif not shared:
                    await backend.retain(server, account)
            except BackendUnavailableError as error:
                DATABASE_OPERATIONS.labels(ref.backend, operation, "unreachable").inc()
                log.warning("cannot reclaim %s yet: %s", ref, error)
                pending.append(ref)
            else:
                DATABASE_OPERATIONS.labels(ref.backend, operation, "success").inc()
        return pending


def _moved(planned: AccountRef, held: Set[AccountRef], env: Environment) -> AccountRef | None:
    """An account the service holds in this environment on another server or database than
    the environment's settings now give: those settings changed under existing data. Only an
    explicit move (the environment's annotation) lets the service start over on the new ones."""
    if env.meta.annotations.get(MOVE_DATABASES_ANNOTATION) == "true":
        return None
    for ref in sorted(held, key=str):
        if (ref.env, ref.backend) == (planned.env, planned.backend) and (
            ref.server != planned.server or ref.scope != planned.scope
        ):
            return ref
    return None


def _moved_problem(planned: AccountRef, held: AccountRef, env: Environment) -> Problem:
    return Problem(
        DATABASE_SETTINGS_CHANGED,
        f"spec.{planned.backend} of environment {env.name!r} now gives "
        f"{planned.describe()}, but the service's data is at {held.describe()}: nothing was "
        "moved or dropped and the service keeps running on the old one. Revert the change "
        f"(host, port, databaseTemplate), or annotate the environment "
        f"{MOVE_DATABASES_ANNOTATION}=true to start over on the new settings (the old data "
        "is kept)",
    )


def _refused_problem(planned: AccountRef, env: Environment, unprotected: list[str]) -> Problem:
    return Problem(
        SHARED_CREDENTIALS_REFUSED,
        f"{planned.backend} role {planned.user!r} on {planned.server} is also the role of "
        f"unprotected environment(s) {', '.join(unprotected)}: whoever reads Secrets there "
        f"could log in to {env.name!r}. Give {env.name} its own role with {{env}} in "
        f'spec.{planned.backend}.userTemplate (e.g. "{{service}}-{{env}}-user"), or set '
        f"spec.{planned.backend}.allowSharedCredentials: true",
    )


def _redact(message: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
