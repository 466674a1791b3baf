"""The controller: watches feed the world view and a work queue; workers run the reconcilers.

``watches`` delivers the watch events (kopf only runs start-up and clean-up); everything else
happens here, the finalizer included, so that a change to one object can
re-reconcile others (an environment edit re-renders all its services).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

from . import inventory, served
from .apply import Applier
from .backends import Backend, Backends
from .backends.postgres import PostgresBackend
from .builders.environment import rbac_subject
from .concurrently import all_of
from .constants import (
    ACTIONABLE_ANNOTATIONS,
    API_VERSION,
    ENVIRONMENT_KIND,
    FIELD_MANAGER,
    FINALIZER,
    MANAGED_BY_LABEL,
    RESTORE_ANNOTATION_PREFIX,
    SERVICE_KIND,
)
from .credentials import CredentialStore
from .events import EventRecorder
from .jobs import job_news
from .kube import (
    CLIENT_ERRORS,
    SECRET,
    UNLISTED_KINDS,
    KubeApi,
    ObjectRef,
    is_forbidden,
    is_not_found,
    is_unreachable,
)
from .metrics import RECONCILE_SECONDS, RECONCILES, RESYNCS, WORK_QUEUE_DEPTH
from .monitoring import Monitoring
from .observation import ReadMode
from .reconcile.databases import DatabaseReconciler
from .reconcile.environment import EnvironmentReconciler
from .reconcile.service import Outcome, ServiceReconciler, needs_finalizer
from .settings import OperatorSettings
from .watches import OWNED, Since, Watch, follow
from .workqueue import AwaitingServer, WorkQueue, run_workers
from .world import Known, World

log = logging.getLogger(__name__)
API_SERVER = "the API server"
# Deployment and pod status changes come in bursts (a service's environments roll out together,
# a rollout reports each step, the pods of one bad image fail together): one reconcile after a
# burst instead of one per event.
WORKLOAD_SETTLE_SECONDS = 0.5
# A pass's LISTs in flight at once: the API server encodes one while this process decodes
# another (each a page at a time), without every kind's page in memory together.
PASS_LISTS_AT_ONCE = 3


@dataclass(frozen=True)
class Key:
    kind: Literal["BandsyEnvironment", "BandsyService"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def env_key(name: str) -> Key:
    return Key(ENVIRONMENT_KIND, name)


def service_key(name: str) -> Key:
    return Key(SERVICE_KIND, name)


def _trigger(known: Known[Any] | None) -> tuple[Any, ...] | None:
    """What, when it changes, needs a reconcile: spec, the annotations we act on, deletion (not
    status, nor annotations other tools write)."""
    if known is None:
        return None
    meta = known.body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    actionable = tuple(annotations.get(key) for key in ACTIONABLE_ANNOTATIONS)
    actionable += tuple(
        sorted((k, v) for k, v in annotations.items() if k.startswith(RESTORE_ANNOTATION_PREFIX))
    )
    return (known.generation, actionable, meta.get("deletionTimestamp"))


class Controller:
    def __init__(self, api: KubeApi, settings: OperatorSettings) -> None:
        self.api = api
        self.settings = settings
        self.world = World()
        # Retries back off to 15 s at most: a server back after an outage is used again within
        # that, however long it was gone (SPEC §9: converged 30 s after it returns). Jitter
        # spreads the retries of keys that failed together: the first to find the server back
        # has the others retried at once (AwaitingServer).
        self.queue: WorkQueue[Key] = WorkQueue(max_delay=15.0, jitter=0.5)
        WORK_QUEUE_DEPTH.set_function(lambda: self.queue.depth)
        # Keys waiting for a server to answer again: API_SERVER, or a database "backend|host:port".
        self._awaiting: defaultdict[str, AwaitingServer[Key]] = defaultdict(
            lambda: AwaitingServer(self.queue)
        )
        applier = Applier(api, concurrency=settings.workers)
        recorder = EventRecorder(api)
        self.backends = Backends(
            {
                "postgres": lambda: PostgresBackend(pool_size=settings.workers),
                "redis": _redis_backend,
                "mongo": _mongo_backend,
            }
        )
        self.store = CredentialStore(api, settings.operator_namespace)
        databases = DatabaseReconciler(api, self.store, self.backends, concurrency=settings.workers)
        self.environments = EnvironmentReconciler(api, applier, recorder, self.world, databases)
        # Its config-hash key is read (or made) at start.
        self.services = ServiceReconciler(api, applier, recorder, self.world, databases, b"")
        self.monitoring = Monitoring(api, applier, settings.operator_namespace)
        self._rediscovery: asyncio.Task[None] | None = None
        self._locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: list[asyncio.Task[None]] = []
        # Custom resources whose next reconcile reads everything (ReadMode.LIVE): queued by
        # start-up or the resync, or changed in a way that may have taken objects with it.
        self._live: set[Key] = set()
        # The keys of the last resync (or start-up) pass not taken up yet: the next pass waits
        # for them, so passes never overlap and an operator busier than its resync interval
        # still finishes each pass (and idles between them) instead of queueing forever.
        self._pass_pending: set[Key] = set()
        self._pass_taken = asyncio.Event()
        # The pass's keys being reconciled: once none is pending or running, the listing the
        # pass read (``KubeApi.listing``) has served its purpose.
        self._pass_running: set[Key] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every custom resource first, so no reconcile sees a half-known world."""
        watches = self._watches()
        versions = await self._load_world(watches)
        await self._ensure_operator_namespace()
        await self._follow_monitoring()
        self.services.hash_key = await self.store.config_hash_key(create=True)
        self.services.job_image = self.environments.job_image = await self._job_image()
        self.environments.operator_subject = await self._operator_subject()
        await self._list_for_pass()
        # What start-up loaded lives on (the world) or dies by reference count (the listing):
        # the collector need not walk it at each full collection (SPEC §9: 1000 services).
        gc.freeze()
        self.enqueue_all()
        self._tasks = [
            asyncio.create_task(run_workers(self.queue, self._handle, self.settings.workers)),
            asyncio.create_task(self._resync()),
            *(
                asyncio.create_task(follow(self.api, watch, version))
                for watch, version in zip(watches, versions, strict=True)
            ),
        ]

    def _watches(self) -> list[Watch]:
        return [
            # Start-up lists every custom resource into the world (they carry no label).
            Watch(API_VERSION, ENVIRONMENT_KIND, {}, Since.NOW, self.environment_event),
            Watch(API_VERSION, SERVICE_KIND, {}, Since.NOW, self.service_event),
            # Start-up's reconciles read every Deployment (the pass lists them).
            Watch("apps/v1", "Deployment", OWNED, Since.NOW, self.workload_event),
            # Pods only tell when one fails or recovers (SPEC §12): the world keeps the failing
            # ones, from every pod at first.
            Watch("v1", "Pod", OWNED, Since.EVERYTHING, self.pod_event),
            # A migration Job that finished lets its rollout go on, a backup Job that ended
            # goes into the status (SPEC §11): one that ended while no operator ran is news too.
            Watch("batch/v1", "Job", OWNED, Since.EVERYTHING, self.job_event),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._rediscovery] if self._rediscovery else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.api.listing.clear()
        await self.backends.close()

    async def _job_image(self) -> str | None:
        """The image backup Jobs run: the operator's own (it has pg_dump), as its pod names it;
        BANDSY_JOB_IMAGE overrides (an operator run outside the cluster)."""
        if self.settings.job_image or self.settings.pod_name is None:
            return self.settings.job_image
        pod = await self.api.get(
            ObjectRef("v1", "Pod", self.settings.operator_namespace, self.settings.pod_name)
        )
        containers = ((pod or {}).get("spec") or {}).get("containers") or []
        image = next((c.get("image") for c in containers if c.get("name") == "operator"), None)
        if image is None:
            why = "not found (deleted?)" if pod is None else "without a container 'operator'"
            log.warning(
                "pod %s %s: the backup and mirror CronJobs that exist are kept as they are",
                self.settings.pod_name,
                why,
            )
        return str(image) if image else None

    async def _operator_subject(self) -> dict[str, str] | None:
        """Whom the environments' RoleBindings let list Secrets: this process's own identity."""
        try:
            username = await self.api.username()
        except CLIENT_ERRORS as error:
            username = None
            log.warning("cannot tell who this operator is (%s)", error)
        if username is None:
            log.warning("no RoleBinding of ours in environments: Secrets are read one by one")
            return None
        return rbac_subject(username)

    async def _ensure_operator_namespace(self) -> None:
        """The credential store lives there; deploy/ creates it, a local run may not have."""
        namespace = self.settings.operator_namespace
        if await self.api.get(ObjectRef("v1", "Namespace", "", namespace)) is None:
            await self.api.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )

    async def _follow_monitoring(self) -> None:
        """Which of the Prometheus Operator's, Gateway API's and cert-manager's kinds the
        cluster serves now (SPEC §12); when the API server cannot tell, what was known stays
        until the next resync asks again."""
        try:
            await self.monitoring.follow()
            kinds = await served.discover(self.api)
        except CLIENT_ERRORS as error:
            log.warning("cannot tell which other projects' CRDs exist: %s", error)
            return
        if kinds != self.services.kinds:
            log.info("other projects' kinds served: %s", kinds)
        self.services.kinds = kinds

    def _rediscover(self) -> None:
        """A reconcile found a kind gone (404): its CRD may have been removed since the last
        resync, so ask now instead of failing until the next one (one question at a time)."""
        if self._rediscovery is None or self._rediscovery.done():
            self._rediscovery = asyncio.create_task(self._follow_monitoring())

    async def _load_world(self, watches: list[Watch]) -> list[str | None]:
        """The starting versions of ``watches``, then every environment and service into the
        world, one at a time (at 1000 services, each body as listed is several times what the
        world keeps of it). Retries while the API server or our CRDs are not there yet (fresh
        cluster, restart)."""
        delay = 0.5
        while True:
            try:
                # First: a change after start-up's reads (these lists, then the pass's) is news;
                # one they already hold is not newer.
                versions = [await watch.starting_version(self.api) for watch in watches]
                async for body in self.api.each(API_VERSION, ENVIRONMENT_KIND):
                    self.world.observe_environment(body)
                async for body in self.api.each(API_VERSION, SERVICE_KIND):
                    self.world.observe_service(body)
                return versions
            except CLIENT_ERRORS as error:
                self.world.forget_custom_resources()
                log.warning(
                    "cannot list custom resources yet (%s); retrying in %.1f s", error, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _resync(self) -> None:
        """A pass every ``resync_interval`` seconds after the previous one was taken up."""
        while True:
            await self._pass_taken.wait()
            await asyncio.sleep(self.settings.resync_interval)
            await self._follow_monitoring()
            await self._list_for_pass()
            self.enqueue_all()
            RESYNCS.inc()

    async def _list_for_pass(self) -> None:
        """Every object a pass reads, by a few paged LISTs of the kinds our inventories record
        rather than a GET per object (SPEC §9: a restart with 1000 services): everywhere, and
        Secrets in each environment's namespace (``UNLISTED_KINDS``). What a LIST could not
        give, the reconciles read one by one, as they would anyway."""
        known: list[Known[Any]] = [*self.world.environments.values(), *self.world.services.values()]
        recorded = {
            inventory.type_of(entry) for k in known for entry in k.status.get("inventory") or []
        }
        namespaces = sorted(
            {k.model.namespace for k in self.world.environments.values() if k.model is not None}
            if SECRET in recorded
            else ()
        )
        labels = {MANAGED_BY_LABEL: FIELD_MANAGER}
        scopes: list[tuple[tuple[str, str], str | None]] = [
            *((kind, None) for kind in sorted(recorded - UNLISTED_KINDS)),
            *((SECRET, namespace) for namespace in namespaces),
        ]
        at_once = asyncio.Semaphore(PASS_LISTS_AT_ONCE)

        async def list_scope(kind: tuple[str, str], namespace: str | None) -> int | None:
            async with at_once:
                try:
                    return await self.api.list_into_listing([kind], labels, namespace)
                except CLIENT_ERRORS as error:
                    # Secrets: forbidden until the environment's reconcile makes our RoleBinding.
                    if not (namespace and is_forbidden(error)):
                        where = f" in {namespace}" if namespace else ""
                        log.warning("cannot list %s%s for the pass: %s", kind[1], where, error)
                    return None

        started = time.perf_counter()
        self.api.listing.clear()
        counts = await all_of(*(list_scope(kind, ns) for kind, ns in scopes))
        unlisted = sum(count is None for count in counts)
        log.info(
            "listed %d objects by %d LISTs in %.1f s%s",
            sum(count or 0 for count in counts),
            len(scopes),
            time.perf_counter() - started,
            f"; {unlisted} could not: their objects are read one by one" if unlisted else "",
        )

    def enqueue_all(self) -> None:
        """Start-up and resync: every object of every custom resource is read again (drift)."""
        for key in [
            *map(env_key, sorted(self.world.environments)),
            *map(service_key, sorted(self.world.services)),
        ]:
            self.queue.add(key)
            self._live.add(key)
            self._pass_pending.add(key)
        self._pass_taken.clear()
        self._took(None)

    def _took(self, key: Key | None) -> None:
        """``key`` is being reconciled: once every key of the pass is, the pass is taken up."""
        if key is not None:
            self._pass_pending.discard(key)
        if not self._pass_pending:
            self._pass_taken.set()

    # -- watch events ---------------------------------------------------------------------------

    def _answered(self, server: str, done: Key | None = None) -> None:
        if count := self._awaiting[server].answered(done):
            log.info("%s answers again: retrying %d reconciles now", server, count)

    def environment_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self._answered(API_SERVER)  # a watch delivered: after an outage, it has reconnected
        name = body["metadata"]["name"]
        before = self.world.environments.get(name)
        if event_type == "DELETED":
            after = self.world.forget_environment(body)
        else:
            after = self.world.observe_environment(dict(body))
        if _trigger(before) == _trigger(after):
            return
        # Its namespace may have been deleted with everything in it since the pass listed it.
        self.api.listing.clear()
        # Any environment may share database users with this one (SharedCredentials).
        for other in sorted(self.world.environments):
            self.queue.add(env_key(other))
        self.queue.add(env_key(name))
        self._live.add(env_key(name))
        # Services render the environment's config, domain and policies; a namespace deleted
        # and created again took their objects with it, so they are read again too.
        for service in self.world.services_in(name):
            self.queue.add(service_key(service))
            self._live.add(service_key(service))

    def service_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self._answered(API_SERVER)
        name = body["metadata"]["name"]
        before = self.world.services.get(name)
        if event_type == "DELETED":
            after = self.world.forget_service(body)
            if before is not None and after is None:
                self.services.deleted(before)
        else:
            after = self.world.observe_service(dict(body))
        if _trigger(before) != _trigger(after):
            if after is not None:
                self.queue.add(service_key(name))
            # Dependencies and dependents render this service's port and name.
            related = self.world.neighbours(before.model if before else None)
            related |= self.world.neighbours(after.model if after else None)
            for other in sorted(related):
                self.queue.add(service_key(other))
            # Its environments count it (services column, cost).
            for env in sorted(_environments(before) | _environments(after)):
                self.queue.add(env_key(env))
        self._propagate_readiness(before, after)

    def _propagate_readiness(self, before: Known[Any] | None, after: Known[Any] | None) -> None:
        if _ready_in(before) != _ready_in(after):
            for env in _environments(before) | _environments(after):
                self.queue.add(env_key(env))  # its "services: n/m ready" column

    def workload_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self._answered(API_SERVER)
        self.api.listing.drop(ObjectRef.of(dict(body)))  # newer than what the pass listed
        if (service := self.world.workload_news(event_type, body)) is not None:
            self.queue.add_soon(service_key(service), WORKLOAD_SETTLE_SECONDS)

    def pod_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self._answered(API_SERVER)
        if (service := self.world.pod_news(event_type, body)) is not None:
            self.queue.add_soon(service_key(service), WORKLOAD_SETTLE_SECONDS)

    def job_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        self._answered(API_SERVER)
        self.api.listing.drop(ObjectRef.of(dict(body)))
        if (news := job_news(event_type, body)) is None:
            return
        if news.backup:  # its outcome goes into the status: the reconcile reads it
            self.world.note_backup_news(news.namespace, news.service)
        self.queue.add(service_key(news.service))  # a finished migration rolls out now

    # -- work -----------------------------------------------------------------------------------

    async def _handle(self, key: Key) -> None:
        async with self._locks[key]:
            started = time.perf_counter()
            result = "success"
            # Taken now: a resync asking again while this runs gets a reconcile of its own.
            mode = ReadMode.LIVE if key in self._live else ReadMode.TRUSTED
            self._live.discard(key)
            if key in self._pass_pending:
                self._pass_running.add(key)
            self._took(key)
            try:
                if await self._finalizer(key):
                    outcome = Outcome()
                elif key.kind == ENVIRONMENT_KIND:
                    await self.environments.reconcile(key.name, mode)
                    outcome = Outcome()
                else:
                    before = self.world.services.get(key.name)
                    outcome = await self.services.reconcile(key.name, mode)
                    # The reconcile stored its own status write in the world, so the watch
                    # event that follows shows no change: compare here.
                    self._propagate_readiness(before, self.world.services.get(key.name))
            except asyncio.CancelledError:
                if mode is ReadMode.LIVE:
                    self._live.add(key)
                raise
            except Exception as error:
                # A failure may have left anything half done: the retry reads everything.
                self._live.add(key)
                result = "error"
                delay = self.queue.retry(key)
                if is_unreachable(error):
                    self._awaiting[API_SERVER].failed(key)
                elif is_not_found(error):
                    self._rediscover()
                log.warning("reconcile %s failed, retrying in %.1f s: %s", key, delay, error)
            else:
                self.world.note_database_servers(outcome.reached, outcome.unreachable)
                for server in (API_SERVER, *outcome.reached):
                    self._answered(server, done=key)
                for server in outcome.unreachable:
                    self._awaiting[server].failed(key)
                if outcome.retry:  # converged but for an unreachable database: back off
                    result = "retry"
                    self.queue.retry(key)
                else:
                    self.queue.forget(key)
                if outcome.after is not None:  # a soak time elapses, an upstream changed
                    self.queue.add_after(key, outcome.after)
            finally:
                RECONCILE_SECONDS.labels(key.kind).observe(time.perf_counter() - started)
                self._pass_done(key)
            RECONCILES.labels(key.kind, result).inc()

    def _pass_done(self, key: Key) -> None:
        """``key`` ended: the last of its pass clears the pass's listing. Others do not: a
        reconcile a watch event triggered may end while the next pass is still listing."""
        if key not in self._pass_running:
            return
        self._pass_running.discard(key)
        if not self._pass_pending and not self._pass_running:
            self.api.listing.clear()

    async def _finalizer(self, key: Key) -> bool:
        """Our finalizer goes on before anything the garbage collector cannot reclaim is made
        for a custom resource (an environment's accounts and retained objects, a service's
        accounts and listeners: ``needs_finalizer``); once it is being deleted, the clean-up
        runs and then the finalizer comes off. True while it is being deleted: there is
        nothing else to do for it."""
        known: Known[Any] | None = (
            self.world.environments if key.kind == ENVIRONMENT_KIND else self.world.services
        ).get(key.name)
        if known is None:
            return False
        meta = known.body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if not known.deleting:
            if FINALIZER not in finalizers and (
                key.kind == ENVIRONMENT_KIND or needs_finalizer(known)
            ):
                updated = await self.api.set_finalizers(key.kind, meta, [*finalizers, FINALIZER])
                if key.kind == ENVIRONMENT_KIND:
                    self.world.observe_environment(updated)
                else:
                    self.world.observe_service(updated)
            return False
        if FINALIZER in finalizers:
            if key.kind == ENVIRONMENT_KIND:
                # A reconcile of a service here that began before the deletion could open an
                # account after the finalizer locked it: wait for those, hold off new ones.
                async with AsyncExitStack() as holding:
                    for name in self.world.services_in(key.name):  # sorted: no deadlock
                        await holding.enter_async_context(self._locks[service_key(name)])
                    await self.environments.finalize(known.whole)  # ReclaimPendingError: retried
            else:
                await self.services.finalize(known.whole)
            # Not observed: the deletion event may already have made the world forget it.
            await self.api.set_finalizers(key.kind, meta, [f for f in finalizers if f != FINALIZER])
        return True


def _redis_backend() -> Backend:
    from .backends.redis import RedisBackend  # its driver loads on first use

    return RedisBackend()


def _mongo_backend() -> Backend:
    from .backends.mongo import MongoBackend  # its driver loads on first use

    return MongoBackend()


def _environments(known: Known[Any] | None) -> set[str]:
    if known is None or known.model is None:
        return set()
    return set(known.model.spec.environments)


def _ready_in(known: Known[Any] | None) -> frozenset[str]:
    return frozenset() if known is None else known.ready_in
