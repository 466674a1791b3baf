"""``bandsyctl`` (also the kubectl plugin ``kubectl-bandsy``): status, history, backups, restore,
cost, promote, render, dotenv, check-branch, github-rules, init-service. It uses the operator's
own models, builders and gates; no rule lives here (rights are the API server's: the caller's
credentials, the policies of deploy/policies)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightkube import ApiError
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.types import PatchType

from . import naming, promotion, scaffold
from .branches import ForbiddenMergeError, InvalidBranchNameError, check_merge, classify
from .builders.inputs import ServedKinds
from .builders.service import build_service_objects
from .builders.sessions import libpq_variables, pgpass_line
from .checks import production_checks
from .constants import (
    API_VERSION,
    CHANGE_CAUSE_ANNOTATION,
    ENVIRONMENT_KIND,
    ENVIRONMENT_PLURAL,
    GROUP,
    PRODUCTION,
    SERVICE_KIND,
)
from .cost import DEFAULT_PRICES_NOTE, environment_cost
from .credentials import CredentialStore, HashKeyMissingError
from .exposure_status import exposure_columns
from .github_apply import CURRENT_REPO, GitHubError, load_workflows, valid_repo
from .github_apply import apply as apply_rulesets
from .github_rules import UnsupportedJobError, rulesets
from .kube import CLIENT_ERRORS, BandsyServiceResource, KubeApi, Manifest, ObjectRef
from .manifest_yaml import dump_all
from .observation import ReadMode
from .portforward import Forward, ForwardError, port_forward, relay_pod
from .promotion import GateVerdict, Readiness, carry_readiness
from .reconcile.databases import DatabaseReconciler
from .reconcile.mirrors import MirrorStep
from .reconcile.mirrors import refused as refused_mirror
from .reconcile.service import (
    current_image,
    decode_secret,
    deployment_ref,
    desired_image,
    egress_addresses,
    gate_input,
    read_pods,
    read_replicasets,
    ready_image,
    recorded_readiness,
    service_inputs,
    service_secret,
)
from .relay import LISTEN_PORT
from .resolver import HostResolver
from .restores import (
    InvalidRestoreRequestError,
    RestorePhase,
    RestoreRequest,
    annotation_key,
    new_request_id,
    parse_origin,
    refusal,
    restored_marker,
)
from .secrets_gen import random_secret
from .served import discover
from .settings import OperatorSettings
from .world import World

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
SESSIONS = ("connect", "db")  # commands that last until interrupted: that is their end
CLI_FIELD_MANAGER = "bandsyctl"
# What the API server answers when an admission policy (SPEC §10) or RBAC refuses a request.
REFUSED = (403, 422)


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback, exit code 1."""


# -- loading ------------------------------------------------------------------------------------


async def load_world(api: KubeApi) -> World:
    world = World()
    for body in await api.list(API_VERSION, ENVIRONMENT_KIND):
        world.observe_environment(body)
    for body in await api.list(API_VERSION, SERVICE_KIND):
        world.observe_service(body)
    return world


def _service(world: World, name: str) -> Any:
    known = world.services.get(name)
    if known is None:
        raise CommandError(f"no BandsyService {name!r} (kubectl get bsvc lists them)")
    if known.model is None:
        raise CommandError(f"BandsyService {name!r} is invalid: {known.error}")
    return known


def _environment(world: World, service: Any, env: str) -> Any:
    model = world.valid_environments().get(env)
    if model is None:
        raise CommandError(f"no BandsyEnvironment {env!r} (kubectl get benv lists them)")
    if env not in service.model.spec.environments:
        listed = ", ".join(sorted(service.model.spec.environments)) or "none"
        raise CommandError(
            f"{service.model.name} is not deployed in {env!r} (its environments: {listed})"
        )
    return model


# -- status -------------------------------------------------------------------------------------


def running_promoter(env_status: Mapping[str, Any]) -> str:
    """Who promoted what runs now: the promoter of the newest rollout of the applied image."""
    image, tag = env_status.get("appliedImage"), env_status.get("appliedTag")
    for entry in env_status.get("history") or []:
        # Entries written before images were recorded name the tag only.
        same = entry["image"] == image if entry.get("image") else entry.get("tag") == tag
        if same and (image or tag):
            return str(entry.get("promotedBy") or "")
    return ""


def status_rows(world: World, only: str | None) -> list[dict[str, str]]:
    rows = []
    for name in sorted(world.services):
        if only and name != only:
            continue
        known = world.services[name]
        environments = (known.status.get("environments") or {}) if known.model else {}
        for env in sorted(known.model.spec.environments if known.model else []):
            status = environments.get(env) or {}
            blocked = next(
                (
                    f"{c['reason']}: {c['message']}"
                    for c in status.get("conditions") or []
                    if c["type"] == "PromotionBlocked" and c["status"] == "True"
                ),
                "",
            )
            rows.append(
                {
                    "service": name,
                    "environment": env,
                    "desired": known.model.spec.environments[env].image.tag if known.model else "",
                    "applied": status.get("appliedTag", ""),
                    "ready": status.get("readyTag", ""),
                    "summary": status.get("summary", ""),
                    "promoted_by": running_promoter(status),
                    "blocked": blocked,
                    "url": status.get("url", ""),
                }
            )
    return rows


Row = dict[str, str]


def print_table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> None:
    headers = {c: c.replace("_", " ").upper() for c in columns}
    widths = {c: max([len(headers[c]), *(len(r[c]) for r in rows)]) for c in columns}
    print("  ".join(headers[c].ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join((row[c] or "-").ljust(widths[c]) for c in columns).rstrip())


async def cmd_status(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    if args.service:
        _service(world, args.service)
    rows = status_rows(world, args.service)
    environments = world.valid_environments()
    for row in rows:
        env = environments.get(row["environment"])
        row.update(
            await exposure_columns(api, env, row["service"])
            if row["url"] and env is not None
            else {"route": "", "certificate": ""}
        )
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        columns = ["service", "environment", "desired", "applied", "ready", "promoted_by"]
        print_table(rows, [*columns, "blocked", "url", "route", "certificate"])
    return 0


# -- history ------------------------------------------------------------------------------------

HISTORY_COLUMNS = (
    "environment",
    "tag",
    "applied_at",
    "ready_at",
    "promoted_by",
    "gates_skipped",
    "migration",
    "change_cause",
)


def history_rows(known: Any, only_env: str | None) -> list[Row]:
    """Each environment's rollouts as the operator recorded them, newest first."""
    environments = known.status.get("environments") or {}
    rows = []
    for env in sorted(known.model.spec.environments):
        if only_env and env != only_env:
            continue
        for entry in (environments.get(env) or {}).get("history") or []:
            rows.append(
                {
                    "environment": env,
                    "tag": str(entry.get("tag", "")),
                    "applied_at": str(entry.get("appliedAt", "")),
                    "ready_at": str(entry.get("readyAt", "")),
                    "promoted_by": str(entry.get("promotedBy", "")),
                    "gates_skipped": "yes" if entry.get("gatesSkipped") else "",
                    "migration": (
                        f"{seconds} s"
                        if (seconds := entry.get("migrationSeconds")) is not None
                        else ""
                    ),
                    "change_cause": str(entry.get("changeCause", "")),
                }
            )
    return rows


async def service_rows(
    api: KubeApi, args: argparse.Namespace, rows_of: Callable[[Any, str | None], list[Row]]
) -> list[Row]:
    """``rows_of`` the service ``args`` names, in its environment ``--env`` (all without)."""
    world = await load_world(api)
    known = _service(world, args.service)
    if args.env and args.env not in known.model.spec.environments:
        _environment(world, known, args.env)  # raises the reason
    return rows_of(known, args.env)


def print_rows(rows: list[Row], columns: Sequence[str], output: str) -> None:
    if output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, columns)


async def cmd_history(api: KubeApi, args: argparse.Namespace) -> int:
    print_rows(await service_rows(api, args, history_rows), HISTORY_COLUMNS, args.output)
    return 0


BACKUP_COLUMNS = ("environment", "taken", "verified", "size", "rows", "key")


def backup_rows(known: Any, only_env: str | None) -> list[Row]:
    """The verified backups of each environment, newest first, as the last run left them; the
    newest one with what its check found. A failure since is a row of its own."""
    environments = known.status.get("environments") or {}
    rows = []
    for env in sorted(known.model.spec.environments):
        if only_env and env != only_env:
            continue
        backup = (environments.get(env) or {}).get("backup") or {}
        newest = backup.get("lastVerified") or {}
        failed = backup.get("lastFailed") or {}
        if failed and str(failed.get("at", "")) >= str(newest.get("at", "")):
            rows.append(
                {
                    "environment": env,
                    "taken": str(failed.get("at", "")),
                    "verified": f"FAILED: {failed.get('reason', '')}",
                    "size": "",
                    "rows": "",
                    "key": "",
                }
            )
        for taken in backup.get("verified") or []:
            latest = taken == newest.get("taken")
            rows.append(
                {
                    "environment": env,
                    "taken": str(taken),
                    "verified": str(newest.get("at", "")) if latest else "yes",
                    "size": str(newest.get("size", "")) if latest else "",
                    "rows": str(newest.get("rows", "")) if latest else "",
                    "key": str(newest.get("key", "")) if latest else "",
                }
            )
    return rows


async def cmd_backups(api: KubeApi, args: argparse.Namespace) -> int:
    rows = await service_rows(api, args, backup_rows)
    print_rows(rows, BACKUP_COLUMNS, args.output)
    if not rows and args.output != "json":
        print(f"no backup of {args.service} yet", file=sys.stderr)
    return 0


# -- promote ------------------------------------------------------------------------------------


class Unreadable:
    """A Deployment the caller may not read (their rights end at the custom resources)."""


async def deployment_as_caller(api: KubeApi, ref: ObjectRef) -> Manifest | Unreadable | None:
    try:
        return await api.get(ref)
    except ApiError as error:
        if error.status.code == 403:
            return Unreadable()
        raise


async def upstream_readiness(
    api: KubeApi, world: World, service: Any, env: Any, now: datetime.datetime
) -> Readiness | None:
    """What runs Ready now in the environment ``env`` promotes from (as the operator's gate
    sees it: the upstream Deployment now, continuity from the service's status; only the
    status when the caller may not read the Deployment)."""
    source = env.spec.promotion.from_
    upstream = world.valid_environments().get(source) if source else None
    if upstream is None or source not in service.model.spec.environments:
        return None
    deployment = await deployment_as_caller(api, deployment_ref(upstream, service.model.name))
    recorded = recorded_readiness(
        (service.status.get("environments") or {}).get(source) or {},
        service.model.spec.image.repository,
    )
    if isinstance(deployment, Unreadable):
        return recorded
    try:
        pods = await read_pods(api, upstream, service.model.name) if deployment else []
        replicasets = await read_replicasets(api, upstream.namespace, pods)
    except ApiError as error:
        if error.status.code != 403:
            raise
        return recorded  # the caller may read Deployments but not pods: the status decides
    return carry_readiness(ready_image(deployment, pods, replicasets), recorded, now)


async def gate_verdict(
    api: KubeApi, world: World, known: Any, env: Any, service: Any
) -> GateVerdict:
    """The operator's verdict for ``service`` (a model, maybe with an edited tag) in ``env``."""
    now = datetime.datetime.now(datetime.UTC)
    deployment = await deployment_as_caller(api, deployment_ref(env, service.name))
    if isinstance(deployment, Unreadable):
        deployment = None  # what the operator last applied there, from the status
    statuses = known.status.get("environments") or {}
    status = statuses.get(env.name) or {}
    return promotion.evaluate(
        gate_input(
            service,
            env,
            current_image(deployment, status, service.spec.image.repository),
            await upstream_readiness(api, world, known, env, now),
            now,
            statuses,
        )
    )


async def cmd_promote(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    known = _service(world, args.service)
    env = _environment(world, known, args.to)
    tag = args.tag
    if tag is None:
        source = env.spec.promotion.from_
        if source is None:
            raise CommandError(f"{args.to} has no promotion.from: name the tag with --tag")
        upstream = await upstream_readiness(
            api, world, known, env, datetime.datetime.now(datetime.UTC)
        )
        tag = promotion.default_promotion_tag(upstream)
        if tag is None:
            raise CommandError(f"nothing runs Ready in {source} now: name the tag with --tag")
    service = known.model
    target = service.spec.environments[args.to]
    spec = service.spec.model_copy(
        update={
            "environments": {
                **service.spec.environments,
                args.to: target.model_copy(
                    update={"image": target.image.model_copy(update={"tag": tag})}
                ),
            }
        }
    )
    verdict = await gate_verdict(api, world, known, env, service.model_copy(update={"spec": spec}))
    if verdict.allowed:
        print(f"{service.name} {args.to}: {tag} passes the gates")
    else:
        print(
            f"{service.name} {args.to}: {tag} would be blocked ({verdict.reason}): "
            f"{verdict.message}"
        )
    patch: dict[str, Any] = {"spec": {"environments": {args.to: {"image": {"tag": tag}}}}}
    cause = args.reason or f"promote {tag} to {args.to}"
    patch["metadata"] = {"annotations": {CHANGE_CAUSE_ANNOTATION: cause}}
    # With --dry-run the API server still judges the edit (the caller's rights, SPEC §10).
    await _patch_as_caller(api, service.name, patch, dry_run=args.dry_run)
    if args.dry_run:
        print(f"{service.name} {args.to}: you may promote {tag} there")
        return 0 if verdict.allowed else EXIT_FAILURE
    print(f"{service.name}: spec.environments.{args.to}.image.tag = {tag} ({cause})")
    return 0


async def _patch_as_caller(api: KubeApi, name: str, patch: dict[str, Any], dry_run: bool) -> None:
    """A merge patch with the caller's credentials; a refusal (an admission policy, RBAC) is
    reported with the API server's own message, which names the rule and the missing right."""
    try:
        await api.client.patch(
            BandsyServiceResource,
            name,
            patch,
            patch_type=PatchType.MERGE,
            field_manager=CLI_FIELD_MANAGER,
            dry_run=dry_run,
        )
    except ApiError as error:
        if error.status.code in REFUSED and error.status.message:
            raise CommandError(error.status.message) from None
        raise


# -- cost ---------------------------------------------------------------------------------------

COST_COLUMNS = ("environment", "service", "replicas", "cpu", "memoryGiB", "monthly", "note")


def cost_rows(world: World, only_env: str | None) -> tuple[list[Row], list[str]]:
    """A line per service and a total per environment, as the operator computes status.cost;
    and what to say under the table (default prices, budgets exceeded)."""
    rows: list[Row] = []
    notes: list[str] = []
    services = list(world.valid_services().values())
    for name, env in sorted(world.valid_environments().items()):
        if only_env and name != only_env:
            continue
        cost = environment_cost(env, services)
        for line in cost.services:
            values = {k: str(v) for k, v in line.to_status().items()}
            rows.append({c: values.get(c, "") for c in COST_COLUMNS} | {"environment": name})
            rows[-1]["service"] = line.service
        total = cost.to_status()
        budget = f" of {total['monthlyBudget']}" if cost.budget is not None else ""
        summary = {"environment": name, "service": "(total)", "monthly": total["monthly"]}
        summary["note"] = f"budget {total['monthlyBudget']}" if cost.budget is not None else ""
        rows.append({c: summary.get(c, "") for c in COST_COLUMNS})
        if cost.over_budget:
            notes.append(f"{name}: {total['monthly']} a month is over its budget{budget}")
        if cost.prices.defaults:
            notes.append(f"{name}: {DEFAULT_PRICES_NOTE}")
    return rows, notes


async def cmd_cost(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    if args.env and args.env not in world.valid_environments():
        raise CommandError(f"no BandsyEnvironment {args.env!r} (kubectl get benv lists them)")
    rows, notes = cost_rows(world, args.env)
    print_rows(rows, COST_COLUMNS, args.output)
    if args.output != "json":
        for note in notes:
            print(note, file=sys.stderr)
    return 0


# -- doctor -------------------------------------------------------------------------------------

DOCTOR_COLUMNS = ("service", "environment", "check", "result", "found", "fix")


def doctor_rows(
    world: World, only_service: str | None, only_env: str | None, now: datetime.datetime
) -> tuple[list[Row], bool]:
    """The production checks (SPEC §12) of each service in each environment, the ones the
    operator's ProductionReady condition states; and whether a protected environment fails."""
    rows: list[Row] = []
    protected_failed = False
    environments = world.valid_environments()
    for name, service in sorted(world.valid_services().items()):
        if only_service and name != only_service:
            continue
        statuses = world.services[name].status.get("environments") or {}
        for env_name in sorted(service.spec.environments):
            env = environments.get(env_name)
            if env is None or (only_env and env_name != only_env):
                continue
            for check in production_checks(service, env, statuses.get(env_name) or {}, now):
                protected_failed |= env.protected and not check.passed
                rows.append(
                    {
                        "service": name,
                        "environment": env_name,
                        "check": check.name,
                        "result": "ok" if check.passed else "FAIL",
                        "found": check.found,
                        "fix": check.fix,
                    }
                )
    return rows, protected_failed


async def cmd_doctor(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    if args.service:
        known = _service(world, args.service)
        if args.env:
            _environment(world, known, args.env)
    elif args.env and args.env not in world.valid_environments():
        raise CommandError(f"no BandsyEnvironment {args.env!r} (kubectl get benv lists them)")
    now = datetime.datetime.now(datetime.UTC)
    rows, protected_failed = doctor_rows(world, args.service, args.env, now)
    if args.failed:
        rows = [row for row in rows if row["result"] != "ok"]
    print_rows(rows, DOCTOR_COLUMNS, args.output)
    if args.output != "json":
        failed = sum(row["result"] != "ok" for row in rows)
        verdict = "a protected environment fails" if protected_failed else "no protected one fails"
        print(f"{failed} check(s) failed; {verdict}", file=sys.stderr)
    return EXIT_FAILURE if protected_failed else 0


# -- connect and db -----------------------------------------------------------------------------


async def may_promote(api: KubeApi, environment: str) -> bool:
    """The caller's promote right there (SPEC §10), as the API server's authorizer answers."""
    review = SelfSubjectAccessReview(
        spec=SelfSubjectAccessReviewSpec(
            resourceAttributes=ResourceAttributes(
                group=GROUP, resource=ENVIRONMENT_PLURAL, verb="promote", name=environment
            )
        )
    )
    answer = await api.client.create(review)
    return bool(answer.status and answer.status.allowed)


async def refuse_protected(api: KubeApi, args: argparse.Namespace, env: Any, what: str) -> None:
    """A protected environment's live data and pods: only with --allow-production and the
    right to promote there. RBAC (pods/portforward, Secrets) is what really holds the line:
    this is the same rule said before anything is opened."""
    if not env.protected:
        return
    if not args.allow_production:
        raise CommandError(
            f"{env.name} is protected: {what} there needs --allow-production (and the right "
            "to promote there)"
        )
    if not await may_promote(api, env.name):
        raise CommandError(
            f"{what} in {env.name} needs the right to promote there (ClusterRole "
            f"bandsy:promoter:{env.name}), which you do not have"
        )


async def cmd_connect(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    known = _service(world, args.service)
    env = _environment(world, known, args.env)
    name, port = known.model.name, known.model.spec.port
    if port is None:
        raise CommandError(f"{name} has no port (a worker): there is nothing to connect to")
    await refuse_protected(api, args, env, f"a connection to {name}")
    try:
        async with port_forward(env.namespace, f"svc/{name}", port, args.local_port) as forward:
            print(
                f"{name} in {env.name}: http://127.0.0.1:{forward.local_port} (in the cluster "
                f"http://{name}.{env.namespace}.svc.cluster.local:{port}); Ctrl-C ends it",
                flush=True,
            )
            return EXIT_FAILURE if await forward.ended() else 0
    except ForwardError as error:
        raise CommandError(f"kubectl port-forward: {error}") from None


async def cmd_db(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    known = _service(world, args.service)
    env = _environment(world, known, args.env)
    name = known.model.name
    if not known.model.spec.postgres.enabled:
        raise CommandError(f"{name} does not use PostgreSQL (spec.postgres.enabled)")
    await refuse_protected(api, args, env, f"a session as {name}'s database role")
    secret_ref = ObjectRef("v1", "Secret", env.namespace, naming.backend_secret(name, "postgres"))
    credentials = decode_secret(await api.get(secret_ref))
    if "PGHOST" not in credentials:
        raise CommandError(f"{secret_ref.namespace}/{secret_ref.name} does not exist yet")
    image = args.image or world.environments[env.name].status.get("jobImage")
    if not image:
        raise CommandError(
            f"environment {env.name} does not name the operator's image yet (status.jobImage): "
            "pass --image"
        )
    target = (credentials["PGHOST"], int(credentials["PGPORT"]))
    try:
        async with (
            relay_pod(api, name, env.name, env.namespace, image, target) as pod,
            port_forward(env.namespace, f"pod/{pod}", LISTEN_PORT, args.local_port) as forward,
        ):
            variables = libpq_variables(credentials, forward.local_port)
            if args.print_env:
                return await print_session(variables, credentials, forward)
            # Ctrl-C is psql's (it cancels a query); the session ends when psql does.
            with interrupts_ignored():
                psql = await asyncio.create_subprocess_exec(
                    "psql",
                    *args.passthrough,
                    # The password through the environment only: never argv, never printed.
                    env={**os.environ, **variables, "PGPASSWORD": credentials["PGPASSWORD"]},
                )
                return await psql.wait()
    except ForwardError as error:
        raise CommandError(str(error)) from None


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


async def print_session(
    variables: Mapping[str, str], credentials: Mapping[str, str], forward: Forward
) -> int:
    """``export`` lines for other tools; the password goes to a private password file for the
    session's length, not to the terminal."""
    with tempfile.TemporaryDirectory(prefix="bandsy-db-") as folder:
        passfile = Path(folder) / "pgpass"
        write_private(passfile, pgpass_line(variables, credentials["PGPASSWORD"]))
        for key, value in {**variables, "PGPASSFILE": str(passfile)}.items():
            print(f"export {key}={shlex.quote(value)}")
        print("# the session lasts until Ctrl-C", file=sys.stderr, flush=True)
        sys.stdout.flush()
        return EXIT_FAILURE if await forward.ended() else 0


# -- restore ------------------------------------------------------------------------------------

RESTORE_POLL_SECONDS = 2.0


def restore_request(args: argparse.Namespace, env: Any, world: World) -> RestoreRequest:
    """The request the arguments ask for, refused here when the operator would refuse it."""
    request_id = new_request_id(datetime.datetime.now(datetime.UTC))
    if args.cleanup:
        return RestoreRequest(request_id)
    if not args.from_:
        raise CommandError("name the backup with --from ENV@TIMESTAMP|latest, or use --cleanup")
    try:
        source, backup = parse_origin(args.from_)
    except InvalidRestoreRequestError as error:
        raise CommandError(str(error)) from None
    refused = refusal(env, world.valid_environments().get(source))
    if refused is not None:
        raise CommandError(refused)
    return RestoreRequest(request_id, source, backup)


def confirm(args: argparse.Namespace, what: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(f"{what}: add --yes to confirm (no terminal to ask)")
    answer = input(f"{what}.\nType the service's name to go on: ")
    if answer.strip() != args.service:
        raise CommandError("not confirmed; nothing was changed")


async def cmd_restore(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    known = _service(world, args.service)
    env = _environment(world, known, args.env)
    if env.protected and not args.allow_production:
        raise CommandError(
            f"{args.env} is protected: a restore there replaces live data; add "
            "--allow-production (and you need the right to promote there)"
        )
    before = ((known.status.get("environments") or {}).get(args.env) or {}).get("restore") or {}
    if before.get("phase") == RestorePhase.RESTORING:
        raise CommandError(f"restore {before.get('id')} is under way there; wait for it to end")
    request = restore_request(args, env, world)
    if request.cleanup:
        what = f"drop {before.get('previous') or 'the database the last restore replaced'}"
    else:
        what = (
            f"replace the database of {args.service} in {args.env} with its backup "
            f"{request.origin} (the current one is kept until --cleanup)"
        )
    confirm(args, what)
    patch = {"metadata": {"annotations": {annotation_key(args.env): request.to_annotation()}}}
    await _patch_as_caller(api, args.service, patch, dry_run=False)
    print(f"{args.service} {args.env}: requested {request.id}: {what}")
    if not args.wait:
        print(f"follow it with: bandsyctl status {args.service}")
        return 0
    try:
        async with asyncio.timeout(args.wait):
            return await wait_for_restore(api, args.service, args.env, request.id)
    except TimeoutError:
        raise CommandError(f"{request.id} has not ended within {args.wait:.0f} s") from None


async def wait_for_restore(api: KubeApi, service: str, env: str, request_id: str) -> int:
    """Until the operator's record of ``request_id`` leaves Restoring; its verdict."""
    while True:
        body = await api.get(ObjectRef(API_VERSION, SERVICE_KIND, "", service))
        environments = ((body or {}).get("status") or {}).get("environments") or {}
        record = (environments.get(env) or {}).get("restore") or {}
        if record.get("id") == request_id and record.get("phase") != RestorePhase.RESTORING:
            print(f"{service} {env}: {record.get('phase')}: {record.get('message', '')}")
            ok = (RestorePhase.RESTORED, RestorePhase.CLEANED_UP)
            return 0 if record.get("phase") in ok else EXIT_FAILURE
        await asyncio.sleep(RESTORE_POLL_SECONDS)


# -- render -------------------------------------------------------------------------------------


async def backup_image(api: KubeApi, env: Any, service: str) -> str | None:
    """The image the operator gave the service's backup CronJob (its own, which this command
    cannot know otherwise); None before there is one."""
    ref = ObjectRef("batch/v1", "CronJob", env.namespace, naming.backup_cronjob(service))
    cronjob = await api.get(ref) if env.spec.backups is not None else None
    template = (((cronjob or {}).get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
    containers = ((template.get("template") or {}).get("spec") or {}).get("containers") or []
    return str(containers[0]["image"]) if containers else None


async def served_kinds(api: KubeApi) -> ServedKinds:
    """As the operator asks it; whoever may not read CRDs (the built-in view and edit roles
    may not) sees the objects without the other projects' kinds."""
    try:
        return await discover(api)
    except ApiError:
        return ServedKinds()


async def rendered_objects(api: KubeApi, world: World, name: str, env_name: str) -> list[Manifest]:
    known = _service(world, name)
    env = _environment(world, known, env_name)
    service = known.model
    live_secret = await api.get(service_secret(env.namespace, service.name))
    verdict = await gate_verdict(api, world, known, env, service)
    store = CredentialStore(api, OperatorSettings.from_env().operator_namespace)
    try:
        hash_key = await store.config_hash_key(create=False)
    except HashKeyMissingError as error:
        raise CommandError(str(error)) from None
    # What the operator last swapped in here (its pods started after it), from the status.
    recorded = (known.status.get("environments") or {}).get(env_name) or {}
    mirrored = ((recorded.get("mirror") or {}).get("lastMirrored") or {}).get("job")
    mirror_runs = refused_mirror(service, env, world.valid_environments()) is None
    inputs = service_inputs(
        service,
        env,
        world,
        live_secret,
        await DatabaseReconciler(api, store, {}).projections(service, env),
        verdict.image_to_apply or desired_image(service, env_name),
        hash_key,
        await backup_image(api, env, service.name),
        restored=restored_marker(recorded.get("restore") or {}),
        mirror=MirrorStep(recorded.get("mirror"), mirrored, runs=mirror_runs),
        egress_addresses=await egress_addresses(HostResolver(), service, ReadMode.LIVE),
        kinds=await served_kinds(api),
    )
    objects = build_service_objects(inputs, random_secret)
    if verdict.image_to_apply is None:
        objects = [o for o in objects if o["kind"] != "Deployment"]
    return objects


async def cmd_render(api: KubeApi, args: argparse.Namespace) -> int:
    world = await load_world(api)
    objects = await rendered_objects(api, world, args.service, args.env)
    if not args.show_secrets:
        # Values stay out of terminals and tickets; kubectl diff leaves absent fields alone.
        for obj in objects:
            if obj["kind"] == "Secret":
                obj.pop("data", None)
    print(dump_all(objects), end="")
    return 0


# -- dotenv -------------------------------------------------------------------------------------


def dotenv_line(key: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{key}="{escaped}"'


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.write_text(text)


def git_ignores(path: Path) -> bool:
    """True only when ``path`` is inside a git work tree and ignored there."""
    if not path.parent.is_dir():
        return False
    try:
        result = subprocess.run(
            ["git", "check-ignore", "-q", path.name], cwd=path.parent, capture_output=True
        )
    except FileNotFoundError:  # no git: nothing can vouch that the file stays out of commits
        return False
    return result.returncode == 0


async def cmd_dotenv(api: KubeApi, args: argparse.Namespace) -> int:
    if args.env == PRODUCTION and not args.allow_production:
        raise CommandError("refusing to copy production secrets; add --allow-production")
    target = await asyncio.to_thread(Path(args.output).resolve) if args.output else None
    if target is not None and not await asyncio.to_thread(git_ignores, target):
        raise CommandError(
            f"{args.output} is not ignored by git: add it to .gitignore first "
            "(.env files are never committed)"
        )
    world = await load_world(api)
    known = _service(world, args.service)
    env = _environment(world, known, args.env)
    name = known.model.name
    values: dict[str, str] = {}
    config = await api.get(ObjectRef("v1", "ConfigMap", env.namespace, naming.config_map(name)))
    if config is None:
        raise CommandError(f"{env.namespace}/{naming.config_map(name)} does not exist yet")
    values.update(config.get("data") or {})
    for secret_name in (
        naming.secrets(name),
        *(naming.backend_secret(name, b) for b in ("postgres", "redis", "mongo")),
    ):
        values.update(
            decode_secret(await api.get(ObjectRef("v1", "Secret", env.namespace, secret_name)))
        )
    text = "".join(dotenv_line(k, v) + "\n" for k, v in sorted(values.items()))
    header = f"# {name} in {args.env}, from the cluster by bandsyctl; never commit this file\n"
    if target is None:
        sys.stdout.write(header + text)
    else:
        await asyncio.to_thread(write_private, target, header + text)
        print(f"wrote {len(values)} variables to {args.output}")
    return 0


# -- check-branch -------------------------------------------------------------------------------


def current_branch() -> str | None:
    """The checked-out branch of the git work tree here (even before its first commit, when a
    pre-commit hook runs); None when HEAD is detached."""
    try:
        result = subprocess.run(
            ["git", "symbolic-ref", "--quiet", "--short", "HEAD"], capture_output=True, text=True
        )
    except FileNotFoundError as err:
        raise CommandError("git is not on PATH: name the branch to check") from err
    if result.returncode == 1:  # HEAD is no symbolic ref: detached
        return None
    if result.returncode != 0:
        raise CommandError(f"not in a git work tree: {result.stderr.strip()}")
    return result.stdout.strip()


def cmd_check_branch(args: argparse.Namespace) -> int:
    name = args.name if args.name is not None else current_branch()
    if name is None:  # detached (rebase, bisect): no branch to judge
        print("detached HEAD: no branch to check")
        return 0
    try:
        policy = classify(name) if args.into is None else check_merge(name, args.into)
    except InvalidBranchNameError as err:
        print(f"invalid branch name: {err}", file=sys.stderr)
        print(
            "CI/CD ignores this branch and it must not be merged into develop or master.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except ForbiddenMergeError as err:
        print(f"forbidden merge: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(policy.describe())
    return 0


# -- github-rules, init-service -----------------------------------------------------------------


def cmd_github_rules(args: argparse.Namespace) -> int:
    try:
        repo = valid_repo(args.repo)
        bodies, warnings = rulesets(load_workflows(Path(args.workflows)))
        for warning in warnings:
            print(warning, file=sys.stderr)
        print(json.dumps(bodies, indent=2, ensure_ascii=False))
        if args.apply:
            for line in apply_rulesets(repo, bodies):
                print(line, file=sys.stderr)
    except (GitHubError, UnsupportedJobError) as err:
        raise CommandError(str(err)) from err
    return 0


def cmd_init_service(args: argparse.Namespace) -> int:
    try:
        files = scaffold.render(
            args.name, scaffold.Platform.parse(args.platform), args.image_repository
        )
        written = scaffold.write(Path(args.dir), files, force=args.force)
    except (scaffold.ScaffoldError, naming.InvalidNameError) as err:
        raise CommandError(str(err)) from err
    for path in written:
        print(f"wrote {path}")
    return 0


# -- wiring -------------------------------------------------------------------------------------

ClusterCommand = Callable[[KubeApi, argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandsyctl", description="Bandsy platform command line (also: kubectl bandsy)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser("status", help="what runs where, and what is blocked")
    status.add_argument("service", nargs="?", help="one service (default: all)")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(cluster=cmd_status)

    history = commands.add_parser(
        "history", help="the rollouts of each environment: when, who promoted, why"
    )
    history.add_argument("service")
    history.add_argument("--env", metavar="ENV", help="one environment (default: all)")
    history.add_argument("-o", "--output", choices=["table", "json"], default="table")
    history.set_defaults(cluster=cmd_history)

    backups = commands.add_parser(
        "backups", help="the verified backups of a service's database, newest first"
    )
    backups.add_argument("service")
    backups.add_argument("--env", metavar="ENV", help="one environment (default: all)")
    backups.add_argument("-o", "--output", choices=["table", "json"], default="table")
    backups.set_defaults(cluster=cmd_backups)

    cost = commands.add_parser(
        "cost", help="what each environment's services cost a month (requests x replicas x 730 h)"
    )
    cost.add_argument("--env", metavar="ENV", help="one environment (default: all)")
    cost.add_argument("-o", "--output", choices=["table", "json"], default="table")
    cost.set_defaults(cluster=cmd_cost)

    doctor = commands.add_parser(
        "doctor",
        help="production readiness checks, each failed one with its fix (exit 1: a protected "
        "environment fails one)",
    )
    doctor.add_argument("service", nargs="?", help="one service (default: all)")
    doctor.add_argument("--env", metavar="ENV", help="one environment (default: all)")
    doctor.add_argument("--failed", action="store_true", help="only the checks that fail")
    doctor.add_argument("-o", "--output", choices=["table", "json"], default="table")
    doctor.set_defaults(cluster=cmd_doctor)

    connect = commands.add_parser(
        "connect", help="port-forward to a service (kubectl port-forward, your credentials)"
    )
    connect.add_argument("service")
    connect.add_argument("--env", required=True)
    connect.add_argument("--local-port", type=int, default=0, help="default: any free port")
    connect.add_argument("--allow-production", action="store_true")
    connect.set_defaults(cluster=cmd_connect)

    db = commands.add_parser(
        "db",
        help="psql as the service's database role, through a relay pod and a port-forward",
        usage="bandsyctl db SERVICE --env ENV [options] [-- PSQL_ARGS ...]",
        epilog="Arguments after -- go to psql (e.g. -- -c 'select 1').",
    )
    db.add_argument("service")
    db.add_argument("--env", required=True)
    db.add_argument("--local-port", type=int, default=0, help="default: any free port")
    db.add_argument(
        "--print-env",
        action="store_true",
        help="print the libpq variables for other tools and keep the session until Ctrl-C",
    )
    db.add_argument("--image", help="the relay's image (default: the environment's jobImage)")
    db.add_argument("--allow-production", action="store_true")
    db.set_defaults(cluster=cmd_db)

    restore = commands.add_parser(
        "restore",
        help="replace a service's database with a verified backup (the old one is kept)",
    )
    restore.add_argument("service")
    restore.add_argument("--env", required=True, metavar="ENV", help="the database to replace")
    restore.add_argument(
        "--from", dest="from_", metavar="ENV@TIMESTAMP|ENV@latest", help="the backup to restore"
    )
    restore.add_argument(
        "--cleanup", action="store_true", help="drop the database the last restore replaced"
    )
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument(
        "--allow-production", action="store_true", help="the environment is a protected one"
    )
    restore.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait this long for the outcome"
    )
    restore.set_defaults(cluster=cmd_restore)

    promote = commands.add_parser("promote", help="set the image tag of one environment")
    promote.add_argument("service")
    promote.add_argument("--to", required=True, metavar="ENV", help="target environment")
    promote.add_argument("--tag", help="default: the tag Ready in the upstream environment")
    promote.add_argument("--reason", help="change cause recorded in the rollout history")
    promote.add_argument(
        "--dry-run",
        action="store_true",
        help="print the gate verdict and whether you may promote, change nothing",
    )
    promote.set_defaults(cluster=cmd_promote)

    render = commands.add_parser(
        "render", help="the manifests the operator would apply (for kubectl diff -f -)"
    )
    render.add_argument("service")
    render.add_argument("--env", required=True)
    render.add_argument("--show-secrets", action="store_true", help="include Secret data")
    render.set_defaults(cluster=cmd_render)

    dotenv = commands.add_parser("dotenv", help="a .env file from the service's config and secrets")
    dotenv.add_argument("service")
    dotenv.add_argument("--env", required=True)
    dotenv.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    dotenv.add_argument("--allow-production", action="store_true")
    dotenv.set_defaults(cluster=cmd_dotenv)

    check = commands.add_parser(
        "check-branch", help="validate a branch name (SPEC §2) and show what CI/CD does for it"
    )
    check.add_argument("name", nargs="?", help="default: the current git branch")
    check.add_argument(
        "--into",
        metavar="TARGET",
        help="also fail unless NAME may be merged into TARGET (a pull request's base)",
    )
    check.set_defaults(local=cmd_check_branch)

    rules = commands.add_parser(
        "github-rules",
        help="GitHub rulesets of master and develop (SPEC §2) as REST API JSON; --apply sends them",
    )
    rules.add_argument(
        "--repo",
        default=CURRENT_REPO,
        metavar="OWNER/NAME",
        help="the repository --apply changes (default: gh's, from the git remote here)",
    )
    rules.add_argument(
        "--workflows",
        default=".github/workflows",
        metavar="DIR",
        help="whose pull-request jobs become required checks (default: %(default)s)",
    )
    rules.add_argument(
        "--apply",
        action="store_true",
        help="create or update (by name) the rulesets with `gh api` (needs the GitHub CLI)",
    )
    rules.set_defaults(local=cmd_github_rules)

    init = commands.add_parser(
        "init-service",
        help="a service repository's starter files: bandsy.yaml, release workflow, .gitignore, "
        "pre-commit branch check",
    )
    init.add_argument("name", help="the BandsyService's name")
    init.add_argument("--dir", default=".", metavar="PATH", help="default: the current directory")
    init.add_argument(
        "--platform",
        default=scaffold.DEFAULT_PLATFORM,
        metavar="OWNER/REPO@REF",
        help="where the reusable service-release.yaml workflow and bandsyctl come from "
        "(default: %(default)s)",
    )
    init.add_argument(
        "--image-repository",
        metavar="REPOSITORY",
        help="the image without a tag (default: ghcr.io/<platform owner>/NAME)",
    )
    init.add_argument("--force", action="store_true", help="overwrite files that are there")
    init.set_defaults(local=cmd_init_service)
    return parser


async def _run_cluster(command: ClusterCommand, args: argparse.Namespace) -> int:
    api = KubeApi.from_environment()
    try:
        return await command(api, args)
    finally:
        await api.close()


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """Ours, and what follows the first "--" (psql's, for db): argparse's subcommands would
    take the latter apart (``-c`` read as an unknown option of ours)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def main(argv: list[str] | None = None) -> None:
    ours, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(ours)
    if passthrough and args.command != "db":
        parser.error(f"{args.command} takes no arguments after --")
    args.passthrough = passthrough
    # A session (connect, db) ends with Ctrl-C or a TERM: both clean up (the relay pod).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if hasattr(args, "local"):
            code = args.local(args)
        else:
            code = asyncio.run(_run_cluster(args.cluster, args))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        code = EXIT_FAILURE
    except KeyboardInterrupt:
        code = 0 if args.command in SESSIONS else EXIT_INTERRUPTED
    except CLIENT_ERRORS as error:
        print(f"error: the cluster refused or could not be reached: {error}", file=sys.stderr)
        code = EXIT_FAILURE
    sys.exit(code)
