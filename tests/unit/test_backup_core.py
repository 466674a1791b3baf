"""The pure core of backups (SPEC §11): object names, manifests, retention, verification."""

from __future__ import annotations

import datetime

import pytest

from bandsy_operator.backup.manifest import (
    Manifest,
    backup_prefix,
    dump_key,
    major_version,
    manifest_key,
    mismatches,
    stamp,
    stamp_of,
)
from bandsy_operator.backup.retention import Retention, expired

NOW = datetime.datetime(2026, 12, 1, 3, 0, 0, tzinfo=datetime.UTC)
FOLDER = "backups/develop/api/"


def day(n: int) -> str:
    """The stamp of a backup taken ``n`` days before NOW."""
    return stamp(NOW - datetime.timedelta(days=n))


def verified(*days: int) -> list[str]:
    return [k for n in days for k in (dump_key(FOLDER, day(n)), manifest_key(FOLDER, day(n)))]


def unverified(*days: int) -> list[str]:
    return [dump_key(FOLDER, day(n)) for n in days]


def test_object_names() -> None:
    assert backup_prefix("backups/", "develop", "api") == FOLDER
    assert backup_prefix("", "develop", "api") == "develop/api/"
    assert dump_key(FOLDER, "20261201T030000Z") == "backups/develop/api/20261201T030000Z.dump"
    assert stamp_of(manifest_key(FOLDER, "20261201T030000Z")) == "20261201T030000Z"
    assert stamp_of("backups/develop/api/notes.txt") is None
    assert stamp_of("backups/develop/api/latest.dump") is None


def test_retention_keeps_the_newest_count_and_whatever_is_younger_than_days() -> None:
    keys = verified(0, 1, 2, 3, 10, 40)
    assert expired(keys, Retention(count=3), NOW) == [
        manifest_key(FOLDER, day(40)),
        dump_key(FOLDER, day(40)),
        manifest_key(FOLDER, day(10)),
        dump_key(FOLDER, day(10)),
        manifest_key(FOLDER, day(3)),
        dump_key(FOLDER, day(3)),
    ]
    assert set(expired(keys, Retention(count=2, days=30), NOW)) == set(verified(40))


def test_retention_never_deletes_the_newest_verified_backup() -> None:
    assert expired(verified(400), Retention(count=0, days=1), NOW) == []
    assert expired(verified(400, 500), Retention(count=1, days=1), NOW) == verified(500)[::-1]


def test_unverified_dumps_go_only_once_a_newer_backup_is_verified() -> None:
    # Nothing verified yet (every run failed, or S3 was down): nothing is deleted.
    assert expired(unverified(0, 1, 2), Retention(count=1), NOW) == []
    # A dump newer than the newest verified one may be under verification right now.
    keys = [*verified(1), *unverified(0, 2)]
    assert expired(keys, Retention(count=5), NOW) == unverified(2)


def test_foreign_objects_are_left_alone() -> None:
    keys = [*verified(0, 9), f"{FOLDER}README", f"{FOLDER}latest.json"]
    assert expired(keys, Retention(count=1), NOW) == verified(9)[::-1]


def test_a_manifest_round_trips_and_sums_rows() -> None:
    manifest = Manifest(
        service="api",
        environment="develop",
        database="api-develop",
        taken=day(0),
        dump_key=dump_key(FOLDER, day(0)),
        size=1234,
        sha256="ab" * 32,
        server_version="15.18",
        pg_dump_version="pg_dump (PostgreSQL) 15.18",
        started_at="2026-12-01T03:00:00Z",
        finished_at="2026-12-01T03:00:04Z",
        verified_at="2026-12-01T03:00:04Z",
        tables={"public.users": 3, "public.orders": 10},
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.rows == 13


def test_mismatches_name_each_table() -> None:
    assert mismatches({"public.a": 1}, {"public.a": 1}) == []
    assert mismatches({"public.a": 2, "public.b": 1}, {"public.a": 1, "public.c": 0}) == [
        "public.a: 1 rows restored, 2 dumped",
        "public.b: missing from the restored copy",
        "public.c: not in the dump's snapshot",
    ]


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", 15),
        ("pg_dump (PostgreSQL) 17.2", 17),
        ("150018", 15),
        ("90624", 9),
    ],
)
def test_major_versions(text: str, major: int) -> None:
    assert major_version(text) == major
