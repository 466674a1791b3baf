"""Pure status computation: conditions with transition times, summaries, and the readiness of a
Deployment with what its pods and their kubelets report."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .constants import REVISION_ANNOTATION

Condition = dict[str, Any]

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
# The condition every custom resource has, and the one readiness is read from.
READY = "Ready"
NOT_DEPLOYED = "-"
SUSPENDED = "(suspended)"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: str
    reason: str
    message: str = ""


def merge_conditions(
    previous: Sequence[Condition],
    updates: Sequence[ConditionUpdate],
    generation: int,
    now: str,
) -> list[Condition]:
    """Set ``updates`` over ``previous``; lastTransitionTime only moves when status changes.
    Conditions not in ``updates`` are dropped: every reconcile states all it knows."""
    old = {c["type"]: c for c in previous}
    merged = []
    for update in updates:
        before = old.get(update.type)
        changed = before is None or before.get("status") != update.status
        merged.append(
            {
                "type": update.type,
                "status": update.status,
                "reason": update.reason,
                "message": update.message,
                "observedGeneration": generation,
                "lastTransitionTime": now if changed else before["lastTransitionTime"],  # type: ignore[index]
            }
        )
    return merged


def transitions(previous: Sequence[Condition], current: Sequence[Condition]) -> list[Condition]:
    """Conditions whose status or reason changed: each deserves one Event, not every tick."""
    old = {c["type"]: (c.get("status"), c.get("reason")) for c in previous}
    return [c for c in current if old.get(c["type"]) != (c["status"], c["reason"])]


@dataclass(frozen=True)
class Failure:
    """Why a rollout cannot become Ready by itself (SPEC §12): a Ready condition's reason and
    message, both from what the kubelet or the deployment controller reported."""

    reason: str
    message: str


IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
FAILED_CREATE = "FailedCreate"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
# Waiting reasons of a container that will not run without a fix (of the image, the program or
# its configuration; the kubelet only retries), to the reason reported. The kubelet alternates
# some at every retry (ErrImagePull with ImagePullBackOff, RunContainerError with
# CrashLoopBackOff): one reason per cause keeps the condition, and its Events, steady.
# ContainerCreating and PodInitializing are on their way, and left out.
CONTAINER_FAILURES: Mapping[str, str] = {
    "ErrImagePull": IMAGE_PULL_BACK_OFF,
    IMAGE_PULL_BACK_OFF: IMAGE_PULL_BACK_OFF,
    "InvalidImageName": "InvalidImageName",
    "ErrImageNeverPull": "ErrImageNeverPull",
    "RunContainerError": CRASH_LOOP_BACK_OFF,
    CRASH_LOOP_BACK_OFF: CRASH_LOOP_BACK_OFF,
    "CreateContainerConfigError": "CreateContainerConfigError",  # a missing Secret, root image
    "CreateContainerError": "CreateContainerError",
}
REPLICA_FAILURE = "ReplicaFailure"  # a Deployment condition: its ReplicaSet cannot create pods
PROGRESSING = "Progressing"


def _last_exit(container: Mapping[str, Any]) -> str | None:
    """How the container's previous run ended. Its termination message is left out: the
    program writes it, and it may hold anything, a secret included."""
    ended = ((container.get("lastState") or {}).get("terminated")) or {}
    if not ended:
        return None
    code, reason = ended.get("exitCode"), ended.get("reason") or "Terminated"
    return f"container {container.get('name', '?')} exited with code {code} ({reason})"


def _container_failure(container: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(reason, the kubelet's own reason, what happened) of one entry of a pod's
    ``containerStatuses``, or None."""
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    kubelet_reason = str(waiting.get("reason") or "")
    if kubelet_reason in CONTAINER_FAILURES:
        # CrashLoopBackOff's own message ("back-off 40s restarting ...") grows at every restart.
        exited = _last_exit(container) if kubelet_reason == CRASH_LOOP_BACK_OFF else None
        detail = exited or str(waiting.get("message") or kubelet_reason)
        return CONTAINER_FAILURES[kubelet_reason], kubelet_reason, detail
    # Between two back-offs a crashing container runs again, not yet ready: still the loop.
    restarted = int(container.get("restartCount") or 0) > 0
    if "running" in state and restarted and not container.get("ready"):
        exited = _last_exit(container)
        if exited is not None:
            return CRASH_LOOP_BACK_OFF, CRASH_LOOP_BACK_OFF, exited
    return None


def pod_failure(pod: Mapping[str, Any]) -> Failure | None:
    """The first container of ``pod`` that cannot run, as its kubelet reports it (init containers
    first); None while every container runs or is on its way, and for a pod being deleted.
    The message reads like ``kubectl get pods``: the kubelet's reason, the pod, what happened."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    containers = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    for container in containers:
        found = _container_failure(container)
        if found is not None:
            reason, kubelet_reason, detail = found
            return Failure(reason, f"{kubelet_reason}: pod {meta.get('name', '?')}: {detail}")
    return None


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ownerReference of ``obj``'s controller, or an empty one."""
    references = obj.get("metadata", {}).get("ownerReferences") or []
    return next((ref for ref in references if ref.get("controller")), {})


def failing_replicasets(pods: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of the ReplicaSets whose pods fail: whether they are the current one is theirs to
    say (their revision), so only these are read."""
    names = set()
    for pod in pods:
        owner = _controller(pod)
        if owner.get("kind") == "ReplicaSet" and pod_failure(pod) is not None:
            names.add(str(owner.get("name")))
    return names


def current_replicaset(
    deployment: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The Deployment's ReplicaSet of its current template: the deployment controller gives
    it the Deployment's revision (a rollback to an older template renumbers that one)."""
    meta = deployment.get("metadata") or {}
    revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
    if revision is None:
        return None
    for replicaset in replicasets:
        annotations = replicaset.get("metadata", {}).get("annotations") or {}
        owned = _controller(replicaset).get("uid") == meta.get("uid")
        if owned and annotations.get(REVISION_ANNOTATION) == revision:
            return replicaset
    return None


def _pods_failure(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    replicasets: Sequence[Mapping[str, Any]],
) -> Failure | None:
    """The failure of the current ReplicaSet's pods: those of an older one are being replaced."""
    current = current_replicaset(deployment, replicasets)
    if current is None:
        return None
    uid = current.get("metadata", {}).get("uid")
    mine = sorted(
        (p for p in pods if _controller(p).get("uid") == uid),
        key=lambda p: str(p.get("metadata", {}).get("name", "")),
    )
    failures = [f for f in map(pod_failure, mine) if f is not None]
    if not failures:
        return None
    first, others = failures[0], len(failures) - 1
    if others:
        return Failure(first.reason, f"{first.message} (and {others} more failing pods)")
    return first


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def _deployment_failure(status: Mapping[str, Any]) -> Failure | None:
    """What the deployment controller reports: pods its ReplicaSet cannot create (a quota,
    Pod Security), or a rollout that made no progress within its deadline."""
    replica_failure = _condition(status, REPLICA_FAILURE)
    if replica_failure.get("status") == TRUE:
        reason = str(replica_failure.get("reason") or FAILED_CREATE)
        return Failure(reason, f"{reason}: {replica_failure.get('message', '')}")
    progressing = _condition(status, PROGRESSING)
    if (
        progressing.get("status") == FALSE
        and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED
    ):
        return Failure(
            PROGRESS_DEADLINE_EXCEEDED,
            f"{PROGRESS_DEADLINE_EXCEEDED}: {progressing.get('message', '')}",
        )
    return None


@dataclass(frozen=True)
class Rollout:
    """What a Deployment and its pods report about the tag it runs."""

    replicas: int
    available_replicas: int
    ready: bool
    failure: Failure | None = None


def deployment_rollout(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]] = (),
    replicasets: Sequence[Mapping[str, Any]] = (),
) -> Rollout:
    """Ready = the controller saw the latest spec, at least one replica is asked for, every
    replica is updated and available (SPEC §6): an environment scaled to zero runs nothing; and
    nothing fails (§12): no pod of the current ReplicaSet, nor its creation. ``pods``: the
    Deployment's (at least its failing ones), ``replicasets``: the owners of the failing ones.
    Failures reported before the controller saw the latest spec are about an older one."""
    if deployment is None:
        return Rollout(0, 0, False)
    spec_replicas = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    available = int(status.get("availableReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    observed = int(status.get("observedGeneration", 0)) >= generation
    failure = None
    if observed and spec_replicas > 0:
        failure = _pods_failure(deployment, pods, replicasets) or _deployment_failure(status)
    ready = spec_replicas > 0 and observed and failure is None
    ready = ready and updated >= spec_replicas and available >= spec_replicas
    ready = ready and total <= spec_replicas  # old pods gone
    return Rollout(spec_replicas, available, ready, failure)


def summary(
    applied: str | None,
    ready: str | None,
    *,
    rolling_from: str | None = None,
    blocked: str | None = None,
    held_as: str = "blocked",
) -> str:
    """SPEC §3.2 vocabulary: converged ``tag``, rolling ``old -> new`` (``rolling_from``: what ran
    before, ``(none)`` for a first rollout), ``tag (blocked)`` (or ``held_as``: ``migrating``
    while its migration runs); and ``tag (not ready)`` for a tag that was Ready and is no longer
    (crash loop, scaled to zero, a stuck rollout)."""
    if blocked is not None:
        return f"{blocked} ({held_as})"
    if applied is None:
        return NOT_DEPLOYED
    if ready == applied:
        return applied
    if rolling_from is not None:
        return f"{rolling_from} -> {applied}"
    return f"{applied} (not ready)"
