"""BandsyService reconciler: every environment's objects applied, stale ones pruned, status.

Order of effects, chosen for crash safety: (1) the build, which asks the credential store but
no database server about new accounts, (2) one status write: the inventory grows to include
everything about to be applied, the accounts list to include every new account (a new service's
write is its whole status, as its objects will give it once created), (3) new accounts
made on their servers, (4) apply, (5) prune what is no longer wanted, (6) status with the final
inventory. Nothing is pruned when any input failed to load or validate.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from .. import inventory, naming, promotion
from ..apply import Applied, Applier, is_managed
from ..backup.outcome import BACKUP_READY
from ..backup.outcome import condition as backup_condition
from ..builders.backup import build_restore_job
from ..builders.exposure import build_listener, exposure_problem
from ..builders.inputs import BackupPlan, MirrorPlan, ServedKinds, ServiceInputs
from ..builders.meta import selector_labels
from ..builders.migration import build_migration_job
from ..builders.service import build_service_objects, missing_provided_secrets
from ..checks import production_checks, production_ready
from ..concurrently import all_of
from ..constants import (
    CERTIFICATE_KIND,
    CHANGE_CAUSE_ANNOTATION,
    SERVICE_KIND,
    SKIP_GATES_ANNOTATION,
)
from ..events import EventRecorder, EventType
from ..kube import (
    KubeApi,
    Manifest,
    ObjectRef,
    Packed,
    packed,
    unpacked,
    without_managed_fields,
)
from ..listeners import GatewayListeners, is_listener, listener_ref
from ..migrations import Migration, succeeded
from ..models import Environment, Service, parse_identity
from ..observation import Basis, Observed, ReadMode, basis
from ..promotion import GateVerdict, Image, Readiness, carry_readiness
from ..resolver import HostResolver
from ..secrets_gen import random_secret
from ..status import (
    FALSE,
    READY,
    SUSPENDED,
    TRUE,
    UNKNOWN,
    ConditionUpdate,
    deployment_rollout,
    failing_replicasets,
    merge_conditions,
    now_rfc3339,
    summary,
    transitions,
)
from ..validation import Problem, environment_problems, exposure_refused
from ..world import Known, World
from .backups import BackupObserver
from .databases import PLAN_PROBLEMS, AccountRef, DatabaseReconciler, DatabaseResult
from .migrations import MigrationRunner, MigrationStep
from .mirrors import MirrorRunner, MirrorStep
from .restores import RestoreRunner, RestoreStep

log = logging.getLogger(__name__)

STALLED = "Stalled"
PROMOTION_BLOCKED = "PromotionBlocked"
EXPOSED = "Exposed"
DATABASE_READY = "DatabaseReady"
EXTERNAL_NOT_ALLOWED = "ExternalNotAllowed"
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
# While a provided secret is empty, how often its Secret is read again: the operator watches no
# Secrets, yet the service should be Ready soon after a person fills one in.
SECRET_RECHECK_SECONDS = 10.0
# Condition reasons posted as Normal Events: progress, not trouble.
QUIET_REASONS = ("Progressing", "Suspended", "Migrating", "AwaitingFirstBackup")
# Conditions that report a problem when True: False is their good state.
PROBLEM_CONDITIONS = (STALLED, PROMOTION_BLOCKED)


def event_for(cond: Mapping[str, Any], appeared: bool) -> EventType | None:
    """The Event a condition's transition deserves, or None. A problem is a Warning; a problem
    cleared, Ready reached or progress is Normal. A condition that first appears in its good
    state or in progress (every new service's) is no news: Ready, when reached, is. A Stalled
    condition going False is quiet: the Ready that follows tells."""
    good = cond["status"] == (FALSE if cond["type"] in PROBLEM_CONDITIONS else TRUE)
    quiet = good or cond["reason"] in QUIET_REASONS
    if cond["type"] == STALLED and cond["status"] != TRUE:
        return None
    if appeared and quiet and not (cond["type"] == READY and good):
        return None
    return "Normal" if quiet else "Warning"


@dataclass(frozen=True)
class Outcome:
    """What the controller should do next: back off and retry (a database is down), and/or
    come back after ``after`` seconds (a soak time elapsing, an upstream that just changed)."""

    retry: bool = False
    after: float | None = None
    # Database servers ("backend|host:port") that did not answer this time, and those that did.
    unreachable: frozenset[str] = frozenset()
    reached: frozenset[str] = frozenset()


class ReclaimPendingError(Exception):
    """A database server is unreachable: the deletion must be retried."""


class ObjectChangedError(Exception):
    """An object changed between the read of a live reconcile and its apply: retried."""


def _accounts(refs: Iterable[AccountRef]) -> list[str]:
    return sorted(map(str, refs))


@dataclass
class EnvironmentPlan:
    """One environment of one service: what to apply, or why not."""

    name: str
    # The environment as this reconcile planned it (None: not a valid one). Planning and
    # building read this one copy: an edit arriving in between is the next reconcile's, so
    # accounts refused under the new settings are never built from them.
    env: Environment | None = None
    problems: list[Problem] = field(default_factory=list)
    accounts: list[AccountRef] = field(default_factory=list)
    database: DatabaseResult | None = None
    verdict: GateVerdict | None = None
    objects: list[Manifest] = field(default_factory=list)
    # Inputs of the build, as this reconcile found them: the Deployment and the service Secret.
    observed: dict[ObjectRef, Observed] = field(default_factory=dict)
    deployment: Manifest | None = None  # as found before the apply
    # What may make the Deployment not Ready (SPEC §12): its pods (the failing ones at least)
    # and the ReplicaSets that own the failing ones.
    pods: list[Manifest] = field(default_factory=list)
    replicasets: list[Manifest] = field(default_factory=list)
    missing_secrets: list[str] = field(default_factory=list)
    inputs: ServiceInputs | None = None
    applied: list[Applied] = field(default_factory=list)
    migration: MigrationStep | None = None
    backup: dict[str, Any] | None = None  # status.environments.<env>.backup, when backed up
    migration_job: Manifest | None = None  # to create once the objects are applied
    restore: RestoreStep | None = None
    mirror: MirrorStep | None = None
    restore_job: Manifest | None = None  # to create once the objects are applied
    # The HTTPS listener for the service's host on the shared Gateway (not an object of ours).
    listener: Manifest | None = None
    # (reason, message): why the service, let out here, is not reachable from outside.
    unreachable: tuple[str, str] | None = None
    # Objects of ours that this build could not make but that must not be pruned.
    kept: frozenset[ObjectRef] = frozenset()

    def refs(self) -> frozenset[ObjectRef]:
        refs = {ObjectRef.of(obj) for obj in self.objects} | self.kept
        if self.listener is not None:
            refs.add(listener_ref(self.listener))
        return frozenset(refs)


def _presumed(plan: EnvironmentPlan) -> EnvironmentPlan:
    """The plan as if its objects had just been created as built: what the API server answers
    to a create (a Deployment at generation 1, no status yet). Never a database's readiness:
    its accounts are not asked for before they are recorded."""
    created = [{**obj, "metadata": {**obj["metadata"], "generation": 1}} for obj in plan.objects]
    return dataclasses.replace(plan, applied=[Applied(obj, changed=True) for obj in created])


def _without_gateway(plan: EnvironmentPlan) -> None:
    """The Gateway named is not there: no listener for it (its owner creates it first)."""
    plan.listener = None
    gateway = plan.env.spec.gateway if plan.env else None
    assert gateway is not None  # a listener is built for a Gateway only
    plan.unreachable = (
        "GatewayNotFound",
        f"no Gateway {gateway.namespace}/{gateway.name} (environment {plan.name!r}): "
        "its owner creates it",
    )


def service_secret(namespace: str, service: str) -> ObjectRef:
    """The Secret of a service's own keys, whose generated values every build keeps."""
    return ObjectRef("v1", "Secret", namespace, naming.secrets(service))


def deployment_ref(env: Environment, service: str) -> ObjectRef:
    return ObjectRef("apps/v1", "Deployment", env.namespace, service)


# -- images and readiness (pure) ----------------------------------------------------------------


def running_image(deployment: Manifest | None) -> Image | None:
    if deployment is None:
        return None
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return Image.parse(containers[0].get("image", "")) if containers else None


def ready_image(
    deployment: Manifest | None, pods: list[Manifest], replicasets: list[Manifest]
) -> Image | None:
    """What the Deployment runs Ready now (SPEC §6), or None: failing pods are not Ready."""
    rollout = deployment_rollout(deployment, pods, replicasets)
    return running_image(deployment) if rollout.ready else None


async def read_pods(api: KubeApi, env: Environment, service: str) -> list[Manifest]:
    """The service's pods in ``env``, as the API server has them now (its Deployment's
    selector: the pods of every ReplicaSet of it)."""
    pods = await api.list("v1", "Pod", env.namespace, labels=selector_labels(service, env.name))
    return [without_managed_fields(pod) for pod in pods]


async def read_replicasets(api: KubeApi, namespace: str, pods: list[Manifest]) -> list[Manifest]:
    """The ReplicaSets of the failing ``pods``: none, and no request, when nothing fails."""
    found = await all_of(
        *(
            api.get(ObjectRef("apps/v1", "ReplicaSet", namespace, name))
            for name in sorted(failing_replicasets(pods))
        )
    )
    return [replicaset for replicaset in found if replicaset is not None]


def desired_image(service: Service, env_name: str) -> Image:
    return Image(service.spec.image.repository, service.spec.environments[env_name].image.tag)


def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(str(value), RFC3339).replace(tzinfo=datetime.UTC)


def _recorded_image(env_status: Mapping[str, Any], prefix: str, repository: str) -> Image | None:
    """``<prefix>Image`` of an environment's status; statuses written before images were
    recorded have the tag only, which ran from the service's repository."""
    if image := env_status.get(f"{prefix}Image"):
        return Image.parse(str(image))
    if tag := env_status.get(f"{prefix}Tag"):
        return Image(repository, str(tag))
    return None


def recorded_readiness(env_status: Mapping[str, Any], repository: str) -> Readiness:
    return Readiness(
        _recorded_image(env_status, "ready", repository), _parse_time(env_status.get("readySince"))
    )


def current_image(
    deployment: Manifest | None, env_status: Mapping[str, Any], repository: str
) -> Image | None:
    """What runs: the Deployment's image, or, when the Deployment is gone (deleted by hand),
    the image last applied there, which a blocked environment brings back."""
    return running_image(deployment) or _recorded_image(env_status, "applied", repository)


def gate_input(
    service: Service,
    env: Environment,
    current: Image | None,
    upstream: Readiness | None,
    now: datetime.datetime,
    statuses: Mapping[str, Any],
) -> promotion.GateInput:
    """The promotion question for one environment; ``upstream`` is the upstream environment's
    readiness now (None when the service is not deployed there), ``statuses`` the service's
    ``status.environments`` (its history here dates a break glass, upstream's migrations say
    whether the image migrated there)."""
    env_status = statuses.get(env.name) or {}
    desired = desired_image(service, env.name)
    source = env.spec.promotion.from_
    migrated_upstream = None
    if service.spec.migrations is not None and source is not None:
        upstream_records = Migration.records(statuses.get(source) or {})
        migrated_upstream = succeeded(upstream_records, str(desired)) is not None
    return promotion.GateInput(
        desired=desired,
        current=current,
        tag_pattern=env.spec.image_policy.tag_pattern,
        frozen=env.spec.promotion.freeze,
        promotion_from=env.spec.promotion.from_,
        soak_seconds=env.spec.promotion.soak_seconds,
        upstream=upstream,
        skip_gates_tag=promotion.skip_gates_tag(
            service.meta.annotations, env.name, promotion.Rollout.history(env_status), now
        ),
        now=now,
        migrated_upstream=migrated_upstream,
    )


async def egress_addresses(
    resolver: HostResolver, service: Service, mode: ReadMode
) -> dict[str, tuple[str, ...]]:
    """The service's egress hosts resolved: afresh when everything is read (a resync)."""
    hosts = sorted({e.host for e in service.spec.egress if e.host is not None})
    found = await all_of(*(resolver.addresses(h, mode is ReadMode.LIVE) for h in hosts))
    return dict(zip(hosts, found, strict=True))


def service_inputs(
    service: Service,
    env: Environment,
    world: World,
    live_secret: Manifest | None,
    database: DatabaseResult,
    image: Image,
    hash_key: bytes,
    job_image: str | None = None,
    restored: str | None = None,
    mirror: MirrorStep | None = None,
    egress_addresses: Mapping[str, Sequence[str]] | None = None,
    kinds: ServedKinds | None = None,
) -> ServiceInputs:
    """Everything the builders need, from the world view and what was read from the cluster.
    Shared by the reconciler and ``bandsyctl render`` so both produce the same objects.
    ``job_image``: the operator's own, which runs backups (None: unknown, no backup CronJob)."""
    services = world.valid_services()
    # A dependency deleted since validation is skipped here; its deletion event queues this
    # service again, and that reconcile reports it.
    dependency_ports = {
        dep: port
        for dep in service.spec.depends_on
        if dep in services and (port := services[dep].spec.port)
    }
    existing = decode_secret(live_secret) if live_secret and is_managed(live_secret) else {}
    return ServiceInputs(
        service=service,
        env=env,
        image=image,
        hash_key=hash_key,
        dependency_ports=dependency_ports,
        dependents=world.dependents_of(service.name, env.name),
        existing_secrets=existing,
        credentials=database.credentials,
        database_peers=database.peers,
        backup=backup_plan(env, database, job_image),
        mirror=mirror_plan(service, env, database, job_image) if mirror and mirror.runs else None,
        restored=restored,
        mirrored=mirror.marker if mirror else None,
        egress_addresses=egress_addresses or {},
        kinds=kinds or ServedKinds(),
    )


def job_runners(namespace: str, service: str, *, mirrors: bool) -> frozenset[ObjectRef]:
    """The CronJobs a service's backups (and mirror) run from, with their pods' policy: what
    ``build_backup_objects`` makes when the operator knows its image."""
    refs = {
        ObjectRef("batch/v1", "CronJob", namespace, naming.backup_cronjob(service)),
        ObjectRef(
            "networking.k8s.io/v1", "NetworkPolicy", namespace, naming.backup_policy(service)
        ),
    }
    if mirrors:
        refs.add(ObjectRef("batch/v1", "CronJob", namespace, naming.mirror_cronjob(service)))
    return frozenset(refs)


def backup_plan(
    env: Environment, database: DatabaseResult, job_image: str | None
) -> BackupPlan | None:
    """The environment backs up the service's PostgreSQL database (SPEC §11)."""
    postgres = next((a for a in database.accounts if a.backend == "postgres"), None)
    if env.spec.backups is None or postgres is None or job_image is None:
        return None
    return BackupPlan(job_image, naming.scratch_database(postgres.scope))


def mirror_plan(
    service: Service, env: Environment, database: DatabaseResult, job_image: str | None
) -> MirrorPlan | None:
    """The environment refills the service's PostgreSQL database from another's (SPEC §11)."""
    postgres = next((a for a in database.accounts if a.backend == "postgres"), None)
    mirror = env.spec.postgres.mirror if env.spec.postgres else None
    if mirror is None or postgres is None or job_image is None:
        return None
    return MirrorPlan(
        job_image,
        mirror.from_,
        mirror.schedule,
        naming.mirror_database(postgres.scope),
        service.spec.postgres.scrub or "",
    )


def decode_secret(live: Manifest | None) -> dict[str, str]:
    if live is None:
        return {}
    data = live.get("data") or {}
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}


def awaits_a_person(service: Service, secret: Manifest | None) -> bool:
    """The service Secret still has a provided key empty (``SecretMissing``)."""
    values = decode_secret(secret)
    return any(key.generate is None and not values.get(key.name) for key in service.spec.secrets)


def guard_secret(objects: list[Manifest], secret: Observed) -> None:
    """The service Secret keeps values as they were when it was read (generated ones, and
    provided ones a person filled in, which it must never reset): it is applied only if it is
    still that version. An edit in between makes the apply fail, and the build is redone."""
    version = secret.resource_version
    if version is None:
        return
    ref = ObjectRef.of(secret.body or {})
    for obj in objects:
        if ObjectRef.of(obj) == ref:
            obj["metadata"]["resourceVersion"] = version


def needs_finalizer(known: Known[Service]) -> bool:
    """Whether deleting the service leaves anything the garbage collector cannot reclaim:
    database accounts (its spec asks for some, or its status records some) or a listener on a
    shared Gateway (it is exposed, or its inventory records one). Every object of its own
    carries its ownerReference, so a service with neither needs no finalizer: its deletion
    then costs no patch and no reconcile of ours. An invalid spec creates nothing: only what
    the status records counts."""
    if (service := known.model) is not None:
        spec = service.spec
        if spec.external or any(use.enabled for use in (spec.postgres, spec.redis, spec.mongo)):
            return True
    status = known.status
    return bool(status.get("databases")) or any(
        is_listener(ref) for ref in inventory.refs(inventory.recorded(status))
    )


class ServiceReconciler:
    def __init__(
        self,
        api: KubeApi,
        applier: Applier,
        recorder: EventRecorder,
        world: World,
        databases: DatabaseReconciler,
        hash_key: bytes,
    ) -> None:
        self.api = api
        self.applier = applier
        self.recorder = recorder
        self.world = world
        self.databases = databases
        self.hash_key = hash_key
        self.job_image: str | None = None  # set at start (controller)
        # The other projects' kinds the cluster serves: asked at start and every resync
        # (controller).
        self.kinds = ServedKinds()
        self.migrations = MigrationRunner(api)
        self.restores = RestoreRunner(api, databases)
        self.mirrors = MirrorRunner(api, databases)
        self.backups = BackupObserver(api, world)
        self._secrets: dict[ObjectRef, Packed] = {}  # each service Secret as last seen
        self.resolver = HostResolver()
        self.listeners = GatewayListeners(api)

    async def _prune(self, stale: Set[ObjectRef]) -> list[ObjectRef]:
        """Objects are deleted; listeners on shared Gateways are taken off them."""
        listeners = {ref for ref in stale if is_listener(ref)}
        released = await self.listeners.release(sorted(listeners))
        return released + await self.applier.prune(stale - listeners)

    async def _ensure_listener(self, plan: EnvironmentPlan, mode: ReadMode) -> None:
        if plan.listener is not None and not await self.listeners.ensure(plan.listener, mode):
            _without_gateway(plan)  # deleted since the build: the next reconcile prunes

    async def reconcile(self, name: str, mode: ReadMode = ReadMode.LIVE) -> Outcome:
        """Converge one service, reading what ``mode`` says (see ``observation``)."""
        known = self.world.services.get(name)
        if known is None or known.deleting:
            return Outcome()
        if known.model is None:
            await self._report_invalid(known)
            return Outcome()
        service = known.model
        if service.spec.suspend:
            await self._report_suspended(known, service)
            return Outcome()
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

        status = known.status
        previous = inventory.recorded(status)
        previous_accounts = {AccountRef.parse(a) for a in status.get("databases") or []}
        applied_before = inventory.refs(previous)
        plans = [
            self._validate(service, env, previous_accounts)
            for env in sorted(service.spec.environments)
        ]
        planned_accounts = {a for plan in plans for a in plan.accounts}
        await self._observe_workloads(service, plans, applied_before, mode)
        readiness = self._readiness_now(service, plans, status, now)
        # Environments are independent until the status is written: build them together.
        await all_of(
            *(
                self._build(
                    service,
                    plan,
                    previous_accounts,
                    applied_before,
                    readiness,
                    status,
                    now,
                    mode,
                )
                for plan in plans
                if not plan.problems
            )
        )

        healthy = all(not plan.problems for plan in plans)
        wanted: inventory.Inventory = {plan.name: plan.refs() for plan in plans if plan.objects}
        if not healthy:
            wanted = inventory.union(previous, wanted)
        grown = inventory.union(previous, wanted)
        recorded = previous_accounts | planned_accounts
        # Every object and account is recorded before it is created, in one write: a crash
        # leaves no orphan that no inventory names.
        if not previous:
            # A new service: its first write is its status as it will be once the objects are
            # created, so that the write after the apply finds nothing to change.
            presumed = self._status(service, [_presumed(p) for p in plans], status, grown, now)
            presumed["databases"] = _accounts(recorded)
            status = await self._publish(known, service, status, presumed)
        elif grown != previous or recorded != previous_accounts:
            status = await self._write_status(
                known,
                {
                    **status,
                    "inventory": inventory.serialize(grown),
                    "databases": _accounts(recorded),
                },
            )
        await all_of(
            *(self.databases.ensure(p.env, p.database) for p in plans if p.env and p.database)
        )

        applied = await all_of(
            *(
                self.applier.ensure_all(plan.objects, mode, applied_before, plan.observed)
                for plan in plans
            )
        )
        if any(result.outdated for results in applied for result in results):
            # Built from a presumption the server refuted: read everything and build again.
            if mode is ReadMode.LIVE:
                raise ObjectChangedError(f"{name}: an object changed while it was reconciled")
            return await self.reconcile(name, ReadMode.LIVE)
        await all_of(*(self._ensure_listener(plan, mode) for plan in plans))
        # The objects a migration reads (ConfigMap, Secrets, its NetworkPolicy) exist now.
        jobs = [job for p in plans for job in (p.migration_job, p.restore_job) if job]
        await all_of(*(self.migrations.start(job) for job in jobs))
        for plan, results in zip(plans, applied, strict=True):
            plan.applied = results
            self._remember_inputs(plan)
            refused = [a.live for a in results if a.refused and a.live is not None]
            plan.problems += [unmanaged_problem(obj) for obj in refused]
        accounts = planned_accounts
        if healthy and all(not plan.problems for plan in plans):
            stale = inventory.stale(previous, wanted)
            pruned = await self._prune(stale)
            self._forget(stale)
            if pruned:
                log.info("%s: pruned %s", name, ", ".join(map(str, pruned)))
            retired = previous_accounts - planned_accounts
            if retired:  # scanning every service for shared users is for this case only
                accounts |= set(await self._reclaim(service, retired, planned_accounts))
        else:
            wanted = grown
            accounts |= previous_accounts

        new_status = self._status(service, plans, status, wanted, now)
        new_status["databases"] = _accounts(accounts)
        await self._publish(known, service, status, new_status)
        return self._outcome(plans, status, new_status, self._upstreams(service))

    async def _reclaim(
        self, service: Service, retired: set[AccountRef], planned: set[AccountRef]
    ) -> list[AccountRef]:
        """Accounts the service gave up. Their data goes only with ``reclaimPolicy: Delete``
        and only when the service left that environment or backend: an account retired because
        the environment's settings moved (an explicit move) keeps its data."""
        delete = service.spec.postgres.reclaim_policy == "Delete"
        still_planned = {(a.env, a.backend) for a in planned}
        drop = {a for a in retired if delete and (a.env, a.backend) not in still_planned}
        return await self._retire(
            retired, self._accounts_in_use(exclude=service.name) | planned, drop
        )

    async def _retire(
        self, accounts: set[AccountRef], in_use: set[AccountRef], drop: set[AccountRef]
    ) -> list[AccountRef]:
        """Reclaim ``accounts``; returns those pending. One in an environment being deleted is
        locked here and never dropped, whichever of the two finalizers or this reconcile comes
        first: that environment's deletion keeps its services' data."""
        environments = self.world.valid_environments()
        return await self.databases.reclaim(
            accounts,
            in_use,
            {a for a in drop if a.env in environments},
            self.world.parsed_environments(),
        )

    def _upstreams(self, service: Service) -> set[str]:
        """The service's environments that another of its environments promotes from."""
        environments = self.world.valid_environments()
        return {
            upstream
            for name in service.spec.environments
            if name in environments
            and (upstream := environments[name].spec.promotion.from_) is not None
        }

    @staticmethod
    def _outcome(
        plans: list[EnvironmentPlan],
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        upstreams: set[str],
    ) -> Outcome:
        waits = [p.verdict.retry_after for p in plans if p.verdict and p.verdict.retry_after]
        if any(p.missing_secrets for p in plans):  # soon after a person fills them in
            waits.append(SECRET_RECHECK_SECONDS)
        if any(p.restore is not None and p.restore.deferred for p in plans):
            waits.append(0.0)
        old_envs, new_envs = before.get("environments") or {}, after.get("environments") or {}
        # What runs Ready upstream changed (came or went): downstream gates decide again now.
        if any(
            (old_envs.get(env) or {}).get("readyImage")
            != (new_envs.get(env) or {}).get("readyImage")
            for env in upstreams
        ):
            waits.append(0.0)
        databases = [p.database for p in plans if p.database is not None]
        return Outcome(
            retry=any(d.retry for d in databases),
            after=min(waits) if waits else None,
            unreachable=frozenset().union(*(d.unreachable for d in databases)),
            reached=frozenset().union(*(d.reached for d in databases)),
        )

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """The service is being deleted: remove everything in its inventory and reclaim its
        database accounts. Raises ReclaimPendingError while a server is unreachable."""
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        stale = inventory.stale(inventory.recorded(status), {})
        pruned = await self._prune(stale)
        self._forget(stale)
        log.info("%s deleted: removed %d objects", name, len(pruned))
        accounts = {AccountRef.parse(a) for a in status.get("databases") or []}
        if not accounts:
            return
        policy = ((body.get("spec") or {}).get("postgres") or {}).get("reclaimPolicy", "Retain")
        pending = await self._retire(
            accounts, self._accounts_in_use(exclude=name), accounts if policy == "Delete" else set()
        )
        if pending:
            raise ReclaimPendingError(", ".join(map(str, pending)))

    def _accounts_in_use(self, exclude: str) -> set[AccountRef]:
        """Every account other services hold."""
        used: set[AccountRef] = set()
        for other, known in self.world.services.items():
            if other != exclude:
                used |= {AccountRef.parse(a) for a in known.status.get("databases") or []}
        return used

    # -- planning -------------------------------------------------------------------------------

    def _validate(self, service: Service, env_name: str, held: set[AccountRef]) -> EnvironmentPlan:
        """Problems and database account names: everything knowable without I/O."""
        environments = self.world.valid_environments()
        plan = EnvironmentPlan(env_name, environments.get(env_name))
        plan.problems = environment_problems(
            service, env_name, environments, self.world.valid_services()
        )
        if plan.env is not None and not plan.problems:
            plan.accounts, problems = self.databases.plan(service, plan.env, environments, held)
            plan.problems += problems
        return plan

    async def _observe_workloads(
        self,
        service: Service,
        plans: list[EnvironmentPlan],
        applied_before: frozenset[ObjectRef],
        mode: ReadMode,
    ) -> None:
        """Each environment's Deployment as it is before this reconcile changes anything: the
        gates of every environment read their upstream's."""

        async def observe(plan: EnvironmentPlan, env: Environment) -> None:
            ref = deployment_ref(env, service.name)
            remembered = self.world.workload(env.namespace, service.name)
            found = await self.applier.observe(ref, basis(mode, ref in applied_before), remembered)
            plan.deployment = found.body
            plan.observed[ref] = found
            if found.body is not None:
                plan.pods = await self._observe_pods(env, service.name, found.body, mode)
                plan.replicasets = await read_replicasets(self.api, env.namespace, plan.pods)

        await all_of(*(observe(p, p.env) for p in plans if p.env is not None))

    async def _observe_pods(
        self, env: Environment, service: str, deployment: Manifest, mode: ReadMode
    ) -> list[Manifest]:
        """The service's failing pods in ``env``, as the pod watch keeps them. A live reconcile
        lists them instead where something may fail: a Deployment that is not Ready (at
        start-up the watch may not have told yet) or pods the watch says fail (it may have
        missed their deletion). A Ready Deployment without failing pods costs no request."""
        remembered = self.world.failing_pods(env.namespace, service)
        if basis(mode, recorded=True) is Basis.READ:
            rollout = deployment_rollout(deployment)
            if remembered or (rollout.replicas > 0 and not rollout.ready):
                listed = await read_pods(self.api, env, service)
                self.world.observe_pods(env.namespace, service, listed)
                return self.world.failing_pods(env.namespace, service)
        return remembered

    @staticmethod
    def _readiness_now(
        service: Service,
        plans: list[EnvironmentPlan],
        status: Mapping[str, Any],
        now: datetime.datetime,
    ) -> dict[str, Readiness]:
        """Per environment, what runs Ready there now and since when without interruption."""
        old = status.get("environments") or {}
        repository = service.spec.image.repository
        return {
            plan.name: carry_readiness(
                ready_image(plan.deployment, plan.pods, plan.replicasets),
                recorded_readiness(old.get(plan.name) or {}, repository),
                now,
            )
            for plan in plans
            if plan.observed
        }

    async def _build(
        self,
        service: Service,
        plan: EnvironmentPlan,
        known_accounts: set[AccountRef],
        applied_before: frozenset[ObjectRef],
        readiness: Mapping[str, Readiness],
        previous: Mapping[str, Any],
        now: datetime.datetime,
        mode: ReadMode,
    ) -> None:
        env = plan.env
        assert env is not None, "plans without their environment have problems: not built"
        statuses = previous.get("environments") or {}
        old_status = statuses.get(plan.name) or {}
        source = env.spec.promotion.from_
        current = current_image(plan.deployment, old_status, service.spec.image.repository)
        verdict = promotion.evaluate(
            gate_input(
                service,
                env,
                current,
                readiness.get(source) if source is not None else None,
                now,
                statuses,
            )
        )
        plan.database = await self.databases.credentials(service, env, known_accounts, mode)
        # Accounts recorded before are made sure of now, before the steps that work on their
        # servers; their repairs are drift. New ones wait for the status write that records them.
        drift = await self.databases.ensure(env, plan.database, known_accounts)
        if drift:
            await self.recorder.post(
                SERVICE_KIND,
                service.meta,
                "Warning",
                "DriftRepaired",
                f"{plan.name}: {'; '.join(drift)}",
            )
        secret_ref = service_secret(env.namespace, service.name)
        remembered = unpacked(kept) if (kept := self._secrets.get(secret_ref)) else None
        known = basis(mode, secret_ref in applied_before)
        if known is Basis.REMEMBERED and awaits_a_person(service, remembered):
            # A person fills it in, and the operator does not watch Secrets: read it.
            known = Basis.READ
        secret = await self.applier.observe(secret_ref, known, remembered)
        plan.observed[secret_ref] = secret
        values = [*decode_secret(secret.body).values()]
        values += [v for keys in plan.database.credentials.values() for v in keys.values()]
        plan.migration = await self.migrations.step(
            service, env, verdict, current, old_status, values, mode
        )
        plan.verdict = plan.migration.verdict
        if plan.verdict.gates_skipped:
            await self.recorder.post(
                SERVICE_KIND,
                service.meta,
                "Warning",
                "GatesSkipped",
                f"{plan.name}: {plan.verdict.image_to_apply} rolled out past the promotion "
                f"gates ({SKIP_GATES_ANNOTATION})",
            )
        image = plan.verdict.image_to_apply or desired_image(service, env.name)
        postgres = next((a for a in plan.database.accounts if a.backend == "postgres"), None)
        if postgres is None or postgres in known_accounts:
            plan.restore = await self.restores.step(
                service,
                env,
                self.world.valid_environments(),
                postgres,
                old_status.get("restore"),
                now,
                self.job_image,
            )
        else:  # its server learns the account only after this reconcile's status write
            plan.restore = self.restores.deferred(service, env, old_status.get("restore"))
        plan.mirror = await self.mirrors.step(
            service, env, self.world.valid_environments(), postgres, old_status.get("mirror")
        )
        plan.inputs = service_inputs(
            service,
            env,
            self.world,
            secret.body,
            plan.database,
            image,
            self.hash_key,
            self.job_image,
            restored=plan.restore.marker,
            mirror=plan.mirror,
            egress_addresses=await egress_addresses(self.resolver, service, mode),
            kinds=self.kinds,
        )
        plan.objects = build_service_objects(plan.inputs, random_secret)
        if self.job_image is None and env.spec.backups is not None and postgres is not None:
            # Not knowing the image they run (its own pod not found: being deleted, say), the
            # operator cannot build the backup and mirror CronJobs. Those that exist stay, and
            # with them their Jobs: pruning a CronJob deletes its Jobs, outcomes not yet taken in.
            runs = job_runners(env.namespace, service.name, mirrors=plan.mirror.runs)
            plan.kept = runs & applied_before
        plan.listener = build_listener(plan.inputs)
        plan.unreachable = exposure_problem(plan.inputs)
        if plan.listener is not None and not await self.listeners.gateway_exists(
            plan.listener, mode
        ):
            _without_gateway(plan)
            plan.objects = [o for o in plan.objects if o["kind"] != CERTIFICATE_KIND]
        guard_secret(plan.objects, secret)
        if plan.inputs.backup is not None:
            plan.backup = await self.backups.status(
                env, service.name, old_status.get("backup") or {}, mode
            )
        restore = plan.restore
        if restore.start is not None and env.spec.backups and self.job_image:
            plan.restore_job = build_restore_job(
                plan.inputs, env.spec.backups, self.job_image, restore.start, restore.target
            )
        migrations = service.spec.migrations
        if migrations is not None and plan.migration.start is not None:
            plan.migration_job = build_migration_job(plan.inputs, migrations, plan.migration.start)
        if plan.verdict.image_to_apply is None:  # blocked before its first rollout
            plan.objects = [o for o in plan.objects if o["kind"] != "Deployment"]
        plan.missing_secrets = missing_provided_secrets(plan.inputs)

    def _remember_inputs(self, plan: EnvironmentPlan) -> None:
        """What a reconcile a watch event triggered reads instead of the API server: each
        Deployment as applied (its watch events keep it current) and each service Secret, whose
        generated values the next build keeps. A live reconcile reads both again."""
        if plan.inputs is None:
            return
        secret_ref = service_secret(plan.inputs.namespace, plan.inputs.name)
        for result in plan.applied:
            live = result.live
            if live is None:
                continue
            if live["kind"] == "Deployment":
                self.world.observe_workload(live)
            elif ObjectRef.of(live) == secret_ref:
                self._secrets[secret_ref] = packed(live)

    def _forget(self, refs: Iterable[ObjectRef]) -> None:
        for ref in refs:
            self._secrets.pop(ref, None)

    def deleted(self, known: Known[Service]) -> None:
        """The service is gone without a finalizer of ours: the garbage collector removes its
        objects, and what this reconciler remembered of them goes too (a service created again
        under its name starts from the server's state, and memory does not grow)."""
        refs = inventory.refs(inventory.recorded(known.status))
        self._forget(refs)
        self.applier.forget(refs)

    # -- status ---------------------------------------------------------------------------------

    def _status(
        self,
        service: Service,
        plans: list[EnvironmentPlan],
        previous: Mapping[str, Any],
        wanted: inventory.Inventory,
        moment: datetime.datetime,
    ) -> dict[str, Any]:
        now = moment.strftime(RFC3339)
        generation = service.meta.generation
        old_envs: Mapping[str, Any] = previous.get("environments") or {}
        environments = {
            plan.name: self._environment_status(
                service, plan, old_envs.get(plan.name) or {}, generation, moment
            )
            for plan in plans
        }
        blocked = [
            (plan.name, plan.verdict)
            for plan in plans
            if plan.verdict is not None and not plan.verdict.allowed
        ]
        if blocked:
            promotion_blocked = ConditionUpdate(
                PROMOTION_BLOCKED,
                TRUE,
                str(blocked[0][1].reason),
                "; ".join(f"{env}: {verdict.message}" for env, verdict in blocked),
            )
        else:
            promotion_blocked = ConditionUpdate(PROMOTION_BLOCKED, FALSE, "Promoted", "")
        not_ready = [
            (env, cond)
            for env, status in environments.items()
            for cond in status["conditions"]
            if cond["type"] == READY and cond["status"] != TRUE
        ]
        problems = [(plan.name, p) for plan in plans for p in plan.problems]
        if not plans:
            ready = ConditionUpdate(READY, TRUE, "NoEnvironments", "not deployed anywhere")
        elif not_ready:
            _, cond = not_ready[0]
            message = "; ".join(f"{e}: {c['message']}" for e, c in not_ready)
            ready = ConditionUpdate(READY, FALSE, cond["reason"], message)
        else:
            ready = ConditionUpdate(READY, TRUE, "Ready", f"ready in {', '.join(environments)}")
        if problems:
            stalled = ConditionUpdate(
                STALLED,
                TRUE,
                problems[0][1].reason,
                "; ".join(f"{env}: {p.message}" for env, p in problems),
            )
        else:
            stalled = ConditionUpdate(STALLED, FALSE, "Reconciled", "")
        conditions = [ready, stalled, promotion_blocked]
        if (exposed := self._exposure(service, plans)) is not None:
            conditions.append(exposed)
        if (backed_up := backups_summary(environments)) is not None:
            conditions.append(backed_up)
        urls = [s["url"] for s in environments.values() if s.get("url")]
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": merge_conditions(
                previous.get("conditions") or [], conditions, generation, now
            ),
            "environments": environments,
            "inventory": inventory.serialize(wanted),
        }
        if urls:
            status["url"] = ", ".join(urls)
        return status

    def _exposure(self, service: Service, plans: list[EnvironmentPlan]) -> ConditionUpdate | None:
        """An external service's exposure: where an environment does not allow it, it runs
        without a route in (nor the gateway's way in); where the cluster lacks what routes it
        (a Gateway, the Gateway API or cert-manager), it says which."""
        if not service.spec.external:
            return None
        refused = [
            message
            for plan in plans
            if plan.inputs is not None
            and (message := exposure_refused(service, plan.inputs.env)) is not None
        ]
        if refused:
            return ConditionUpdate(EXPOSED, FALSE, EXTERNAL_NOT_ALLOWED, "; ".join(refused))
        unreachable = [plan.unreachable for plan in plans if plan.unreachable is not None]
        if unreachable:
            message = "; ".join(message for _, message in unreachable)
            return ConditionUpdate(EXPOSED, FALSE, unreachable[0][0], message)
        return ConditionUpdate(EXPOSED, TRUE, "Exposed", "")

    def _environment_status(
        self,
        service: Service,
        plan: EnvironmentPlan,
        old: Mapping[str, Any],
        generation: int,
        moment: datetime.datetime,
    ) -> dict[str, Any]:
        now = moment.strftime(RFC3339)
        kept = (
            "appliedTag",
            "appliedImage",
            "readyTag",
            "readyImage",
            "readySince",
            "history",
            "migrations",
            "backup",
            "restore",
            "mirror",
        )
        status: dict[str, Any] = {k: v for k, v in old.items() if k in kept}
        updates: list[ConditionUpdate] = []
        if plan.problems or plan.inputs is None:
            problem = plan.problems[0] if plan.problems else Problem("Unknown", "not reconciled")
            updates.append(ConditionUpdate(READY, FALSE, problem.reason, problem.message))
            database_problem = next((p for p in plan.problems if p.reason in PLAN_PROBLEMS), None)
            if database_problem is not None:
                updates.append(
                    ConditionUpdate(
                        DATABASE_READY, FALSE, database_problem.reason, database_problem.message
                    )
                )
            status["summary"] = summary(
                status.get("appliedTag"), status.get("readyTag"), rolling_from=None
            )
        else:
            if plan.migration is not None and plan.migration.records:
                status["migrations"] = [m.to_status() for m in plan.migration.records]
            if plan.restore is not None and plan.restore.record is not None:
                status["restore"] = plan.restore.record
            if plan.mirror is not None:
                if plan.mirror.record is None:
                    status.pop("mirror", None)
                else:
                    status["mirror"] = plan.mirror.record
            if (backup := self._backup_condition(service, plan, status)) is not None:
                updates.append(backup)
            checks = production_checks(service, plan.inputs.env, status, moment)
            updates.append(production_ready(checks))
            updates.append(self._rollout_status(service, plan, old, status, moment))
            if plan.database is not None and plan.database.condition is not None:
                updates.append(plan.database.condition)
        if plan.verdict is not None:
            updates.append(
                ConditionUpdate(PROMOTION_BLOCKED, FALSE, "Promoted", "")
                if plan.verdict.allowed
                else ConditionUpdate(
                    PROMOTION_BLOCKED, TRUE, str(plan.verdict.reason), plan.verdict.message
                )
            )
        status["conditions"] = merge_conditions(
            old.get("conditions") or [], updates, generation, now
        )
        return status

    def _backup_condition(
        self, service: Service, plan: EnvironmentPlan, status: dict[str, Any]
    ) -> ConditionUpdate | None:
        """BackupReady where the environment backs up the service's database (SPEC §11)."""
        assert plan.inputs is not None
        backups = plan.inputs.env.spec.backups
        if backups is None or not service.spec.postgres.enabled:
            status.pop("backup", None)
            return None
        if plan.backup is None:
            return ConditionUpdate(
                BACKUP_READY,
                FALSE,
                "BackupImageUnknown",
                "the operator does not know its own image, which runs backups: set "
                "BANDSY_JOB_IMAGE, or BANDSY_POD_NAME in its pod",
            )
        status["backup"] = plan.backup
        return backup_condition(plan.backup, backups.schedule)

    def _rollout_status(
        self,
        service: Service,
        plan: EnvironmentPlan,
        old: Mapping[str, Any],
        status: dict[str, Any],
        moment: datetime.datetime,
    ) -> ConditionUpdate:
        """Fill in what the environment runs, its readiness and history; returns its Ready."""
        assert plan.inputs is not None
        inputs, verdict = plan.inputs, plan.verdict
        repository = service.spec.image.repository
        status["desiredTag"] = service.spec.environments[plan.name].image.tag
        deployment = next(
            (a.live for a in plan.applied if a.live and a.live["kind"] == "Deployment"), None
        )
        rollout = deployment_rollout(deployment, plan.pods, plan.replicasets)
        applied = running_image(deployment)
        history = promotion.Rollout.history(old)
        readiness = carry_readiness(
            ready_image(deployment, plan.pods, plan.replicasets),
            recorded_readiness(old, repository),
            moment,
        )
        for key in ("readyTag", "readyImage", "readySince"):
            status.pop(key, None)
        if applied is not None:
            status["appliedTag"], status["appliedImage"] = applied.tag, str(applied)
            if _recorded_image(old, "applied", repository) != applied:
                promoter = promotion.Promoter.of(service.meta.annotations, plan.name)
                records = plan.migration.records if plan.migration is not None else []
                migrated = succeeded(records, str(applied))
                history = promotion.record_rollout(
                    history,
                    promotion.Rollout(
                        applied.tag,
                        moment,
                        change_cause=service.meta.annotations.get(CHANGE_CAUSE_ANNOTATION),
                        gates_skipped=verdict is not None and verdict.gates_skipped,
                        image=str(applied),
                        promoted_by=promoter.by,
                        promoted_at=promoter.at,
                        migration_seconds=migrated.duration_seconds if migrated else None,
                    ),
                )
        if readiness.ready is not None and readiness.since is not None:
            history = promotion.mark_ready(history, readiness.ready, moment)
            status["readyTag"], status["readyImage"] = readiness.ready.tag, str(readiness.ready)
            status["readySince"] = readiness.since.strftime(RFC3339)
        status["history"] = [h.to_status() for h in history]
        status["replicas"] = rollout.replicas
        status["availableReplicas"] = rollout.available_replicas
        blocked = status["desiredTag"] if verdict is not None and not verdict.allowed else None
        migrating = verdict is not None and verdict.reason is promotion.GateReason.MIGRATING
        status["summary"] = summary(
            status.get("appliedTag"),
            status.get("readyTag"),
            rolling_from=_rolling_from(history, applied),
            blocked=blocked,
            held_as="migrating" if migrating else "blocked",
        )
        status["internalHost"] = naming.internal_host(inputs.name, inputs.namespace)
        if inputs.exposed:
            status["url"] = naming.public_url(
                inputs.env.name, inputs.name, inputs.env.spec.ingress.domain
            )
        else:
            status.pop("url", None)
        database = plan.database.condition if plan.database else None
        if database is not None and database.status != TRUE:
            return ConditionUpdate(READY, FALSE, database.reason, database.message)
        if plan.missing_secrets:
            return ConditionUpdate(
                READY,
                FALSE,
                "SecretMissing",
                f"provided secrets still empty: {', '.join(plan.missing_secrets)} "
                f"(fill them in: kubectl -n {inputs.namespace} edit secret "
                f"{naming.secrets(inputs.name)})",
            )
        if applied is None:
            return ConditionUpdate(
                READY, FALSE, "NotDeployed", verdict.message if verdict else "not deployed"
            )
        if rollout.ready:
            return ConditionUpdate(READY, TRUE, "Ready", f"{applied.tag} is ready")
        if rollout.replicas == 0:
            return ConditionUpdate(
                READY, FALSE, "ScaledToZero", f"replicas is 0: {applied.tag} runs nowhere"
            )
        if rollout.failure is not None:  # what a person must fix, rather than "in progress"
            return ConditionUpdate(READY, FALSE, rollout.failure.reason, rollout.failure.message)
        progress = f"{rollout.available_replicas}/{rollout.replicas} replicas available"
        if _rolling_from(history, applied) is not None:
            return ConditionUpdate(
                READY, FALSE, "Progressing", f"rolling out {applied.tag}: {progress}"
            )
        return ConditionUpdate(
            READY, FALSE, "NotReady", f"{applied.tag} is no longer Ready: {progress}"
        )

    async def _report_invalid(self, known: Known[Service]) -> None:
        now = now_rfc3339()
        generation = known.generation
        status = {
            **known.status,
            "observedGeneration": generation,
            "conditions": merge_conditions(
                known.status.get("conditions") or [],
                [
                    ConditionUpdate(READY, FALSE, "InvalidSpec", known.error or ""),
                    ConditionUpdate(STALLED, TRUE, "InvalidSpec", known.error or ""),
                ],
                generation,
                now,
            ),
        }
        await self._publish(known, None, known.status, status)

    async def _report_suspended(self, known: Known[Service], service: Service) -> None:
        now = now_rfc3339()
        generation = service.meta.generation
        old_envs = known.status.get("environments") or {}
        environments = {
            env: {**(old_envs.get(env) or {}), "summary": SUSPENDED}
            for env in sorted(service.spec.environments)
        }
        status = {
            **known.status,
            "observedGeneration": generation,
            "environments": environments,
            "conditions": merge_conditions(
                known.status.get("conditions") or [],
                [
                    ConditionUpdate(READY, UNKNOWN, "Suspended", "spec.suspend is true"),
                    ConditionUpdate(STALLED, FALSE, "Suspended", ""),
                ],
                generation,
                now,
            ),
        }
        await self._publish(known, service, known.status, status)

    async def _publish(
        self,
        known: Known[Service],
        service: Service | None,
        before: Mapping[str, Any],
        after: dict[str, Any],
    ) -> dict[str, Any]:
        """Write ``after`` unless it is ``before``, post the Events of its transitions; returns
        the status now stored."""
        if after == dict(before):
            return dict(before)
        stored = await self._write_status(known, after)
        identity = service.meta if service is not None else parse_identity(known.body)
        posted: set[str] = set()
        existed = {c["type"] for c in before.get("conditions") or []}
        for cond in transitions(before.get("conditions") or [], after["conditions"]):
            type_ = event_for(cond, appeared=cond["type"] not in existed)
            if type_ is None or cond["reason"] in posted:
                continue
            posted.add(cond["reason"])  # Ready and Stalled often flip for the same reason
            await self.recorder.post(
                SERVICE_KIND, identity, type_, cond["reason"], cond["message"] or cond["reason"]
            )
        return stored

    async def _write_status(self, known: Known[Service], status: dict[str, Any]) -> dict[str, Any]:
        name = known.body["metadata"]["name"]
        updated = await self.api.apply_status(SERVICE_KIND, name, status)
        # The response is the newest object we know: its spec too, not only our status.
        fresh = self.world.observe_service(updated)
        return fresh.status


def _rolling_from(history: list[promotion.Rollout], applied: Image | None) -> str | None:
    """While ``applied`` has not yet been Ready since it was applied: the tag that ran before
    it, or ``(none)`` for a first rollout. None once it has been Ready."""
    if applied is None or not history:
        return None
    newest = history[0]
    if newest.image not in (None, str(applied)) or newest.tag != applied.tag:
        return None
    if newest.ready_at is not None:
        return None
    return history[1].tag if len(history) > 1 else "(none)"


def backups_summary(environments: Mapping[str, Mapping[str, Any]]) -> ConditionUpdate | None:
    """The service's BackupReady: its environments' (those that back it up), the worst first."""
    found = [
        (env, cond)
        for env, status in environments.items()
        for cond in status.get("conditions") or []
        if cond["type"] == BACKUP_READY
    ]
    if not found:
        return None
    for wanted in (FALSE, UNKNOWN, TRUE):
        chosen = [(env, cond) for env, cond in found if cond["status"] == wanted]
        if chosen:
            message = "; ".join(f"{env}: {cond['message']}" for env, cond in chosen)
            return ConditionUpdate(BACKUP_READY, wanted, chosen[0][1]["reason"], message)
    return None


def unmanaged_problem(live: Manifest) -> Problem:
    ref = ObjectRef.of(live)
    return Problem(
        "ObjectNotManaged",
        f"{ref.kind} {ref.namespace}/{ref.name} exists without the label "
        "app.kubernetes.io/managed-by=bandsy-operator; it is left alone (delete it or add "
        "the label to hand it over)",
    )
