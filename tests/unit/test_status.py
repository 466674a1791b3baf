from __future__ import annotations

import pytest

from bandsy_operator.status import (
    ConditionUpdate,
    deployment_rollout,
    merge_conditions,
    summary,
    transitions,
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
