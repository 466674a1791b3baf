"""bandsyctl github-rules: SPEC §2's merge rules as GitHub rulesets, checked against the REST API's
documented schema and against this repository's own workflows."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bandsy_operator.cli import main
from bandsy_operator.github_rules import (
    GITHUB_ACTIONS_APP_ID,
    UnsupportedJobError,
    plan,
    pull_request_checks,
    ruleset,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SCHEMA = json.loads((Path(__file__).parent / "github_ruleset.schema.json").read_text())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.fixture
def printed(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]], str]:
    code, out, err = run(capsys, "github-rules", "--workflows", str(WORKFLOWS))
    assert code == 0, err
    return json.loads(out), err


def by_type(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["type"]: rule for rule in body["rules"]}


def test_rulesets_follow_the_documented_schema(
    printed: tuple[list[dict[str, Any]], str],
) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    bodies, _ = printed
    assert [body["name"] for body in bodies] == [
        "master (bandsyctl github-rules)",
        "develop (bandsyctl github-rules)",
    ]
    for body in bodies:
        jsonschema.validate(body, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("enforcement",), "on", "is not one of"),
        (("rules", 0, "type"), "protect", "is not one of"),
        (("rules", 3, "parameters", "required_approving_review_count"), 11, "greater than"),
        (("rules", 3, "parameters", "allowed_merge_methods"), ["fast-forward"], "is not one of"),
        (("rules", 4, "parameters", "required_status_checks"), [{"name": "x"}], "'context'"),
    ],
)
def test_the_schema_refuses_what_the_api_would(
    path: tuple[Any, ...], value: Any, complaint: str
) -> None:
    body = ruleset("master", ["test"])
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        jsonschema.validate(body, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_rulesets_say_what_spec_2_says(printed: tuple[list[dict[str, Any]], str]) -> None:
    bodies, _ = printed
    for body, target, reviews in zip(bodies, ("master", "develop"), (2, 1), strict=True):
        assert body["enforcement"] == "active"
        assert body["bypass_actors"] == []  # admins included
        assert body["conditions"]["ref_name"]["include"] == [f"refs/heads/{target}"]
        rules = by_type(body)
        assert {"required_signatures", "deletion", "non_fast_forward"} <= set(rules)
        pull_request = rules["pull_request"]["parameters"]
        assert pull_request["required_approving_review_count"] == reviews
        assert "rebase" not in pull_request["allowed_merge_methods"]  # GitHub cannot sign it
        checks = rules["required_status_checks"]["parameters"]["required_status_checks"]
        assert {check["integration_id"] for check in checks} == {GITHUB_ACTIONS_APP_ID}


def workflow_jobs() -> dict[str, dict[str, Any]]:
    """Every job of .github/workflows by its check name (``name:``, else its id)."""
    jobs = {}
    for path in WORKFLOWS.glob("*.yaml"):
        for job_id, job in yaml.safe_load(path.read_text())["jobs"].items():
            jobs[job.get("name", job_id)] = job
    return jobs


def test_required_checks_are_workflow_jobs_and_one_checks_the_merge_source(
    printed: tuple[list[dict[str, Any]], str],
) -> None:
    bodies, err = printed
    jobs = workflow_jobs()
    for body in bodies:
        parameters = by_type(body)["required_status_checks"]["parameters"]
        contexts = [check["context"] for check in parameters["required_status_checks"]]
        assert contexts == ["branch name (SPEC §2)", "test (make test)"]
        assert set(contexts) <= set(jobs)
        source_check = [
            step["run"]
            for step in jobs["branch name (SPEC §2)"]["steps"]
            if "--into" in step.get("run", "")
        ]
        assert source_check == ['bandsyctl check-branch "$BRANCH" --into "$BASE"']
    # The push-only jobs are named as left out; nothing warns of an unchecked merge source.
    assert "job image" in err
    assert "job deploy-develop" in err
    assert "warning:" not in err


def job(**fields: Any) -> dict[str, Any]:
    return {"runs-on": "ubuntu-24.04", "steps": [{"run": "true"}], **fields}


@pytest.mark.parametrize(
    ("triggers", "target", "expected"),
    [
        ("pull_request", "master", ("unit",)),
        (["push", "pull_request"], "develop", ("unit",)),
        ({"pull_request": None}, "develop", ("unit",)),
        ({"pull_request": {"branches": ["master"]}}, "develop", ()),
        ({"pull_request": {"branches-ignore": ["dev*"]}}, "develop", ()),
        ({"push": {"branches": ["master"]}}, "master", ()),
        ({"workflow_call": {}}, "master", ()),
    ],
)
def test_only_pull_request_workflows_give_checks(
    triggers: Any, target: str, expected: tuple[str, ...]
) -> None:
    # PyYAML reads `on:` as True: both spellings are found.
    for key in ("on", True):
        workflows = {"ci.yaml": {key: triggers, "jobs": {"unit": job()}}}
        assert pull_request_checks(workflows, target).contexts == expected


def test_conditional_and_called_jobs_are_left_out_and_named() -> None:
    workflows = {
        "ci.yaml": {
            "on": "pull_request",
            "jobs": {
                "lint": job(name="lint (ruff)"),
                "image": job(**{"if": "github.event_name == 'push'"}),
                "release": {"uses": "o/r/.github/workflows/x.yaml@v1"},
            },
        }
    }
    checks = pull_request_checks(workflows, "master")
    assert checks.contexts == ("lint (ruff)",)
    assert [line.split(" (")[0] for line in checks.left_out] == [
        "ci.yaml: job image",
        "ci.yaml: job release",
    ]
    assert not checks.checks_sources


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"strategy": {"matrix": {"python": ["3.11", "3.12"]}}}, "one check per entry"),
        ({"name": "test ${{ matrix.python }}"}, "is an expression"),
    ],
)
def test_check_names_that_cannot_be_known_are_refused(
    extra: dict[str, Any], complaint: str
) -> None:
    workflows = {"ci.yaml": {"on": "pull_request", "jobs": {"unit": job(**extra)}}}
    with pytest.raises(UnsupportedJobError, match=complaint):
        pull_request_checks(workflows, "master")


def test_plan_updates_by_name_and_creates_the_rest() -> None:
    desired = [ruleset("master", []), ruleset("develop", [])]
    existing = [
        {"id": 7, "name": "master (bandsyctl github-rules)", "source_type": "Repository"},
        # An organization's ruleset of the same name cannot be changed from the repository.
        {"id": 9, "name": "develop (bandsyctl github-rules)", "source_type": "Organization"},
        {"id": 3, "name": "someone else's", "source_type": "Repository"},
    ]
    requests = plan("o/r", existing, desired)
    assert [(r.method, r.path, r.body) for r in requests] == [
        ("PUT", "repos/o/r/rulesets/7", desired[0]),
        ("POST", "repos/o/r/rulesets", desired[1]),
    ]


def test_apply_without_gh_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    code, out, err = run(capsys, "github-rules", "--workflows", str(WORKFLOWS), "--apply")
    assert code == 1
    assert "gh (the GitHub CLI" in err
    assert "not on PATH: nothing was sent" in err
    assert json.loads(out)  # the rulesets are still printed, to send by other means


def test_apply_sends_each_ruleset_through_gh_api(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A stand-in for GitHub behind the real `gh api` command line: it records each call and
    # answers the listing with an existing master ruleset (id 7).
    log = tmp_path / "calls.jsonl"
    gh = tmp_path / "gh"
    gh.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "body = sys.stdin.read() if '--input' in sys.argv else ''\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'body': body}) + '\\n')\n"
        "if '--input' in sys.argv:\n"
        "    print(json.dumps({'id': 8, **json.loads(body)}))\n"
        "else:\n"
        "    print(json.dumps([{'id': 7, 'name': 'master (bandsyctl github-rules)',\n"
        "                       'source_type': 'Repository'}]))\n"
    )
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run(
        capsys, "github-rules", "--workflows", str(WORKFLOWS), "--repo", "o/r", "--apply"
    )
    assert code == 0, err
    bodies = json.loads(out)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call["argv"] for call in calls] == [
        ["api", "--method", "GET", "repos/o/r/rulesets?includes_parents=false&per_page=100"],
        ["api", "--method", "PUT", "repos/o/r/rulesets/7", "--input", "-"],
        ["api", "--method", "POST", "repos/o/r/rulesets", "--input", "-"],
    ]
    assert [json.loads(call["body"]) for call in calls[1:]] == bodies
    assert "updated ruleset 'master (bandsyctl github-rules)'" in err
    assert "created ruleset 'develop (bandsyctl github-rules)' (id 8)" in err


def test_a_bad_repo_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "github-rules", "--repo", "not a repo", "--apply")
    assert code == 1
    assert "expected OWNER/NAME" in err
