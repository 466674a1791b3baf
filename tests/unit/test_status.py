from __future__ import annotations

from typing import Any

import pytest

from bandsy_operator.constants import REVISION_ANNOTATION
from bandsy_operator.status import (
    ConditionUpdate,
    Failure,
    current_replicaset,
    deployment_rollout,
    failing_replicasets,
    merge_conditions,
    pod_failure,
    summary,
    transitions,
)
from workloads import (
    crash_loop_back_off,
    failed_create,
    image_pull_back_off,
    pod_of,
    replicaset_of,
    running_status,
    waiting_status,
)


def test_transition_time_moves_only_when_status_changes() -> None:
    first = merge_conditions([], [ConditionUpdate("Ready", "False", "Progressing")], 1, "t1")
    same = merge_conditions(first, [ConditionUpdate("Ready", "False", "Other", "m")], 2, "t2")
    assert same[0]["lastTransitionTime"] == "t1"
    assert same[0]["observedGeneration"] == 2
    flipped = merge_conditions(same, [ConditionUpdate("Ready", "True", "Ready")], 2, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"
    assert transitions(same, flipped) == flipped
    assert transitions(flipped, flipped) == []


@pytest.mark.parametrize(
    ("applied", "ready", "rolling_from", "blocked", "expected"),
    [
        ("release-1.7.2", "release-1.7.2", None, None, "release-1.7.2"),
        ("release-1.7.2", None, "release-1.7.1", None, "release-1.7.1 -> release-1.7.2"),
        ("release-1.7.2", None, "(none)", None, "(none) -> release-1.7.2"),
        ("release-1.7.2", None, None, None, "release-1.7.2 (not ready)"),
        ("release-1.7.1", "release-1.7.1", None, "release-1.7.2", "release-1.7.2 (blocked)"),
        (None, None, None, None, "-"),
    ],
)
def test_summary(
    applied: str | None,
    ready: str | None,
    rolling_from: str | None,
    blocked: str | None,
    expected: str,
) -> None:
    assert summary(applied, ready, rolling_from=rolling_from, blocked=blocked) == expected


def deployment(spec_replicas: int, generation: int = 2, **status: int) -> dict[str, object]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": spec_replicas},
        "status": status,
    }


def test_rollout_readiness() -> None:
    assert not deployment_rollout(None).ready
    done = deployment(3, observedGeneration=2, replicas=3, updatedReplicas=3, availableReplicas=3)
    assert deployment_rollout(done).ready
    stale = deployment(3, observedGeneration=1, replicas=3, updatedReplicas=3, availableReplicas=3)
    assert not deployment_rollout(stale).ready
    rolling = deployment(
        3, observedGeneration=2, replicas=4, updatedReplicas=3, availableReplicas=3
    )
    assert not deployment_rollout(rolling).ready
    # Scaled to zero runs nothing: not Ready, so no promotion can count on it (SPEC §6).
    assert not deployment_rollout(deployment(0, observedGeneration=2)).ready


# -- pod-level failures (SPEC §12) --------------------------------------------------------------


def live_deployment(revision: int = 2, **status: Any) -> dict[str, Any]:
    """A Deployment as the API server returns it once the deployment controller saw it."""
    labels = {"app.kubernetes.io/name": "web", "bandsy.app/environment": "develop"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "develop",
            "uid": "uid-deployment",
            "generation": 4,
            "annotations": {REVISION_ANNOTATION: str(revision)},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "web", "image": "ghcr.io/feinwaru/web:nope"}]},
            },
        },
        "status": {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, **status},
    }


def with_uid(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
    return obj


DEPLOYMENT = live_deployment()
CURRENT = with_uid(replicaset_of(DEPLOYMENT, "7d9f8c6b5", revision=2))
OLDER = with_uid(replicaset_of(DEPLOYMENT, "5c4b3a291", revision=1))


def pod(replicaset: dict[str, Any], suffix: str, status_of: Any) -> dict[str, Any]:
    made = pod_of(replicaset, suffix)
    return {**made, "status": status_of(made)}


def terminating(body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return body


@pytest.mark.parametrize(
    ("status_of", "reason", "message"),
    [
        (
            image_pull_back_off,
            "ImagePullBackOff",
            'ImagePullBackOff: pod web-7d9f8c6b5-x2k4q: Back-off pulling image "ghcr.io/feinwaru/'
            'web:nope"',
        ),
        (
            # The attempt between two back-offs: the same failure, the registry's answer.
            lambda p: waiting_status(p, "ErrImagePull", "manifest unknown"),
            "ImagePullBackOff",
            "ErrImagePull: pod web-7d9f8c6b5-x2k4q: manifest unknown",
        ),
        (
            crash_loop_back_off,
            "CrashLoopBackOff",
            "CrashLoopBackOff: pod web-7d9f8c6b5-x2k4q: container web exited with code 1 (Error)",
        ),
        (
            # Running again between two back-offs, not ready: still the same loop.
            lambda p: {
                **crash_loop_back_off(p, exit_code=137),
                "containerStatuses": [
                    {
                        **crash_loop_back_off(p, exit_code=137)["containerStatuses"][0],
                        "state": {"running": {"startedAt": "2026-01-01T00:00:02Z"}},
                    }
                ],
            },
            "CrashLoopBackOff",
            "CrashLoopBackOff: pod web-7d9f8c6b5-x2k4q: container web exited with code 137 (Error)",
        ),
        (
            lambda p: waiting_status(p, "RunContainerError", 'exec: "serve": not found'),
            "CrashLoopBackOff",
            'RunContainerError: pod web-7d9f8c6b5-x2k4q: exec: "serve": not found',
        ),
        (
            lambda p: waiting_status(
                p, "CreateContainerConfigError", 'secret "web-postgres" not found'
            ),
            "CreateContainerConfigError",
            'CreateContainerConfigError: pod web-7d9f8c6b5-x2k4q: secret "web-postgres" not found',
        ),
        (
            lambda p: waiting_status(p, "InvalidImageName", "couldn't parse image name"),
            "InvalidImageName",
            "InvalidImageName: pod web-7d9f8c6b5-x2k4q: couldn't parse image name",
        ),
    ],
    ids=[
        "image-pull-back-off",
        "err-image-pull",
        "crash-loop-waiting",
        "crash-loop-running-again",
        "run-container-error",
        "create-container-config-error",
        "invalid-image-name",
    ],
)
def test_a_failing_pod_of_the_current_replicaset_is_the_verdict(
    status_of: Any, reason: str, message: str
) -> None:
    pods = [pod(CURRENT, "x2k4q", status_of), pod(OLDER, "aaaaa", running_status)]
    rollout = deployment_rollout(DEPLOYMENT, pods, [CURRENT, OLDER])
    assert not rollout.ready
    assert rollout.failure == Failure(reason, message)
    assert pod_failure(pods[0]) == Failure(reason, message)


def ready_deployment() -> dict[str, Any]:
    return live_deployment(availableReplicas=2, readyReplicas=2)


@pytest.mark.parametrize(
    ("pods", "replicasets", "ready"),
    [
        ([], [], True),
        # A pod of the current template fails: not Ready, although the Deployment says so
        # (a crashing container without a readiness probe is available between two crashes).
        ([pod(CURRENT, "x2k4q", crash_loop_back_off)], [CURRENT], False),
        # Pods that run, start, or are on their way out are no failure.
        ([pod(CURRENT, "x2k4q", running_status)], [CURRENT], True),
        (
            [pod(CURRENT, "x2k4q", lambda p: waiting_status(p, "ContainerCreating", ""))],
            [CURRENT],
            True,
        ),
        ([terminating(pod(CURRENT, "x2k4q", crash_loop_back_off))], [CURRENT], True),
        # An older template's pod is being replaced; its ReplicaSet is not the current one.
        ([pod(OLDER, "aaaaa", image_pull_back_off)], [OLDER], True),
        # The ReplicaSet could not be read (deleted meanwhile): nothing tells it is current.
        ([pod(CURRENT, "x2k4q", image_pull_back_off)], [], True),
    ],
    ids=[
        "no-pods",
        "crash-loop",
        "running",
        "creating",
        "terminating",
        "older-replicaset",
        "replicaset-gone",
    ],
)
def test_only_the_current_templates_failing_pods_make_it_not_ready(
    pods: list[dict[str, Any]], replicasets: list[dict[str, Any]], ready: bool
) -> None:
    assert deployment_rollout(ready_deployment(), pods, replicasets).ready is ready


def test_the_current_replicaset_is_the_deployments_revision_and_its_own() -> None:
    assert current_replicaset(DEPLOYMENT, [OLDER, CURRENT]) == CURRENT
    foreign = with_uid(replicaset_of(DEPLOYMENT, "0000000000", revision=2))
    foreign["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-deployment"
    assert current_replicaset(DEPLOYMENT, [foreign]) is None
    unrevised = live_deployment()
    del unrevised["metadata"]["annotations"][REVISION_ANNOTATION]
    assert current_replicaset(unrevised, [CURRENT]) is None


def test_only_failing_pods_replicasets_are_read() -> None:
    pods = [
        pod(CURRENT, "x2k4q", image_pull_back_off),
        pod(CURRENT, "y7z8w", image_pull_back_off),
        pod(OLDER, "aaaaa", running_status),
    ]
    assert failing_replicasets(pods) == {CURRENT["metadata"]["name"]}
    assert failing_replicasets([pod(OLDER, "aaaaa", running_status)]) == set()


def test_several_failing_pods_name_the_first_and_count_the_others() -> None:
    pods = [pod(CURRENT, s, image_pull_back_off) for s in ("zzzzz", "bbbbb", "ccccc")]
    failure = deployment_rollout(DEPLOYMENT, pods, [CURRENT]).failure
    assert failure is not None
    assert failure.message.startswith("ImagePullBackOff: pod web-7d9f8c6b5-bbbbb: ")
    assert failure.message.endswith(" (and 2 more failing pods)")


def test_a_program_s_termination_message_is_never_repeated() -> None:
    """It is the program's to write: it may hold a secret."""
    failure = pod_failure(pod(CURRENT, "x2k4q", crash_loop_back_off))
    assert failure is not None
    assert "last words" not in failure.message


QUOTA_MESSAGE = (
    'pods "web-7d9f8c6b5-x2k4q" is forbidden: exceeded quota: bandsy-quota, requested: '
    "requests.cpu=100m, used: requests.cpu=8, limited: requests.cpu=8"
)


@pytest.mark.parametrize(
    ("conditions", "failure"),
    [
        (
            [failed_create(QUOTA_MESSAGE)],
            Failure("FailedCreate", f"FailedCreate: {QUOTA_MESSAGE}"),
        ),
        (
            [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "web-7d9f8c6b5" has timed out progressing.',
                }
            ],
            Failure(
                "ProgressDeadlineExceeded",
                'ProgressDeadlineExceeded: ReplicaSet "web-7d9f8c6b5" has timed out progressing.',
            ),
        ),
        ([{**failed_create(QUOTA_MESSAGE), "status": "False"}], None),
        ([{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}], None),
    ],
    ids=["failed-create", "progress-deadline", "failure-resolved", "progressing"],
)
def test_what_the_deployment_controller_reports(
    conditions: list[dict[str, Any]], failure: Failure | None
) -> None:
    rollout = deployment_rollout(live_deployment(conditions=conditions))
    assert rollout.failure == failure
    assert not rollout.ready


def test_a_pod_failure_comes_before_the_deployments_own() -> None:
    deployment = live_deployment(conditions=[failed_create(QUOTA_MESSAGE)])
    pods = [pod(CURRENT, "x2k4q", image_pull_back_off)]
    failure = deployment_rollout(deployment, pods, [CURRENT]).failure
    assert failure is not None
    assert failure.reason == "ImagePullBackOff"


def test_failures_before_the_controller_saw_the_spec_are_about_an_older_one() -> None:
    deployment = live_deployment(conditions=[failed_create(QUOTA_MESSAGE)])
    deployment["metadata"]["generation"] = 5  # our apply; the controller has not seen it
    pods = [pod(CURRENT, "x2k4q", image_pull_back_off)]
    assert deployment_rollout(deployment, pods, [CURRENT]).failure is None
    scaled_to_zero = live_deployment(conditions=[failed_create(QUOTA_MESSAGE)])
    scaled_to_zero["spec"]["replicas"] = 0
    assert deployment_rollout(scaled_to_zero).failure is None


def test_summary_of_a_tag_held_by_its_migration() -> None:
    held = summary("release-1.7.1", "release-1.7.1", blocked="release-1.7.2", held_as="migrating")
    assert held == "release-1.7.2 (migrating)"
