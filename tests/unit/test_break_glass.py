"""Break glass per environment and tag, expiring (SPEC §10), and who promoted (history)."""

from __future__ import annotations

import datetime

import pytest

from bandsy_operator.promotion import (
    CLOCK_SKEW,
    SKIP_GATES_LIFETIME,
    Promoter,
    Rollout,
    skip_gates_tag,
)

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
TAG, OTHER = "release-1.8.0", "release-1.7.2"


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(delta: datetime.timedelta) -> datetime.datetime:
    return NOW - delta


def skip_gates(value: str, set_at: datetime.datetime | None = NOW) -> dict[str, str]:
    result = {"bandsy.app/skip-gates": value}
    if set_at is not None:
        result["bandsy.app/skip-gates-at"] = stamp(set_at)
    return result


MINUTE = datetime.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("value", "set_at", "expected"),
    [
        (f"production={TAG}", NOW, TAG),
        (f"production={TAG}", ago(SKIP_GATES_LIFETIME - MINUTE), TAG),
        (f"production={OTHER}", NOW, OTHER),
        # Another environment's break glass, or the old format without one: not this one's.
        (f"preprod={TAG}", NOW, None),
        (TAG, NOW, None),
        ("production=", NOW, None),
        (f"prod={TAG}", NOW, None),
        # Expired, undated (no stamp: set before the policies were installed), from the future.
        (f"production={TAG}", ago(SKIP_GATES_LIFETIME), None),
        (f"production={TAG}", ago(datetime.timedelta(days=2)), None),
        (f"production={TAG}", None, None),
        (f"production={TAG}", NOW + CLOCK_SKEW + MINUTE, None),
        (f"production={TAG}", NOW + CLOCK_SKEW, TAG),
    ],
)
def test_skip_gates_names_one_environment_and_expires(
    value: str, set_at: datetime.datetime | None, expected: str | None
) -> None:
    assert skip_gates_tag(skip_gates(value, set_at), "production", [], NOW) == expected


def test_skip_gates_without_the_annotation_or_with_a_bad_stamp() -> None:
    assert skip_gates_tag({}, "production", [], NOW) is None
    broken = {"bandsy.app/skip-gates": f"production={TAG}", "bandsy.app/skip-gates-at": "soon"}
    assert skip_gates_tag(broken, "production", [], NOW) is None


def test_skip_gates_serves_one_rollout() -> None:
    """Once the tag ran Ready there after the break glass was set, it is spent: going back to
    that tag later passes the gates like any promote."""
    set_at = ago(10 * MINUTE)
    value = skip_gates(f"production={TAG}", set_at)
    rolled = Rollout(TAG, ago(9 * MINUTE), gates_skipped=True)
    assert skip_gates_tag(value, "production", [rolled], NOW) == TAG  # not Ready yet
    ready = Rollout(TAG, ago(9 * MINUTE), ready_at=ago(8 * MINUTE), gates_skipped=True)
    later = [Rollout(OTHER, ago(MINUTE)), ready]
    assert skip_gates_tag(value, "production", later, NOW) is None
    # Ready before the break glass was set (an older rollout of the tag): not spent.
    before = [Rollout(TAG, ago(60 * MINUTE), ready_at=ago(50 * MINUTE))]
    assert skip_gates_tag(value, "production", before, NOW) == TAG
    # Another tag Ready since: not this one.
    other = [Rollout(OTHER, ago(5 * MINUTE), ready_at=ago(4 * MINUTE))]
    assert skip_gates_tag(value, "production", other, NOW) == TAG


def test_promoter_from_the_stamps() -> None:
    stamps = {
        "bandsy.app/promoted-by.production": "ops-bob",
        "bandsy.app/promoted-at.production": stamp(NOW),
        "bandsy.app/promoted-by.develop": "bandsy-ci",
    }
    assert Promoter.of(stamps, "production") == Promoter("ops-bob", NOW)
    assert Promoter.of(stamps, "develop") == Promoter("bandsy-ci", None)
    assert Promoter.of(stamps, "preprod") == Promoter()
    assert Promoter.of({"bandsy.app/promoted-at.preprod": "garbage"}, "preprod") == Promoter()


def test_rollout_keeps_who_promoted() -> None:
    entry = Rollout(TAG, NOW, promoted_by="ops-bob", promoted_at=ago(MINUTE))
    status = entry.to_status()
    assert status["promotedBy"] == "ops-bob"
    assert status["promotedAt"] == "2024-05-01T11:59:00Z"
    assert Rollout.from_status(status) == entry
    assert Rollout.history({"history": [status]}) == [entry]
    assert Rollout.history({}) == []
    assert "promotedBy" not in Rollout(TAG, NOW).to_status()
