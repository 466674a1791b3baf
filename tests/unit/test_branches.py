from __future__ import annotations

import pytest

from bandsy_operator.branches import Action, InvalidBranchNameError, classify
from bandsy_operator.cli import main


@pytest.mark.parametrize(
    ("name", "kind", "push", "target", "reviews"),
    [
        ("master", "master", (Action.TEST, Action.BUILD_IMAGE), None, 0),
        ("develop", "develop", (Action.TEST, Action.BUILD_IMAGE, Action.DEPLOY_DEVELOP), None, 0),
        ("release/12_v1-7-2", "release", (Action.TEST, Action.BUILD_IMAGE), "master", 2),
        ("hotfix/7_fix-checkout", "hotfix", (Action.TEST,), "master", 2),
        ("bug/99_rounding", "bug", (Action.TEST,), "develop", 1),
        ("feature/123_add-login", "feature", (Action.TEST,), "develop", 1),
    ],
)
def test_valid_branches(
    name: str, kind: str, push: tuple[Action, ...], target: str | None, reviews: int
) -> None:
    policy = classify(name)
    assert (policy.kind, policy.on_push, policy.merges_into, policy.required_reviews) == (
        kind,
        push,
        target,
        reviews,
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Feature/123_add-login", "lowercase"),
        ("feature/123_Add-Login", "lowercase"),
        ("chore/123_cleanup", "not one of"),
        ("feature/add-login", "expected"),
        ("feature/123-add-login", "expected"),
        ("feature/123_add_login", "expected"),
        ("feature/123_add--login", "expected"),
        ("feature/123_", "expected"),
        ("feature/0_zero", "expected"),
        ("main", "expected"),
        ("feature/123_add-login/extra", "expected"),
    ],
)
def test_invalid_branches(name: str, reason: str) -> None:
    with pytest.raises(InvalidBranchNameError, match=reason):
        classify(name)


def test_check_branch_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ok:
        main(["check-branch", "develop"])
    assert ok.value.code == 0
    assert "deploy to develop" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["check-branch", "wip"])
    assert bad.value.code == 1
    assert "must not be merged" in capsys.readouterr().err


def test_json_logs_are_one_object_per_line() -> None:
    import json
    import logging

    from bandsy_operator.runner import JsonFormatter

    record = logging.LogRecord("bandsy", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
