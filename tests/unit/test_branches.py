from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bandsy_operator.branches import (
    Action,
    ForbiddenMergeError,
    InvalidBranchNameError,
    check_merge,
    classify,
    merge_sources,
    required_reviews,
)
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


def test_merge_rules_of_the_protected_branches() -> None:
    assert (merge_sources("master"), required_reviews("master")) == (("hotfix", "release"), 2)
    assert (merge_sources("develop"), required_reviews("develop")) == (("bug", "feature"), 1)
    assert check_merge("release/57_1-7-2", "master").kind == "release"
    assert check_merge("feature/123_add-login", "develop").kind == "feature"
    with pytest.raises(ForbiddenMergeError, match=r"master <- hotfix/\*, release/\*"):
        check_merge("feature/123_add-login", "master")
    with pytest.raises(ForbiddenMergeError, match="develop <- bug"):
        check_merge("hotfix/7_fix-checkout", "develop")
    with pytest.raises(ForbiddenMergeError, match="'develop' must not be merged into 'master'"):
        check_merge("develop", "master")  # a long-lived branch is merged into nothing
    with pytest.raises(ForbiddenMergeError, match="wip <- nothing"):
        check_merge("feature/123_add-login", "wip")
    with pytest.raises(InvalidBranchNameError):
        check_merge("wip", "develop")


def test_check_branch_into(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ok:
        main(["check-branch", "bug/99_rounding", "--into", "develop"])
    assert ok.value.code == 0
    with pytest.raises(SystemExit) as bad:
        main(["check-branch", "bug/99_rounding", "--into", "master"])
    assert bad.value.code == 1
    assert "forbidden merge: 'bug/99_rounding' must not be merged into 'master'" in (
        capsys.readouterr().err
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_check_branch_without_a_name_checks_the_current_branch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    git(tmp_path, "init", "-q", "-b", "feature/5_try")
    git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "first",
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ok:
        main(["check-branch"])
    assert ok.value.code == 0
    assert "feature/5_try: valid feature branch" in capsys.readouterr().out
    git(tmp_path, "checkout", "-q", "-b", "wip")
    with pytest.raises(SystemExit) as bad:
        main(["check-branch"])
    assert bad.value.code == 1
    git(tmp_path, "checkout", "-q", "--detach")
    with pytest.raises(SystemExit) as detached:
        main(["check-branch"])
    assert detached.value.code == 0
    assert "detached HEAD" in capsys.readouterr().out


def test_json_logs_are_one_object_per_line() -> None:
    import json
    import logging

    from bandsy_operator.runner import JsonFormatter

    record = logging.LogRecord("bandsy", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
