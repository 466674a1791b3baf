"""bandsyctl init-service: the starter files of a service repository, each checked by the tool
that will read it (actionlint, pre-commit, git, the operator's own models; the API server's dry
run is tests/integration/test_service_template.py)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pre_commit.clientlib import load_config

from bandsy_operator import naming, scaffold
from bandsy_operator.cli import git_ignores, main
from bandsy_operator.models import parse_service

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO_ROOT / "crds" / "bandsy.app_bandsyservices.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
RELEASE_WORKFLOW = yaml.safe_load(
    (REPO_ROOT / ".github" / "workflows" / "service-release.yaml").read_text()
)


def init(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(["init-service", *argv])
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out + err


@pytest.fixture
def service_repo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    code, output = init(capsys, "web", "--dir", str(tmp_path))
    assert code == 0, output
    return tmp_path


def test_writes_the_four_files(service_repo: Path) -> None:
    written = sorted(str(p.relative_to(service_repo)) for p in service_repo.rglob("*"))
    assert written == [
        ".github",
        ".github/workflows",
        ".github/workflows/release.yaml",
        ".gitignore",
        ".pre-commit-config.yaml",
        "bandsy.yaml",
    ]


def test_the_service_is_one_the_operator_reads(service_repo: Path) -> None:
    body = yaml.safe_load((service_repo / "bandsy.yaml").read_text())
    service = parse_service({**body, "metadata": {**body["metadata"], "uid": "u"}})
    assert service.meta.name == "web"
    assert service.spec.image.repository == "ghcr.io/feinwaru/web"
    assert list(service.spec.environments) == ["develop", "preprod", "production"]


def actionlint() -> Path:
    """The Makefile's actionlint (`make workflows-lint` builds it into .cache/tools)."""
    version = re.search(
        r"^ACTIONLINT_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M
    )
    assert version is not None
    binary = Path(".cache/tools") / f"actionlint-{version[1]}" / "actionlint"
    if not (REPO_ROOT / binary).exists():
        subprocess.run(["make", "--no-print-directory", str(binary)], cwd=REPO_ROOT, check=True)
    return REPO_ROOT / binary


def test_the_workflow_passes_actionlint_and_calls_the_reusable_one(service_repo: Path) -> None:
    result = subprocess.run(
        [str(actionlint()), "-no-color", ".github/workflows/release.yaml"],
        cwd=service_repo,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # actionlint cannot read a remote reusable workflow: its inputs and secrets are checked here.
    call = yaml.safe_load((service_repo / ".github/workflows/release.yaml").read_text())
    job = call["jobs"]["release"]
    assert job["uses"] == ("feinwaru/bandsy-operator/.github/workflows/service-release.yaml@master")
    declared = RELEASE_WORKFLOW[True]["workflow_call"]  # PyYAML reads `on` as True
    required = {name for name, spec in declared["inputs"].items() if spec.get("required")}
    assert required <= set(job["with"]) <= set(declared["inputs"])
    assert set(job["secrets"]) <= set(declared["secrets"])
    assert job["with"]["image-repository"] == "ghcr.io/feinwaru/web"


def test_platform_and_image_are_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, output = init(
        capsys,
        "api",
        "--dir",
        str(tmp_path),
        "--platform",
        "Acme/platform@v1.2.0",
        "--image-repository",
        "registry.example.com:5000/team/api",
    )
    assert code == 0, output
    workflow = (tmp_path / ".github/workflows/release.yaml").read_text()
    assert "uses: Acme/platform/.github/workflows/service-release.yaml@v1.2.0" in workflow
    assert "image-repository: registry.example.com:5000/team/api" in workflow
    assert (
        "repository: registry.example.com:5000/team/api" in (tmp_path / "bandsy.yaml").read_text()
    )
    hooks = (tmp_path / ".pre-commit-config.yaml").read_text()
    assert "git+https://github.com/Acme/platform@v1.2.0" in hooks


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["Web"], "DNS label"),
        (["a" * 41], "DNS label"),
        (["web-"], "DNS label"),
        (["bandsy-web"], "prefix bandsy- is reserved"),
        (["web", "--platform", "feinwaru/bandsy-operator"], "OWNER/REPO@REF"),
        (["web", "--image-repository", "ghcr.io/feinwaru/web:1.0"], "without a tag"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], complaint: str
) -> None:
    code, output = init(capsys, *argv, "--dir", str(tmp_path))
    assert code == 1
    assert complaint in output
    assert list(tmp_path.iterdir()) == []


def test_the_name_rule_is_the_crds() -> None:
    rules = " ".join(rule["rule"] for rule in SCHEMA["x-kubernetes-validations"])
    assert f"matches('{naming.SERVICE_NAME.pattern}')" in rules
    assert f"startsWith('{naming.RESERVED_PREFIX}')" in rules
    image = SCHEMA["properties"]["spec"]["properties"]["image"]["properties"]["repository"]
    assert image["pattern"] == scaffold.IMAGE_REPOSITORY.pattern


def test_existing_files_are_kept_unless_forced(
    capsys: pytest.CaptureFixture[str], service_repo: Path
) -> None:
    (service_repo / "bandsy.yaml").write_text("mine\n")
    (service_repo / ".gitignore").unlink()
    code, output = init(capsys, "web", "--dir", str(service_repo))
    assert code == 1
    assert f"already there (--force overwrites): {service_repo / 'bandsy.yaml'}" in output
    assert (service_repo / "bandsy.yaml").read_text() == "mine\n"
    assert not (service_repo / ".gitignore").exists()  # all or nothing
    code, output = init(capsys, "web", "--dir", str(service_repo), "--force")
    assert code == 0, output
    assert "kind: BandsyService" in (service_repo / "bandsy.yaml").read_text()


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_ignores_env_files(service_repo: Path) -> None:
    git(service_repo, "init", "-q")
    assert git_ignores(service_repo / ".env")
    assert git_ignores(service_repo / ".env.local")
    assert not git_ignores(service_repo / ".env.example")


def test_the_pre_commit_hook_checks_the_current_branch(service_repo: Path) -> None:
    config: dict[str, Any] = load_config(str(service_repo / ".pre-commit-config.yaml"))
    (hook,) = config["repos"][0]["hooks"]
    assert hook["additional_dependencies"] == [
        "bandsy-operator @ git+https://github.com/feinwaru/bandsy-operator@master"
    ]
    assert {"pre-commit", "pre-push"} <= set(hook["stages"])
    # pre-commit runs the entry with the installed package's scripts first on PATH; so does this.
    entry = shlex.split(hook["entry"])
    scripts = str(Path(sys.executable).parent)
    git(service_repo, "init", "-q", "-b", "feature/12_first-page")
    env = {"PATH": scripts + ":/usr/bin:/bin"}
    ok = subprocess.run(entry, cwd=service_repo, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    git(service_repo, "checkout", "-q", "-b", "first-page")
    bad = subprocess.run(entry, cwd=service_repo, env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "invalid branch name: 'first-page'" in bad.stderr
