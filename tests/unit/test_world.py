"""The world view keeps the newest object under each name."""

from __future__ import annotations

from typing import Any

from bandsy_operator.world import World
from factories import service_body, tags


def stored(uid: str, resource_version: str) -> dict[str, Any]:
    body = service_body("web", tags(develop="v1"))
    meta = {**body["metadata"], "uid": uid, "resourceVersion": resource_version, "generation": 1}
    return {**body, "metadata": meta}


def test_a_late_deletion_of_the_predecessor_keeps_the_successor() -> None:
    world = World()
    world.observe_service(stored("old", "10"))
    world.observe_service(stored("new", "12"))
    remaining = world.forget_service(stored("old", "11"))
    assert remaining is not None
    assert remaining.body["metadata"]["uid"] == "new"
    assert "web" in world.valid_services()
    assert world.forget_service(stored("new", "13")) is None
    assert "web" not in world.services


def test_an_older_or_repeated_version_is_not_taken() -> None:
    world = World()
    first = world.observe_service(stored("a", "20"))
    assert world.observe_service(stored("a", "20")) is first  # parsed once
    assert world.observe_service(stored("a", "19")) is first
    assert world.observe_service(stored("a", "21")) is not first
