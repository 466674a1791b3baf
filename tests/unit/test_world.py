"""The world view keeps the newest object under each name."""

from __future__ import annotations

from typing import Any

from bandsy_operator.constants import SERVICE_LABEL
from bandsy_operator.world import World
from factories import environment_body, service_body, tags
from workloads import crash_loop_back_off, image_pull_back_off, running_status


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


def deployment(namespace: str, resource_version: str, service: str = "web") -> dict[str, Any]:
    return {
        "metadata": {
            "name": service,
            "namespace": namespace,
            "resourceVersion": resource_version,
            "labels": {SERVICE_LABEL: service},
        }
    }


def world_with_web() -> World:
    world = World()
    world.observe_environment(environment_body("develop"))
    world.observe_environment(environment_body("production", namespace="prod"))
    world.observe_service(stored("a", "1"))  # web, in develop only
    return world


def test_a_deployment_event_is_news_only_with_a_newer_version() -> None:
    world = world_with_web()
    assert world.workload_news("ADDED", deployment("develop", "30")) == "web"
    assert world.workload("develop", "web") == deployment("develop", "30")
    assert world.observe_workload(deployment("develop", "31"))  # our apply's response
    assert world.workload_news("MODIFIED", deployment("develop", "31")) is None  # its echo
    assert world.workload_news("MODIFIED", deployment("develop", "30")) is None  # a late one
    assert not world.observe_workload(deployment("develop", "30"))  # an older read
    assert world.workload_news("MODIFIED", deployment("develop", "32")) == "web"  # the kubelet
    assert world.workload("develop", "web") == deployment("develop", "32")
    # A deletion is always news, and forgets the body.
    assert world.workload_news("DELETED", deployment("develop", "33")) == "web"
    assert world.workload("develop", "web") is None
    assert world.workload_news(None, deployment("develop", "31")) == "web"


def test_a_remembered_deployment_leaves_its_managed_fields_out() -> None:
    world = world_with_web()
    body = deployment("develop", "7")
    body["metadata"]["managedFields"] = [{"manager": "bandsy-operator"}]
    world.observe_workload(body)
    assert "managedFields" not in (world.workload("develop", "web") or {})["metadata"]


def test_a_remembered_deployment_is_a_copy_each_time_it_is_asked_for() -> None:
    """Kept packed (compact JSON): what a reconcile does with its copy changes nothing kept."""
    world = world_with_web()
    world.observe_workload(deployment("develop", "7"))
    first = world.workload("develop", "web")
    assert first == deployment("develop", "7")
    first["metadata"]["labels"]["changed"] = "by a reader"
    assert world.workload("develop", "web") == deployment("develop", "7")


def test_custom_resources_are_kept_without_their_managed_fields() -> None:
    world = World()
    body = stored("a", "3")
    body["metadata"]["managedFields"] = [{"manager": "bandsy-operator", "fieldsV1": {}}]
    known = world.observe_service(body)
    assert "managedFields" not in known.body["metadata"]
    assert known.body["metadata"]["resourceVersion"] == "3"
    env = world.observe_environment(
        {
            **environment_body("develop"),
            "metadata": {"name": "develop", "managedFields": [{"manager": "kubectl"}]},
        }
    )
    assert "managedFields" not in env.body["metadata"]


def test_a_status_is_kept_packed_and_each_reader_gets_its_own_copy() -> None:
    world = World()
    status = {"environments": {"develop": {"conditions": [{"type": "Ready", "status": "True"}]}}}
    known = world.observe_service({**stored("a", "3"), "status": status})
    assert "status" not in known.body
    assert isinstance(known.packed_status, bytes)
    assert known.status == status
    known.status["environments"]["develop"]["conditions"].clear()
    assert known.status == status
    assert known.whole == {**stored("a", "3"), "status": status}
    assert world.observe_service(stored("b", "4")).status == {}


def test_the_environments_a_service_is_ready_in_are_read_once_from_its_status() -> None:
    def ready(status: str) -> dict[str, Any]:
        return {
            "conditions": [
                {"type": "Stalled", "status": "True"},
                {"type": "Ready", "status": status},
            ]
        }

    status = {
        "environments": {"develop": ready("True"), "preprod": ready("False"), "production": {}}
    }
    known = World().observe_service({**stored("a", "3"), "status": status})
    assert known.ready_in == frozenset({"develop"})
    assert World().observe_service(stored("a", "3")).ready_in == frozenset()


def test_forgetting_the_custom_resources_forgets_every_view_of_them() -> None:
    world = World()
    world.observe_environment(environment_body("develop"))
    world.observe_service(stored("a", "3"))
    world.forget_custom_resources()
    assert (world.environments, world.services) == ({}, {})
    assert (dict(world.valid_environments()), dict(world.valid_services())) == ({}, {})
    assert world.services_in("develop") == []


def test_deployments_outside_the_services_environments_are_not_its_business() -> None:
    world = world_with_web()
    assert world.workload_news("ADDED", deployment("floor-develop", "5")) is None
    assert world.workload_news("ADDED", deployment("prod", "5")) is None  # web is not there
    assert world.workload_news("ADDED", deployment("develop", "5", service="api")) is None


# -- pods -----------------------------------------------------------------------------------------


def web_pod(
    namespace: str, resource_version: str, status: dict[str, Any], name: str = "web-7d9f8c6b5-x2k4q"
) -> dict[str, Any]:
    """One of web's pods, as its watch delivers it: labelled by the Deployment's template."""
    body = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": resource_version,
            "labels": {SERVICE_LABEL: "web"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "web-7d9f8c6b5", "uid": "u", "controller": True}
            ],
        },
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/feinwaru/web:nope"}]},
    }
    return {**body, "status": status(body)}


def test_a_pod_is_news_when_it_starts_stops_or_changes_failing() -> None:
    world = world_with_web()
    assert world.pod_news("ADDED", web_pod("develop", "1", running_status)) is None
    assert world.failing_pods("develop", "web") == []
    assert world.pod_news("MODIFIED", web_pod("develop", "2", image_pull_back_off)) == "web"
    (remembered,) = world.failing_pods("develop", "web")
    assert "spec" not in remembered  # the essentials only
    assert remembered["metadata"]["ownerReferences"][0]["name"] == "web-7d9f8c6b5"
    # The kubelet retrying the same failure is no news; a late, older event neither.
    assert world.pod_news("MODIFIED", web_pod("develop", "3", image_pull_back_off)) is None
    assert world.pod_news("MODIFIED", web_pod("develop", "2", running_status)) is None
    assert world.pod_news("MODIFIED", web_pod("develop", "4", crash_loop_back_off)) == "web"
    assert world.pod_news("MODIFIED", web_pod("develop", "5", running_status)) == "web"
    assert world.failing_pods("develop", "web") == []
    assert world.pod_news("MODIFIED", web_pod("develop", "6", crash_loop_back_off)) == "web"
    assert world.pod_news("DELETED", web_pod("develop", "7", crash_loop_back_off)) == "web"
    assert world.failing_pods("develop", "web") == []
    assert world.pod_news("DELETED", web_pod("develop", "8", running_status)) is None


def test_failing_pods_outside_the_services_environments_are_remembered_not_news() -> None:
    """A pod may be seen before its service or environment: kept for when they come."""
    world = world_with_web()
    assert world.pod_news("ADDED", web_pod("prod", "1", image_pull_back_off)) is None
    assert len(world.failing_pods("prod", "web")) == 1


def test_a_live_list_replaces_what_the_watch_told_but_newer_news() -> None:
    world = world_with_web()
    world.pod_news("ADDED", web_pod("develop", "5", image_pull_back_off, name="web-a"))
    world.pod_news("ADDED", web_pod("develop", "9", image_pull_back_off, name="web-b"))
    world.pod_news("ADDED", web_pod("develop", "6", image_pull_back_off, name="web-gone"))
    world.observe_pods(
        "develop",
        "web",
        [
            web_pod("develop", "7", running_status, name="web-a"),  # recovered since
            web_pod("develop", "8", running_status, name="web-b"),  # older than the watch's
            web_pod("develop", "8", crash_loop_back_off, name="web-c"),  # the watch missed it
        ],
    )  # web-gone's deletion was missed
    failing = {p["metadata"]["name"]: p for p in world.failing_pods("develop", "web")}
    assert set(failing) == {"web-b", "web-c"}
    assert failing["web-b"]["metadata"]["resourceVersion"] == "9"
    world.observe_pods("develop", "web", [])
    assert world.failing_pods("develop", "web") == []


def test_dependents_follow_changes_of_dependencies_and_environments() -> None:
    world = World()

    def observe(name: str, version: str, depends_on: list[str], **envs: str) -> None:
        body = service_body(name, tags(**envs), dependsOn=depends_on)
        meta = {**body["metadata"], "uid": name, "resourceVersion": version, "generation": 1}
        world.observe_service({**body, "metadata": meta})

    observe("api", "1", [], develop="v1", preprod="v1")
    observe("web", "2", ["api"], develop="v1")
    observe("worker", "3", ["api"], develop="v1", preprod="v1")
    assert world.dependents_of("api", "develop") == ["web", "worker"]
    assert world.dependents_of("api", "preprod") == ["worker"]
    observe("web", "4", ["api"], develop="v1", preprod="v1")  # a new environment
    assert world.dependents_of("api", "preprod") == ["web", "worker"]
    observe("worker", "5", [], develop="v1", preprod="v1")  # no longer depends
    assert world.dependents_of("api", "develop") == ["web"]
    meta = {"name": "web", "uid": "web", "resourceVersion": "6"}
    world.forget_service({"metadata": meta})
    assert world.dependents_of("api", "develop") == []
