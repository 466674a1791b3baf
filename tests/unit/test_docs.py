"""docs/: the generated API reference is current, every command shown is marked as doc-tested or
needing a cluster, the doc-tested ones run, and relative links lead somewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bandsy_dev import apidocs
from bandsy_dev.docblocks import DOC_TESTED, Block, blocks, problems

DOCS = apidocs.REPO_ROOT / "docs"
GUIDES = sorted(DOCS.rglob("*.md"))
RUNNABLE = [b for path in GUIDES for b in blocks(path) if b.is_shell and DOC_TESTED in b.marks]
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(#[^)]*)?\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")


def test_the_api_reference_is_current() -> None:
    committed = apidocs.OUTPUT.read_text() if apidocs.OUTPUT.is_file() else ""
    assert committed == apidocs.render(), (
        "docs/reference/api.md differs from the CRDs in crds/: run `make docs` and commit it"
    )


def test_the_reference_names_every_kind_and_rule() -> None:
    # The generator must not drop what the API server enforces: every CEL message is there.
    text = apidocs.OUTPUT.read_text()
    for path in apidocs.CRDS:
        kind = yaml.safe_load(path.read_text())["spec"]["names"]["kind"]
        assert f"\n## {kind}\n" in text
        for message in re.findall(r'message: "([^"]+)"', path.read_text()):
            assert apidocs.prose(message) in text, message


@pytest.mark.parametrize("path", GUIDES, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_command_is_marked(path: Path) -> None:
    assert list(problems(path)) == []


def test_some_commands_are_doc_tested() -> None:
    assert len(RUNNABLE) >= 3, "the guides lost their doc-tested commands"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.where)
def test_doc_tested_commands_run(block: Block, tmp_path: Path) -> None:
    # No kubeconfig and an empty HOME: a block that needs a cluster fails here, whatever it says.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=apidocs.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        f"{block.text}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )


@pytest.mark.parametrize("path", [*GUIDES, apidocs.REPO_ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    text = CODE_SPAN.sub("", path.read_text())  # a pattern such as `[a-z](x)` is no link
    targets = {m["target"] for m in LINK.finditer(text) if "://" not in m["target"]}
    # ../shared/SPEC.md lives beside the repository, not in it.
    missing = [
        t for t in targets if not t.startswith("../shared/") and not (path.parent / t).exists()
    ]
    assert missing == []
