"""The metric names a PromQL expression reads, and those a ``/metrics`` page serves: what the
alerts and the dashboard query must be what the operator exports (SPEC §12)."""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Identifiers that are neither functions, keywords, label names nor strings."""
    rest = expr
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING):
        rest = pattern.sub(" ", rest)
    return {
        match.group()
        for match in _IDENTIFIER.finditer(rest)
        if not rest[match.end() :].lstrip().startswith("(")
        and match.group().lower() not in _KEYWORDS
    }


def served_names(exposition: str) -> set[str]:
    """Every series name the page offers a query, samples or not: a family without a sample
    yet (no blocked promotion now) is still exported."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
