"""A start-up pass reads what it checks by paged LISTs, not one GET per object (issue 18), and
still finds drift made while no operator ran. The operator runs in this process (the session's is
stopped meanwhile) so that the requests its client sends can be counted."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx2 as httpx
import pytest

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_dev.operator_process import KubectlRunner, OperatorProcess
from bandsy_operator import inventory
from bandsy_operator.constants import API_VERSION, ENVIRONMENT_KIND, SERVICE_KIND
from bandsy_operator.controller import Controller, service_key
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.naming import OPERATOR_SECRETS_BINDING
from bandsy_operator.settings import OperatorSettings
from factories import environment_body, service_body, tags
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SERVICES = 3


async def recorded_objects(
    kube: KubeApi, name: str, kind: str = SERVICE_KIND
) -> frozenset[ObjectRef]:
    body = await kube.get(ObjectRef(API_VERSION, kind, "", name))
    entries = ((body or {}).get("status") or {}).get("inventory") or []
    return inventory.refs(inventory.parse(entries))


Named = tuple[str, str, str]  # kind, namespace, name


def count_server_reads(api: KubeApi) -> tuple[list[Named], Counter[str]]:
    """Every object the client GETs and its LISTs by kind: the client's own methods, wrapped
    to note each call and then make it."""
    gets: list[Named] = []
    lists: Counter[str] = Counter()
    client = api.client
    get, list_page = client.get, api._list_page

    async def noted_get(res: Any, name: str, *, namespace: str | None = None, **kw: Any) -> Any:
        gets.append((res._api_info.resource.kind, namespace or "", name))
        return await get(res, name, namespace=namespace, **kw)

    async def noted_list_page(api_version: str, kind: str, *args: Any) -> Any:
        if args[-1] is None:  # no continue token: a LIST's first page
            lists[kind] += 1
        return await list_page(api_version, kind, *args)

    client.get = noted_get  # type: ignore[method-assign]
    api._list_page = noted_list_page  # type: ignore[method-assign]
    return gets, lists


async def test_a_start_up_pass_reads_by_list_and_still_repairs_drift(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    operator: OperatorProcess,
) -> None:
    s = uuid.uuid4().hex[:6]
    env = f"pass-{s}"
    names = [f"pass-{s}-{i}" for i in range(SERVICES)]
    kubectl.apply(
        environment_body(env, deletionPolicy="Delete"),
        *(service_body(name, tags(**{env: "v1"}), port=8000) for name in names),
    )
    for name in names:
        await eventually(lambda name=name: make_deployment_ready(kube, env, name))
    recorded = {name: await eventually(lambda n=name: recorded_objects(kube, n)) for name in names}
    ours = {(r.kind, r.namespace, r.name) for refs in recorded.values() for r in refs}
    config = next(r for r in recorded[names[0]] if r.kind == "ConfigMap")
    live_config = await kube.get(config)
    assert live_config is not None
    key, value = next(iter(live_config["data"].items()))

    # The environment's reconcile let the operator list its Secrets (its ServiceAccount's own).
    binding = ObjectRef(
        "rbac.authorization.k8s.io/v1", "RoleBinding", env, OPERATOR_SECRETS_BINDING
    )
    assert binding in await eventually(lambda: recorded_objects(kube, env, ENVIRONMENT_KIND))

    operator.stop()
    # As the session's operator: its ServiceAccount, under the shipped RBAC.
    api = KubeApi.from_kubeconfig(operator.env["KUBECONFIG"])
    controller = Controller(api, OperatorSettings())
    try:
        # Drift while no operator runs: a value of one of our ConfigMaps changed by hand.
        edit = {"data": {key: f"{value}-by-hand"}}
        kubectl(
            "patch",
            "configmap",
            "-n",
            config.namespace,
            config.name,
            "--type=merge",
            "-p",
            json.dumps(edit),
        )
        gets, lists = count_server_reads(api)
        await controller.start()

        async def pass_done() -> bool:
            return not controller._pass_pending and not controller._pass_running

        await eventually(pass_done, timeout=60)
    finally:
        await controller.stop()
        await api.close()
        operator.start()

    read_one_by_one = sorted(ref for ref in gets if ref in ours)
    assert read_one_by_one == [], "the pass read our objects one by one"
    assert lists["Secret"] >= 1, "Secrets are listed in the environment's namespace"
    assert lists["ConfigMap"] >= 1
    assert lists["Deployment"] >= 1
    repaired = await kube.get(config)
    assert repaired is not None
    assert repaired["data"][key] == value, "the drift went unnoticed"
    kubectl("delete", "benv", env, "--wait=false")
    for name in names:
        kubectl("delete", "bsvc", name, "--wait=false")


async def test_a_list_that_fails_leaves_only_its_own_kind_to_be_read_one_by_one(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess
) -> None:
    s = uuid.uuid4().hex[:6]
    env, name = f"fail-{s}", f"fail-{s}-0"
    kubectl.apply(
        environment_body(env, deletionPolicy="Delete"),
        service_body(name, tags(**{env: "v1"}), port=8000),
    )
    await eventually(lambda: make_deployment_ready(kube, env, name))
    recorded = await eventually(lambda: recorded_objects(kube, name))
    api = KubeApi.from_kubeconfig(operator.env["KUBECONFIG"])
    controller = Controller(api, OperatorSettings())
    try:
        for body in await api.list(API_VERSION, ENVIRONMENT_KIND):
            controller.world.observe_environment(body)
        for body in await api.list(API_VERSION, SERVICE_KIND):
            controller.world.observe_service(body)
        list_page = api._list_page

        async def config_maps_unreachable(api_version: str, kind: str, *args: Any) -> Any:
            if kind == "ConfigMap":
                raise httpx.ConnectError("the API server went away")
            return await list_page(api_version, kind, *args)

        api._list_page = config_maps_unreachable  # type: ignore[method-assign]
        await controller._list_for_pass()
        deployment = next(r for r in recorded if r.kind == "Deployment")
        config = next(r for r in recorded if r.kind == "ConfigMap")
        assert api.listing.take(deployment) is not None, "the other kinds are listed"
        assert api.listing.take(config) is None
    finally:
        await controller.stop()
        await api.close()
    kubectl("delete", "benv", env, "--wait=false")
    kubectl("delete", "bsvc", name, "--wait=false")


async def test_a_listed_body_answers_one_read_and_never_hides_a_write(
    kube: KubeApi, kubectl: KubectlRunner, servers: dict[str, str]
) -> None:
    namespace = f"listing-{uuid.uuid4().hex[:6]}"
    labels = {"app.kubernetes.io/managed-by": "listing-test"}
    kubectl("create", "namespace", namespace)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "one", "namespace": namespace, "labels": labels},
        "data": {"value": "listed"},
    }
    ref = ObjectRef.of(body)
    api = KubeApi.from_kubeconfig(servers["KUBECONFIG"])
    try:
        await api.apply(body)
        assert await api.list_into_listing([("v1", "ConfigMap")], labels) >= 1
        gets, _ = count_server_reads(api)
        first = await api.get(ref)
        assert first is not None
        assert first["data"] == {"value": "listed"}
        assert "managedFields" not in first["metadata"]
        assert gets == []
        assert (await api.get(ref)) is not None
        assert len(gets) == 1, "a listed body answers one read only"

        await api.list_into_listing([("v1", "ConfigMap")], labels)
        await api.apply({**body, "data": {"value": "written"}})
        after = await api.get(ref)
        assert after is not None
        assert after["data"] == {"value": "written"}, "the listing hid our own write"
    finally:
        await api.close()
        kubectl("delete", "namespace", namespace, "--wait=false")


async def test_only_the_last_reconcile_of_a_pass_ends_its_listing(servers: dict[str, str]) -> None:
    """A reconcile outside the pass (a watch event's) that ends while the next pass is still
    listing leaves the listing be; the pass's last reconcile clears it."""
    api = KubeApi.from_kubeconfig(servers["KUBECONFIG"])
    controller = Controller(api, OperatorSettings())
    try:
        api.listing.add(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
        )
        controller._pass_done(service_key("triggered-by-a-watch-event"))
        assert len(api.listing) == 1
        controller._pass_running.add(service_key("of-the-pass"))
        controller._pass_done(service_key("of-the-pass"))
        assert len(api.listing) == 0
    finally:
        await controller.stop()
        await api.close()
