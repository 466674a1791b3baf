"""The API reference, docs/reference/api.md, generated from the CRDs in crds/ (`make docs`).

The CRDs are the API contract, so the reference is derived from them and never edited by hand;
tests/unit/test_docs.py fails when the committed file differs from what this module renders.
Fields keep the order of the CRD files, so the output is deterministic and reads like the schema.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = (
    REPO_ROOT / "crds" / "bandsy.app_bandsyenvironments.yaml",
    REPO_ROOT / "crds" / "bandsy.app_bandsyservices.yaml",
)
OUTPUT = REPO_ROOT / "docs" / "reference" / "api.md"

Schema = dict[str, Any]

# What a map's key means, where the key has a meaning (environment and service names); any
# other map shows its key as <key>.
MAP_KEYS = {"environments": "<env>", "byService": "<service>"}
# Kubernetes' own fields: their schema here is only a stub around metadata.name.
SKIPPED = frozenset({"apiVersion", "kind"})


@dataclass(frozen=True)
class Field:
    path: str
    schema: Schema
    required: bool


@dataclass(frozen=True)
class Rule:
    path: str
    rule: str
    message: str


def walk(schema: Schema, path: str, required: bool) -> Iterator[Field]:
    """Every field under ``schema`` (itself included when it has a path), depth first."""
    if path:
        yield Field(path, schema, required)
    needed = set(schema.get("required", ()))
    for name, child in schema.get("properties", {}).items():
        if not path and name in SKIPPED:
            continue
        yield from walk(child, f"{path}.{name}" if path else name, name in needed)
    values = schema.get("additionalProperties")
    if isinstance(values, dict) and (values.get("properties") or values.get("type") == "object"):
        # Maps of scalars are described by their own row's type; maps of objects get rows per key.
        key = MAP_KEYS.get(path.rsplit(".", 1)[-1], "<key>")
        yield from walk(values, f"{path}.{key}", False)
    items = schema.get("items")
    if isinstance(items, dict) and items.get("properties"):
        # A row of its own (path[]) for the item's rules; its fields hang under path[].
        yield from walk(items, f"{path}[]", False)


def type_of(schema: Schema) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    values = schema.get("additionalProperties")
    if kind == "object" and isinstance(values, dict) and not schema.get("properties"):
        return f"map of {type_of(values)}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return kind


def code(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def constraints(schema: Schema) -> list[str]:
    """The schema's limits in words; a map's value limits are its entries'."""
    values = schema.get("additionalProperties")
    own = _limits(schema)
    if isinstance(values, dict) and not schema.get("properties") and _limits(values):
        own.append("each value: " + ", ".join(_limits(values)))
    items = schema.get("items")
    if isinstance(items, dict) and not items.get("properties") and _limits(items):
        own.append("each item: " + ", ".join(_limits(items)))
    return own


def _limits(schema: Schema) -> list[str]:
    found: list[str] = []
    if "enum" in schema:
        found.append("one of " + ", ".join(code(v) for v in schema["enum"]))
    for key, word in (("minimum", "≥"), ("maximum", "≤")):
        if key in schema:
            found.append(f"{word} {schema[key]}")
    for key, word in (
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("maxProperties", "keys ≤"),
    ):
        if key in schema:
            found.append(f"{word} {schema[key]}")
    if "pattern" in schema:
        found.append(f"pattern {code(schema['pattern'])}")
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        found.append("a set (no duplicates)")
    elif list_type == "map":
        found.append("keyed by " + ", ".join(code(k) for k in schema["x-kubernetes-list-map-keys"]))
    return found


# Outside code spans, Markdown would read these as emphasis or HTML tags (`<env>` would vanish).
PROSE_ESCAPES = str.maketrans({"\\": "\\\\", "*": "\\*", "_": "\\_", "<": "&lt;", ">": "&gt;"})


def prose(text: str) -> str:
    """CRD text as Markdown: what is between backticks stays code, the rest is escaped."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.translate(PROSE_ESCAPES) for i, p in enumerate(parts))


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell (GitHub reads \\| as | inside code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def field_table(fields: list[Field]) -> list[str]:
    lines = [
        "| field | type | required | default | limits | description |",
        "|---|---|---|---|---|---|",
    ]
    for field in fields:
        schema = field.schema
        default = code(schema["default"]) if "default" in schema else ""
        row = (
            f"`{field.path}`",
            type_of(schema),
            "yes" if field.required else "",
            default,
            "; ".join(constraints(schema)),
            prose(str(schema.get("description", ""))),
        )
        lines.append("| " + " | ".join(cell(part) for part in row) + " |")
    return lines


def rules(root: Schema) -> list[Rule]:
    """The CEL rules, on the object (path ``(object)``) and on each field."""
    found = [_rules_of(root, "(object)")]
    found += [_rules_of(field.schema, field.path) for field in walk(root, "", False)]
    return [rule for group in found for rule in group]


def _rules_of(schema: Schema, path: str) -> list[Rule]:
    return [
        Rule(path, str(v["rule"]), str(v.get("message", "")))
        for v in schema.get("x-kubernetes-validations", ())
    ]


def rule_list(found: list[Rule]) -> list[str]:
    lines: list[str] = []
    for rule in found:
        lines.append(f"- on `{rule.path}`: {prose(rule.message)}")
        lines.append(f"  `{' '.join(rule.rule.split())}`")
    return lines


def column_table(columns: list[Schema]) -> list[str]:
    lines = ["| column | JSONPath | type | shown |", "|---|---|---|---|"]
    for column in columns:
        shown = "`-o wide`" if column.get("priority", 0) else "always"
        row = (column["name"].upper(), code(column["jsonPath"]), column["type"], shown)
        lines.append("| " + " | ".join(cell(part) for part in row) + " |")
    return lines


def intro(path: Path) -> str:
    """The CRD file's leading comment: what the kind is for, in the author's words."""
    words: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    return " ".join(words)


def render_kind(path: Path) -> list[str]:
    crd: Schema = yaml.safe_load(path.read_text())
    spec = crd["spec"]
    names = spec["names"]
    (version,) = spec["versions"]  # one served version; a second would need its own section
    root: Schema = version["schema"]["openAPIV3Schema"]
    everything = list(walk(root, "", False))
    status = [f for f in everything if f.path.startswith("status")]
    fields = [f for f in everything if not f.path.startswith("status")]
    return [
        f"## {names['kind']}",
        "",
        prose(intro(path)),
        "",
        f"`{spec['group']}/{version['name']}`, {spec['scope'].lower()}-scoped; "
        f"`kubectl get {names['plural']}` or `{', '.join(names.get('shortNames', []))}`; "
        f"source: `{path.relative_to(REPO_ROOT)}`.",
        "",
        "### Columns of `kubectl get`",
        "",
        *column_table(version.get("additionalPrinterColumns", [])),
        "",
        "### Fields",
        "",
        *field_table(fields),
        "",
        "### Validation rules (CEL)",
        "",
        "Checked by the API server on create and update; a refused object is never stored.",
        "",
        *rule_list(rules(root)),
        "",
        "### Status (written by the operator)",
        "",
        *field_table(status),
        "",
    ]


def render(paths: tuple[Path, ...] = CRDS) -> str:
    lines = [
        "# API reference",
        "",
        "<!-- Generated by `make docs` (hack/bandsy_dev/apidocs.py) from crds/*.yaml: "
        "do not edit. -->",
        "",
        "Field paths: `a.b` is a field of an object, `a.<key>` an entry of a map (`<env>`: an "
        "environment's name), `a[].b` a field of each item of a list. *Required* means: whenever "
        "its parent is there. Limits and defaults are the API server's; the operator checks "
        "what needs other objects (see the guides).",
        "",
    ]
    for path in paths:
        lines += render_kind(path)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render())
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
