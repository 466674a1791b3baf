"""What a backup is: its objects in the bucket and the manifest that describes the dump.

A dump counts only once it was restored and checked (SPEC §9 "nothing lost"): its manifest
is written after the verify step, so a manifest in the bucket *is* a verified backup.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

MANIFEST_SUFFIX = ".json"
DUMP_SUFFIX = ".dump"
# Sortable and free of characters S3 or a shell treat specially: 20261201T030000Z.
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime(STAMP_FORMAT)


def parse_stamp(value: str) -> datetime.datetime:
    return datetime.datetime.strptime(value, STAMP_FORMAT).replace(tzinfo=datetime.UTC)


def backup_prefix(prefix: str, environment: str, service: str) -> str:
    """``<prefix>/<env>/<service>/`` (SPEC §11); an empty prefix starts at the environment."""
    parts = [p for p in (prefix.strip("/"), environment, service) if p]
    return "/".join(parts) + "/"


def dump_key(folder: str, taken: str) -> str:
    return f"{folder}{taken}{DUMP_SUFFIX}"


def manifest_key(folder: str, taken: str) -> str:
    return f"{folder}{taken}{MANIFEST_SUFFIX}"


def stamp_of(key: str) -> str | None:
    """The timestamp a backup object's key carries, None for an object that is not ours."""
    name = key.rsplit("/", 1)[-1]
    for suffix in (DUMP_SUFFIX, MANIFEST_SUFFIX):
        if name.endswith(suffix):
            candidate = name.removesuffix(suffix)
            try:
                parse_stamp(candidate)
            except ValueError:
                return None
            return candidate
    return None


@dataclass(frozen=True)
class Manifest:
    """The verified description of one dump. ``tables``: rows per ``schema.table``, counted in
    the snapshot the dump was taken from, and found again in its restored copy."""

    service: str
    environment: str
    database: str
    taken: str  # stamp(): also the name of the objects
    dump_key: str
    size: int
    sha256: str
    server_version: str
    pg_dump_version: str
    started_at: str
    finished_at: str
    verified_at: str
    tables: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        data: Mapping[str, Any] = json.loads(text)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def mismatches(expected: Mapping[str, int], found: Mapping[str, int]) -> list[str]:
    """How a restored copy differs from the manifest's counts; empty when it matches."""
    problems = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            problems.append(f"{table}: missing from the restored copy")
        elif table not in expected:
            problems.append(f"{table}: not in the dump's snapshot")
        elif expected[table] != found[table]:
            problems.append(f"{table}: {found[table]} rows restored, {expected[table]} dumped")
    return problems


def major_version(text: str) -> int:
    """The major version in ``pg_dump (PostgreSQL) 15.18 (Debian ...)`` or ``150018``."""
    if text.isdigit():
        return int(text) // 10000
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", text) or re.match(r"(\d+)\.", text)
    if match is None:
        raise ValueError(f"cannot read a PostgreSQL version from {text!r}")
    return int(match.group(1))
