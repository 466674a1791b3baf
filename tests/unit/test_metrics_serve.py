"""kopf retries a failed start-up handler: serving metrics again in the same process must work
and report the world of the controller that finally started (review issue 13, item 14)."""

from __future__ import annotations

import urllib.request
from typing import Any

from bandsy_dev.operator_process import parse_prometheus
from bandsy_dev.procs import free_port
from bandsy_operator import metrics
from bandsy_operator.world import World
from factories import service_body, tags

MANAGED_CONFIG_MAPS = 'bandsy_managed_objects{kind="ConfigMap"}'


def world_with_config_maps(count: int) -> World:
    """A world whose one service has ``count`` ConfigMaps in its inventory."""
    body: dict[str, Any] = service_body("web", tags(develop="v1"))
    body["metadata"].update(uid="uid-web", resourceVersion="1", generation=1)
    body["status"] = {
        "inventory": [f"develop|v1|ConfigMap|develop|web-{i}" for i in range(count)],
    }
    world = World()
    world.observe_service(body)
    return world


def scrape(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse_prometheus(response.read().decode())


def test_a_retried_start_serves_the_latest_world() -> None:
    port = free_port()
    metrics.serve(port, world_with_config_maps(2))  # the attempt that failed afterwards
    metrics.serve(port, world_with_config_maps(5))  # kopf's retry, with a new controller
    assert scrape(port)[MANAGED_CONFIG_MAPS] == 5
