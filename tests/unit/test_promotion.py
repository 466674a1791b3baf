from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from bandsy_operator.promotion import (
    GateInput,
    GateReason,
    GateVerdict,
    Image,
    Readiness,
    Rollout,
    carry_readiness,
    default_promotion_tag,
    evaluate,
    mark_ready,
    record_rollout,
)

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
NEW, OLD = "release-1.8.0", "release-1.7.2"
REPO = "ghcr.io/feinwaru/web"


def image(tag: str, repository: str = REPO) -> Image:
    return Image(repository, tag)


def ready(tag: str | None, since: datetime.datetime | None) -> Readiness:
    return Readiness(image(tag) if tag is not None else None, since)


def ago(seconds: float) -> datetime.datetime:
    return NOW - datetime.timedelta(seconds=seconds)


def gate(**changes: Any) -> GateInput:
    """A promotion preprod → production of NEW that passes every gate unless changed."""
    base = GateInput(
        desired=image(NEW),
        current=image(OLD),
        tag_pattern="^release-",
        frozen=False,
        promotion_from="preprod",
        soak_seconds=600,
        upstream=ready(NEW, ago(3600)),
        skip_gates_tag=None,
        now=NOW,
    )
    return dataclasses.replace(base, **changes)


def assert_allowed(verdict: GateVerdict, *, skipped: bool = False) -> None:
    assert verdict.allowed
    assert verdict.image_to_apply == image(NEW)
    assert verdict.reason is None
    assert verdict.gates_skipped is skipped
    assert verdict.retry_after is None


@pytest.mark.parametrize(
    ("changes", "reason", "retry_after"),
    [
        ({"frozen": True}, GateReason.ENVIRONMENT_FROZEN, None),
        ({"tag_pattern": "^hotfix-"}, GateReason.TAG_POLICY_VIOLATION, None),
        ({"upstream": None}, GateReason.NOT_READY_UPSTREAM, None),
        ({"upstream": ready(OLD, ago(3600))}, GateReason.NOT_READY_UPSTREAM, None),
        ({"upstream": ready(None, None)}, GateReason.NOT_READY_UPSTREAM, None),
        ({"upstream": ready(NEW, ago(120))}, GateReason.SOAK_TIME_NOT_ELAPSED, 480.0),
    ],
    ids=["frozen", "pattern", "no-upstream", "upstream-other-tag", "upstream-none-ready", "soak"],
)
def test_every_reason_blocks_and_keeps_current_tag(
    changes: dict[str, Any], reason: GateReason, retry_after: float | None
) -> None:
    verdict = evaluate(gate(**changes))
    assert not verdict.allowed
    assert verdict.reason is reason
    assert verdict.image_to_apply == image(OLD)
    assert verdict.retry_after == retry_after
    assert not verdict.gates_skipped
    assert NEW in verdict.message


def test_all_gates_pass() -> None:
    assert_allowed(evaluate(gate()))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"frozen": True, "tag_pattern": "^hotfix-", "upstream": None},
            GateReason.ENVIRONMENT_FROZEN,
        ),
        ({"tag_pattern": "^hotfix-", "upstream": None}, GateReason.TAG_POLICY_VIOLATION),
        ({"tag_pattern": "[", "upstream": None}, GateReason.TAG_POLICY_VIOLATION),
        (
            {"upstream": ready(OLD, ago(10)), "soak_seconds": 600},
            GateReason.NOT_READY_UPSTREAM,
        ),
        ({"frozen": True, "upstream": ready(NEW, ago(1))}, GateReason.ENVIRONMENT_FROZEN),
    ],
    ids=[
        "frozen-first",
        "pattern-before-upstream",
        "bad-regex-before-upstream",
        "upstream-first",
        "frozen-before-soak",
    ],
)
def test_first_failing_gate_is_reported(changes: dict[str, Any], reason: GateReason) -> None:
    assert evaluate(gate(**changes)).reason is reason


@pytest.mark.parametrize(
    ("elapsed", "soak", "allowed", "retry_after"),
    [
        (600, 600, True, None),
        (599, 600, False, 1.0),
        (600.5, 600, True, None),
        (599.5, 600, False, 0.5),
        (0, 600, False, 600.0),
        (-30, 600, False, 630.0),  # upstream clock ahead: wait until ready_since + soak
        (0, 0, True, None),
        (86400, 600, True, None),
    ],
)
def test_soak_edge_times(
    elapsed: float, soak: int, allowed: bool, retry_after: float | None
) -> None:
    verdict = evaluate(gate(soak_seconds=soak, upstream=ready(NEW, ago(elapsed))))
    assert verdict.allowed is allowed
    assert verdict.retry_after == retry_after
    if not allowed:
        assert verdict.reason is GateReason.SOAK_TIME_NOT_ELAPSED


def test_soak_message_says_what_blocks_and_when_it_opens() -> None:
    verdict = evaluate(gate(upstream=ready(NEW, ago(120))))
    assert verdict.message == (
        "release-1.8.0 has been Ready in preprod for 120 s of the required 600 s without "
        "interruption; "
        "it will be promoted in 480 s"
    )


def test_soak_with_unknown_ready_since_rechecks_after_a_full_soak() -> None:
    verdict = evaluate(gate(upstream=ready(NEW, None)))
    assert verdict.reason is GateReason.SOAK_TIME_NOT_ELAPSED
    assert verdict.retry_after == 600.0
    assert_allowed(evaluate(gate(soak_seconds=0, upstream=ready(NEW, None))))


def test_naive_times_are_taken_as_utc() -> None:
    naive_now = NOW.replace(tzinfo=None)
    verdict = evaluate(gate(now=naive_now, upstream=ready(NEW, ago(599))))
    assert verdict.retry_after == 1.0


@pytest.mark.parametrize(
    ("pattern", "tag", "allowed"),
    [
        (None, "anything_goes", True),
        ("^release-", "release-1.8.0", True),
        ("^release-", "develop-3f2a9c1", False),
        ("release", "pre-release-1", True),  # re.search, not re.match
        (r"^release-\d+\.\d+\.\d+$", "release-1.8.0", True),
        (r"^release-\d+\.\d+\.\d+$", "release-1.8.0-rc1", False),
        ("", "release-1.8.0", True),
    ],
)
def test_tag_patterns(pattern: str | None, tag: str, allowed: bool) -> None:
    verdict = evaluate(
        gate(desired=image(tag), tag_pattern=pattern, promotion_from=None, upstream=None)
    )
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason is GateReason.TAG_POLICY_VIOLATION
        assert repr(pattern) in verdict.message


@pytest.mark.parametrize("pattern", ["[", "(release", "*release", "release-(?P<x"])
def test_invalid_regex_blocks_without_raising(pattern: str) -> None:
    verdict = evaluate(gate(tag_pattern=pattern))
    assert verdict.reason is GateReason.TAG_POLICY_VIOLATION
    assert verdict.image_to_apply == image(OLD)
    assert repr(pattern) in verdict.message
    assert "not a valid regular expression" in verdict.message


@pytest.mark.parametrize(
    ("skip", "skipped"),
    [
        (NEW, True),
        (OLD, False),
        ("release-1.8", False),
        ("release-1.8.0 ", False),
        ("RELEASE-1.8.0", False),
        ("", False),
        (None, False),
    ],
)
def test_break_glass_only_for_the_exact_tag(skip: str | None, skipped: bool) -> None:
    blocked = {"frozen": True, "tag_pattern": "^hotfix-", "upstream": None}
    verdict = evaluate(gate(skip_gates_tag=skip, **blocked))
    if skipped:
        assert_allowed(verdict, skipped=True)
        assert "skip-gates" in verdict.message
    else:
        assert verdict.reason is GateReason.ENVIRONMENT_FROZEN


@pytest.mark.parametrize(
    "changes",
    [
        {"frozen": True},
        {"tag_pattern": "^hotfix-"},
        {"tag_pattern": "["},
        {"upstream": None},
        {"upstream": ready(NEW, ago(1))},
        {"skip_gates_tag": NEW},  # already running: not recorded as a break-glass
    ],
)
def test_already_running_tag_is_never_blocked(changes: dict[str, Any]) -> None:
    verdict = evaluate(gate(current=image(NEW), **changes))
    assert_allowed(verdict)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"frozen": True}, GateReason.ENVIRONMENT_FROZEN),
        ({"tag_pattern": "^hotfix-"}, GateReason.TAG_POLICY_VIOLATION),
        ({"upstream": None}, GateReason.NOT_READY_UPSTREAM),
        ({"upstream": ready(NEW, ago(5))}, GateReason.SOAK_TIME_NOT_ELAPSED),
    ],
)
def test_first_deployment_goes_through_the_gates(
    changes: dict[str, Any], reason: GateReason | None
) -> None:
    verdict = evaluate(gate(current=None, **changes))
    assert verdict.reason is reason
    assert verdict.allowed is (reason is None)
    assert verdict.image_to_apply == (image(NEW) if reason is None else None)


@pytest.mark.parametrize("upstream", [None, ready(OLD, ago(1)), ready(NEW, ago(1))])
def test_no_upstream_configured_ignores_upstream_and_soak(upstream: Readiness | None) -> None:
    assert_allowed(evaluate(gate(promotion_from=None, upstream=upstream)))


def test_not_ready_upstream_message_names_upstream_and_what_runs_there() -> None:
    verdict = evaluate(gate(upstream=ready(OLD, ago(60))))
    assert "preprod" in verdict.message
    assert OLD in verdict.message


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [(None, None), (ready(None, None), None), (ready(NEW, ago(1)), NEW)],
)
def test_default_promotion_tag(upstream: Readiness | None, expected: str | None) -> None:
    assert default_promotion_tag(upstream) == expected


MOVED = "ghcr.io/other/web"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"frozen": True}, GateReason.ENVIRONMENT_FROZEN),
        ({"upstream": ready(NEW, ago(3600))}, GateReason.NOT_READY_UPSTREAM),  # old repository
        ({"upstream": None}, GateReason.NOT_READY_UPSTREAM),
        (
            {"upstream": Readiness(image(NEW, MOVED), ago(5))},
            GateReason.SOAK_TIME_NOT_ELAPSED,
        ),
    ],
    ids=["frozen", "upstream-runs-the-old-repository", "no-upstream", "soak"],
)
def test_a_new_repository_is_a_promotion(changes: dict[str, Any], reason: GateReason) -> None:
    """The same tag from another repository is another image: gated like a new tag, and a
    blocked one keeps the running image, repository included."""
    verdict = evaluate(gate(desired=image(NEW, MOVED), current=image(NEW), **changes))
    assert verdict.reason is reason
    assert verdict.image_to_apply == image(NEW)
    assert f"{MOVED}:{NEW}" in verdict.message


def test_a_new_repository_ready_upstream_passes() -> None:
    upstream = Readiness(image(NEW, MOVED), ago(3600))
    verdict = evaluate(gate(desired=image(NEW, MOVED), current=image(NEW), upstream=upstream))
    assert verdict.allowed
    assert verdict.image_to_apply == image(NEW, MOVED)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("ghcr.io/feinwaru/web:release-1", Image("ghcr.io/feinwaru/web", "release-1")),
        ("localhost:5000/web:v1", Image("localhost:5000/web", "v1")),
        ("localhost:5000/web", None),
        ("web", None),
        ("web:", None),
    ],
)
def test_image_references(reference: str, expected: Image | None) -> None:
    assert Image.parse(reference) == expected
    if expected is not None:
        assert str(expected) == reference


@pytest.mark.parametrize(
    ("now_ready", "before", "expected"),
    [
        (image(NEW), ready(NEW, ago(300)), ready(NEW, ago(300))),  # continues
        (image(NEW), ready(None, None), ready(NEW, NOW)),  # becomes Ready: the soak starts
        (None, ready(NEW, ago(300)), ready(None, None)),  # stops being Ready: withdrawn
        (image(NEW), ready(OLD, ago(300)), ready(NEW, NOW)),  # another tag
        (image(NEW, MOVED), ready(NEW, ago(300)), Readiness(image(NEW, MOVED), NOW)),
        (image(NEW), ready(NEW, None), ready(NEW, NOW)),  # no time recorded: from now
    ],
    ids=["continues", "becomes-ready", "withdrawn", "other-tag", "other-repository", "no-time"],
)
def test_readiness_is_now_and_continuous(
    now_ready: Image | None, before: Readiness, expected: Readiness
) -> None:
    assert carry_readiness(now_ready, before, NOW) == expected


def test_an_interrupted_readiness_restarts_the_soak() -> None:
    """Ready, then not Ready for one observation, then Ready again: the soak counts from the
    return, so the gate that was open holds again."""
    steps = [image(NEW), None, image(NEW)]
    state = ready(NEW, ago(3600))
    for now_ready in steps:
        state = carry_readiness(now_ready, state, NOW)
    assert state == ready(NEW, NOW)
    assert evaluate(gate(upstream=state)).reason is GateReason.SOAK_TIME_NOT_ELAPSED


def rollout(index: int, **changes: Any) -> Rollout:
    return Rollout(f"release-1.0.{index}", ago(1000 - index), **changes)


@pytest.mark.parametrize(
    ("entry", "status"),
    [
        (
            Rollout(NEW, NOW),
            {"tag": NEW, "appliedAt": "2024-05-01T12:00:00Z", "gatesSkipped": False},
        ),
        (
            Rollout(NEW, NOW, ago(-90), "release-1.8.0: new checkout", True),
            {
                "tag": NEW,
                "appliedAt": "2024-05-01T12:00:00Z",
                "readyAt": "2024-05-01T12:01:30Z",
                "changeCause": "release-1.8.0: new checkout",
                "gatesSkipped": True,
            },
        ),
    ],
    ids=["minimal", "full"],
)
def test_rollout_status_round_trip_without_image(entry: Rollout, status: dict[str, Any]) -> None:
    assert entry.to_status() == status
    assert Rollout.from_status(status) == entry


def test_rollout_records_its_image() -> None:
    entry = Rollout(NEW, NOW, image=f"{REPO}:{NEW}")
    assert entry.to_status()["image"] == f"{REPO}:{NEW}"
    assert Rollout.from_status(entry.to_status()) == entry
    # A newer rollout of the same tag from another repository is another entry to mark.
    history = [Rollout(NEW, NOW, image=f"{MOVED}:{NEW}"), entry]
    marked = mark_ready(history, image(NEW), NOW)
    assert [r.ready_at for r in marked] == [None, NOW]


def test_rollout_times_are_utc() -> None:
    cest = datetime.timezone(datetime.timedelta(hours=2))
    entry = Rollout(NEW, datetime.datetime(2024, 5, 1, 14, 0, 0, tzinfo=cest))
    assert entry.to_status()["appliedAt"] == "2024-05-01T12:00:00Z"
    parsed = Rollout.from_status({"tag": NEW, "appliedAt": "2024-05-01T12:00:00Z"})
    assert parsed.applied_at.tzinfo is datetime.UTC
    assert parsed.gates_skipped is False


@pytest.mark.parametrize(("count", "kept"), [(1, 1), (9, 9), (10, 10), (11, 10), (25, 10)])
def test_history_is_newest_first_and_capped(count: int, kept: int) -> None:
    history: list[Rollout] = []
    for index in range(count):
        history = record_rollout(history, rollout(index))
    assert len(history) == kept
    assert [r.tag for r in history] == [f"release-1.0.{i}" for i in reversed(range(count))][:kept]


def test_history_custom_limit_and_input_untouched() -> None:
    history = [rollout(1), rollout(0)]
    assert record_rollout(history, rollout(2), limit=2) == [rollout(2), rollout(1)]
    assert history == [rollout(1), rollout(0)]
    with pytest.raises(ValueError, match="at least 1"):
        record_rollout(history, rollout(2), limit=0)


@pytest.mark.parametrize(
    ("history", "tag", "expected_ready"),
    [
        ([Rollout(NEW, ago(60)), Rollout(OLD, ago(600))], NEW, [NOW, None]),
        ([Rollout(NEW, ago(60)), Rollout(OLD, ago(600))], OLD, [None, NOW]),
        ([Rollout(NEW, ago(60), ago(30))], NEW, [ago(30)]),  # first Ready time is kept
        ([Rollout(NEW, ago(60)), Rollout(NEW, ago(600))], NEW, [NOW, None]),  # newest only
        ([Rollout(NEW, ago(60), ago(30)), Rollout(NEW, ago(600))], NEW, [ago(30), None]),
        ([Rollout(OLD, ago(60))], NEW, [None]),
        ([], NEW, []),
    ],
    ids=[
        "newest",
        "older-tag",
        "already-ready",
        "newest-of-same-tag",
        "newest-set",
        "absent",
        "empty",
    ],
)
def test_mark_ready(
    history: list[Rollout], tag: str, expected_ready: list[datetime.datetime | None]
) -> None:
    before = list(history)
    updated = mark_ready(history, image(tag), NOW)
    assert [r.ready_at for r in updated] == expected_ready
    assert [r.tag for r in updated] == [r.tag for r in history]
    assert history == before
