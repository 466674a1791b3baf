"""BandsyService reconciler: every environment's objects applied, stale ones pruned, status.

Order of effects, chosen for crash safety: (1) the inventory grows to include everything about
to be applied, (2) apply, (3) prune what is no longer wanted, (4) status with the final
inventory. Nothing is pruned when any input failed to load or validate.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import inventory, naming, promotion
from ..apply import Applied, Applier, is_managed
from ..builders.service import ServiceInputs, build_service_objects, missing_provided_secrets
from ..constants import CHANGE_CAUSE_ANNOTATION, SERVICE_KIND, SKIP_GATES_ANNOTATION
from ..events import EventRecorder, EventType
from ..kube import KubeApi, Manifest, ObjectRef, without_managed_fields
from ..models import Environment, Service, parse_identity
from ..promotion import GateVerdict
from ..secrets_gen import random_secret
from ..status import (
    FALSE,
    SUSPENDED,
    TRUE,
    UNKNOWN,
    ConditionUpdate,
    deployment_rollout,
    image_tag,
    merge_conditions,
    now_rfc3339,
    summary,
    transitions,
)
from ..validation import Problem, environment_problems
from ..world import Known, World
from .databases import AccountRef, DatabaseReconciler, DatabaseResult

log = logging.getLogger(__name__)

READY = "Ready"
STALLED = "Stalled"
PROMOTION_BLOCKED = "PromotionBlocked"


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


def _accounts(refs: set[AccountRef]) -> list[str]:
    return sorted(map(str, refs))


def _users(refs: set[AccountRef]) -> set[tuple[str, str, str]]:
    return {(r.backend, r.server, r.user) for r in refs}


@dataclass
class EnvironmentPlan:
    """One environment of one service: what to apply, or why not."""

    name: str
    problems: list[Problem] = field(default_factory=list)
    accounts: list[AccountRef] = field(default_factory=list)
    database: DatabaseResult | None = None
    verdict: GateVerdict | None = None
    objects: list[Manifest] = field(default_factory=list)
    known: dict[ObjectRef, Manifest | None] = field(default_factory=dict)
    missing_secrets: list[str] = field(default_factory=list)
    inputs: ServiceInputs | None = None
    applied: list[Applied] = field(default_factory=list)

    def refs(self) -> frozenset[ObjectRef]:
        return frozenset(ObjectRef.of(obj) for obj in self.objects)


def service_secret(namespace: str, service: str) -> ObjectRef:
    """The Secret of a service's own keys, whose generated values every build keeps."""
    return ObjectRef("v1", "Secret", namespace, naming.secrets(service))


def running_tag(deployment: Manifest | None) -> str | None:
    if deployment is None:
        return None
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return image_tag(containers[0].get("image", "")) or None if containers else None


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def gate_input(
    service: Service,
    env: Environment,
    status: Mapping[str, Any],
    current_tag: str | None,
    now: datetime.datetime,
) -> promotion.GateInput:
    """The promotion question for one environment, from the CRs and the service's status."""
    source = env.spec.promotion.from_
    upstream = None
    if source is not None:
        upstream_status = (status.get("environments") or {}).get(source) or {}
        if source in service.spec.environments and upstream_status:
            upstream = promotion.UpstreamState(
                upstream_status.get("readyTag"), _parse_time(upstream_status.get("readySince"))
            )
    return promotion.GateInput(
        desired_tag=service.spec.environments[env.name].image.tag,
        current_tag=current_tag,
        tag_pattern=env.spec.image_policy.tag_pattern,
        frozen=env.spec.promotion.freeze,
        promotion_from=source,
        soak_seconds=env.spec.promotion.soak_seconds,
        upstream=upstream,
        skip_gates_tag=service.meta.annotations.get(SKIP_GATES_ANNOTATION),
        now=now,
    )


def service_inputs(
    service: Service,
    env: Environment,
    world: World,
    live_secret: Manifest | None,
    database: DatabaseResult,
    tag: str,
) -> ServiceInputs:
    """Everything the builders need, from the world view and what was read from the cluster.
    Shared by the reconciler and ``bandsyctl render`` so both produce the same objects."""
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
        tag=tag,
        dependency_ports=dependency_ports,
        dependents=world.dependents_of(service.name, env.name),
        existing_secrets=existing,
        credentials=database.credentials,
        database_peers=database.peers,
    )


def decode_secret(live: Manifest | None) -> dict[str, str]:
    if live is None:
        return {}
    data = live.get("data") or {}
    return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}


class ServiceReconciler:
    def __init__(
        self,
        api: KubeApi,
        applier: Applier,
        recorder: EventRecorder,
        world: World,
        databases: DatabaseReconciler,
    ) -> None:
        self.api = api
        self.applier = applier
        self.recorder = recorder
        self.world = world
        self.databases = databases
        self._secrets: dict[ObjectRef, Manifest] = {}  # each service Secret, as last seen

    async def reconcile(self, name: str, verify: bool = True) -> Outcome:
        """Converge one service. Without ``verify`` (a watch event, not the resync), objects
        unchanged since this operator last applied or read them are not read again."""
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
        previous = inventory.parse(status.get("inventory") or [])
        previous_accounts = {AccountRef.parse(a) for a in status.get("databases") or []}
        applied_before = inventory.refs(previous)
        plans = [self._validate(service, env) for env in sorted(service.spec.environments)]
        planned_accounts = {a for plan in plans for a in plan.accounts}
        # Record every account before any server learns about it: no orphan after a crash.
        if not planned_accounts <= previous_accounts:
            status = await self._write_status(
                known, {**status, "databases": _accounts(previous_accounts | planned_accounts)}
            )
            known = self.world.services[name]
        # Environments are independent until the status is written: build them together.
        await asyncio.gather(
            *(
                self._build(
                    service, plan, previous_accounts, applied_before, known.status, now, verify
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
        if grown != previous:
            status = await self._write_status(
                known, {**status, "inventory": inventory.serialize(grown)}
            )

        applied = await asyncio.gather(
            *(
                self.applier.ensure_all(
                    plan.objects,
                    plan.known,
                    trust_confirmed=not verify,
                    inventory=None if verify else applied_before,
                )
                for plan in plans
            )
        )
        if any(result.existed for results in applied for result in results):
            # Built for objects presumed new, some of which are ours already: read them all.
            return await self.reconcile(name, verify=True)
        for plan, results in zip(plans, applied, strict=True):
            plan.applied = results
            self._remember_inputs(plan)
            refused = [a.live for a in results if a.refused and a.live is not None]
            plan.problems += [unmanaged_problem(obj) for obj in refused]
        accounts = planned_accounts
        if healthy and all(not plan.problems for plan in plans):
            stale = inventory.stale(previous, wanted)
            pruned = await self.applier.prune(stale)
            self._forget(stale)
            if pruned:
                log.info("%s: pruned %s", name, ", ".join(map(str, pruned)))
            retired = previous_accounts - planned_accounts
            if retired:  # scanning every service for shared users is for this case only
                accounts |= set(
                    await self.databases.reclaim(
                        retired,
                        self._accounts_in_use(exclude=name) | _users(planned_accounts),
                        delete=service.spec.postgres.reclaim_policy == "Delete",
                        environments=self.world.valid_environments(),
                    )
                )
        else:
            wanted = grown
            accounts |= previous_accounts

        new_status = self._status(service, plans, status, wanted, now)
        new_status["databases"] = _accounts(accounts)
        await self._publish(known, service, status, new_status)
        return self._outcome(plans, status, new_status, self._upstreams(service))

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
        old_envs, new_envs = before.get("environments") or {}, after.get("environments") or {}
        # A tag that just became Ready upstream may open a downstream gate: look again now.
        if any(
            (old_envs.get(env) or {}).get("readyTag") != (new_envs.get(env) or {}).get("readyTag")
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
        stale = inventory.stale(inventory.parse(status.get("inventory") or []), {})
        pruned = await self.applier.prune(stale)
        self._forget(stale)
        log.info("%s deleted: removed %d objects", name, len(pruned))
        accounts = {AccountRef.parse(a) for a in status.get("databases") or []}
        if not accounts:
            return
        policy = ((body.get("spec") or {}).get("postgres") or {}).get("reclaimPolicy", "Retain")
        pending = await self.databases.reclaim(
            accounts,
            self._accounts_in_use(exclude=name),
            delete=policy == "Delete",
            environments=self.world.valid_environments(),
        )
        if pending:
            raise ReclaimPendingError(", ".join(map(str, pending)))

    def _accounts_in_use(self, exclude: str) -> set[tuple[str, str, str]]:
        """(backend, server, user) of every account other services hold."""
        used: set[tuple[str, str, str]] = set()
        for other, known in self.world.services.items():
            if other != exclude:
                refs = {AccountRef.parse(a) for a in known.status.get("databases") or []}
                used |= _users(refs)
        return used

    # -- planning -------------------------------------------------------------------------------

    def _validate(self, service: Service, env_name: str) -> EnvironmentPlan:
        """Problems and database account names: everything knowable without I/O."""
        environments = self.world.valid_environments()
        plan = EnvironmentPlan(env_name)
        plan.problems = environment_problems(
            service, env_name, environments, self.world.valid_services()
        )
        if not plan.problems:
            plan.accounts, problems = self.databases.plan(service, environments[env_name])
            plan.problems += problems
        return plan

    async def _build(
        self,
        service: Service,
        plan: EnvironmentPlan,
        known_accounts: set[AccountRef],
        applied_before: frozenset[ObjectRef],
        previous: Mapping[str, Any],
        now: datetime.datetime,
        verify: bool,
    ) -> None:
        env = self.world.valid_environments()[plan.name]
        deployment_ref = ObjectRef("apps/v1", "Deployment", env.namespace, service.name)
        # Not applied yet, the promotion gates see no tag running, as for a new one.
        live_deployment = await self._read_input(
            plan,
            deployment_ref,
            self.world.workload(env.namespace, service.name),
            applied_before,
            verify,
        )
        plan.verdict = promotion.evaluate(
            gate_input(service, env, previous, running_tag(live_deployment), now)
        )
        if plan.verdict.gates_skipped:
            await self.recorder.post(
                SERVICE_KIND,
                service.meta,
                "Warning",
                "GatesSkipped",
                f"{plan.name}: {plan.verdict.tag_to_apply} rolled out past the promotion gates "
                f"({SKIP_GATES_ANNOTATION})",
            )
        plan.database = await self.databases.reconcile(service, env, known_accounts, verify=verify)
        drift = [r for r in plan.database.repairs if set(plan.accounts) & known_accounts]
        if drift:
            await self.recorder.post(
                SERVICE_KIND,
                service.meta,
                "Warning",
                "DriftRepaired",
                f"{plan.name}: {'; '.join(drift)}",
            )
        secret_ref = service_secret(env.namespace, service.name)
        # Not applied yet, new values are generated for it.
        live_secret = await self._read_input(
            plan, secret_ref, self._secrets.get(secret_ref), applied_before, verify
        )
        plan.inputs = service_inputs(
            service,
            env,
            self.world,
            live_secret,
            plan.database,
            tag=plan.verdict.tag_to_apply or service.spec.environments[env.name].image.tag,
        )
        plan.objects = build_service_objects(plan.inputs, random_secret)
        if plan.verdict.tag_to_apply is None:  # blocked before its first rollout
            plan.objects = [o for o in plan.objects if o["kind"] != "Deployment"]
        plan.missing_secrets = missing_provided_secrets(plan.inputs)

    async def _read_input(
        self,
        plan: EnvironmentPlan,
        ref: ObjectRef,
        remembered: Manifest | None,
        applied_before: frozenset[ObjectRef],
        verify: bool,
    ) -> Manifest | None:
        """An object the build depends on (the Deployment, the service Secret). Outside the
        inventory it is presumed absent and not read (see Applied.existed); between resyncs,
        what is remembered of it is used."""
        if not verify and ref not in applied_before:
            return None
        live = None if verify else remembered
        if live is None:
            live = await self.api.get(ref)
        plan.known[ref] = live
        return live

    def _remember_inputs(self, plan: EnvironmentPlan) -> None:
        """What a reconcile a watch event triggers reads instead of the API server: each
        Deployment as applied (its watch events keep it current) and each service Secret, whose
        generated values the next build keeps. The resync reads both again."""
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
                self._secrets[secret_ref] = without_managed_fields(live)

    def _forget(self, refs: Iterable[ObjectRef]) -> None:
        for ref in refs:
            self._secrets.pop(ref, None)

    # -- status ---------------------------------------------------------------------------------

    def _status(
        self,
        service: Service,
        plans: list[EnvironmentPlan],
        previous: Mapping[str, Any],
        wanted: inventory.Inventory,
        moment: datetime.datetime,
    ) -> dict[str, Any]:
        now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
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
        urls = [s["url"] for s in environments.values() if s.get("url")]
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": merge_conditions(
                previous.get("conditions") or [],
                [ready, stalled, promotion_blocked],
                generation,
                now,
            ),
            "environments": environments,
            "inventory": inventory.serialize(wanted),
        }
        if urls:
            status["url"] = ", ".join(urls)
        return status

    def _environment_status(
        self,
        service: Service,
        plan: EnvironmentPlan,
        old: Mapping[str, Any],
        generation: int,
        moment: datetime.datetime,
    ) -> dict[str, Any]:
        now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        status: dict[str, Any] = {
            k: v for k, v in old.items() if k in ("appliedTag", "readyTag", "readySince", "history")
        }
        if plan.problems or plan.inputs is None:
            problem = plan.problems[0] if plan.problems else Problem("Unknown", "not reconciled")
            ready = ConditionUpdate(READY, FALSE, problem.reason, problem.message)
            status["summary"] = summary(status.get("appliedTag"), status.get("readyTag"))
        else:
            inputs = plan.inputs
            verdict = plan.verdict
            desired = service.spec.environments[plan.name].image.tag
            status["desiredTag"] = desired
            deployment = next(
                (a.live for a in plan.applied if a.live and a.live["kind"] == "Deployment"), None
            )
            rollout = deployment_rollout(deployment)
            applied_tag = running_tag(deployment)
            history = [promotion.Rollout.from_status(h) for h in old.get("history") or []]
            if applied_tag is not None:
                status["appliedTag"] = applied_tag
                if old.get("appliedTag") != applied_tag:
                    skipped = verdict is not None and verdict.gates_skipped
                    history = promotion.record_rollout(
                        history,
                        promotion.Rollout(
                            applied_tag,
                            moment,
                            change_cause=service.meta.annotations.get(CHANGE_CAUSE_ANNOTATION),
                            gates_skipped=skipped,
                        ),
                    )
                if rollout.ready:
                    history = promotion.mark_ready(history, applied_tag, moment)
                    if status.get("readyTag") != applied_tag:
                        status["readyTag"] = applied_tag
                        status["readySince"] = now
            status["history"] = [h.to_status() for h in history]
            status["replicas"] = rollout.replicas
            status["availableReplicas"] = rollout.available_replicas
            blocked = desired if verdict is not None and not verdict.allowed else None
            status["summary"] = summary(
                status.get("appliedTag"), status.get("readyTag"), blocked=blocked
            )
            status["internalHost"] = naming.internal_host(inputs.name, inputs.namespace)
            if inputs.exposed:
                status["url"] = naming.public_url(
                    inputs.env.name, inputs.name, inputs.env.spec.ingress.domain
                )
            database = plan.database.condition if plan.database else None
            if database is not None and database.status != TRUE:
                ready = ConditionUpdate(READY, FALSE, database.reason, database.message)
            elif plan.missing_secrets:
                ready = ConditionUpdate(
                    READY,
                    FALSE,
                    "SecretMissing",
                    f"provided secrets still empty: {', '.join(plan.missing_secrets)} "
                    f"(fill them in: kubectl -n {inputs.namespace} edit secret "
                    f"{naming.secrets(inputs.name)})",
                )
            elif applied_tag is None:
                ready = ConditionUpdate(
                    READY, FALSE, "NotDeployed", verdict.message if verdict else "not deployed"
                )
            elif rollout.ready:
                ready = ConditionUpdate(READY, TRUE, "Ready", f"{applied_tag} is ready")
            else:
                ready = ConditionUpdate(
                    READY,
                    FALSE,
                    "Progressing",
                    f"rolling out {applied_tag}: "
                    f"{rollout.available_replicas}/{rollout.replicas} replicas available",
                )
        updates = [ready]
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
    ) -> None:
        if after == dict(before):
            return
        await self._write_status(known, after)
        identity = service.meta if service is not None else parse_identity(known.body)
        posted: set[str] = set()
        for cond in transitions(before.get("conditions") or [], after["conditions"]):
            if (cond["type"] == STALLED and cond["status"] != TRUE) or cond["reason"] in posted:
                continue
            posted.add(cond["reason"])  # Ready and Stalled often flip for the same reason
            quiet = cond["status"] == TRUE and cond["type"] == READY
            quiet = quiet or cond["reason"] in ("Progressing", "Suspended")
            type_: EventType = "Normal" if quiet else "Warning"
            await self.recorder.post(
                SERVICE_KIND, identity, type_, cond["reason"], cond["message"] or cond["reason"]
            )

    async def _write_status(self, known: Known[Service], status: dict[str, Any]) -> dict[str, Any]:
        name = known.body["metadata"]["name"]
        updated = await self.api.apply_status(SERVICE_KIND, name, status)
        # The response is the newest object we know: its spec too, not only our status.
        fresh = self.world.observe_service(updated)
        return fresh.status


def unmanaged_problem(live: Manifest) -> Problem:
    ref = ObjectRef.of(live)
    return Problem(
        "ObjectNotManaged",
        f"{ref.kind} {ref.namespace}/{ref.name} exists without the label "
        "app.kubernetes.io/managed-by=bandsy-operator; it is left alone (delete it or add "
        "the label to hand it over)",
    )
