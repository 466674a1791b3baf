"""The fenced code blocks of the Markdown guides in docs/, and which of them are commands.

Every shell block says how it is checked, in its info string: ```sh doc-tested (run by
tests/unit/test_docs.py, so it must need no server) or ```sh needs-cluster (a real cluster or
cloud; the e2e and node suites exercise those commands). A bare ``` block is refused too: without
a language nobody can tell a command from output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DOC_TESTED = "doc-tested"
NEEDS_CLUSTER = "needs-cluster"
MARKS = frozenset({DOC_TESTED, NEEDS_CLUSTER})
SHELLS = frozenset({"sh", "bash", "shell", "console", "zsh"})

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# A command shown as an indented block would escape the marks: refuse the usual ones.
INDENTED_COMMAND = re.compile(r"^ {4,}(\$ )?(kubectl|bandsyctl|make|git|psql|python3?) ")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    marks: frozenset[str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELLS


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        words = opening["info"].split()
        body: list[str] = []
        index += 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        first = index - len(body)
        yield Block(path, first, words[0] if words else "", frozenset(words[1:]), "\n".join(body))
        index += 1


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def problems(path: Path) -> Iterator[str]:
    """What makes a guide's commands uncheckable: unmarked shell blocks, unnamed blocks, and
    commands in indented blocks."""
    for block in blocks(path):
        if not block.language:
            yield f"{block.where}: a fenced block without a language (```sh, ```yaml, ```text ...)"
        elif block.is_shell and len(block.marks & MARKS) != 1:
            yield f"{block.where}: a shell block needs one mark, {DOC_TESTED} or {NEEDS_CLUSTER}"
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and INDENTED_COMMAND.match(line):
            yield f"{path.name}:{number}: a command in an indented block: use a marked ```sh fence"
