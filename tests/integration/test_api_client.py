"""The operator's API client against the real API server: its connections outlive a burst, its
LISTs read every page, its applies spare the server a check nobody reads."""

from __future__ import annotations

import asyncio
import uuid

import httpx2 as httpx
import pytest

from bandsy_operator import kube as kube_module
from bandsy_operator.constants import GROUP, SERVICE_KIND, VERSION
from bandsy_operator.kube import API_CONNECTIONS, KubeApi, ObjectRef

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_every_connection_of_a_burst_stays_open_for_the_next(
    servers: dict[str, str],
) -> None:
    """A reconcile sends many requests at once; a connection closed after each would cost a
    TLS handshake per request on both sides."""
    api = KubeApi.from_kubeconfig(servers["KUBECONFIG"])
    pool = api.client._client._client._transport._pool  # type: ignore[attr-defined]
    try:
        ref = ObjectRef("v1", "Namespace", "", "default")
        await asyncio.gather(*(api.get(ref) for _ in range(3 * API_CONNECTIONS)))
        opened = {id(connection) for connection in pool.connections}
        assert len(opened) == API_CONNECTIONS
        await asyncio.gather(*(api.get(ref) for _ in range(3 * API_CONNECTIONS)))
        assert {id(connection) for connection in pool.connections} == opened
    finally:
        await api.close()


async def test_a_list_in_pages_returns_every_object_once_and_says_what_each_is(
    kube: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's LISTs decode each object on its own (start-up at 1000 services): every
    page is read, and objects of a built-in kind, which a list does not name, are named."""
    monkeypatch.setattr(kube_module, "LIST_PAGE_SIZE", 2)
    mark = {"bandsy-test/list": uuid.uuid4().hex[:8]}
    namespaces = [f"list-{mark['bandsy-test/list']}-{index}" for index in range(2)]
    try:
        for namespace in namespaces:
            await kube.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
            for index in range(3):
                await kube.apply(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"cm-{index}", "namespace": namespace, "labels": mark},
                    }
                )
        everywhere = await kube.list("v1", "ConfigMap", labels=mark)
        assert sorted(ObjectRef.of(body) for body in everywhere) == [
            ObjectRef("v1", "ConfigMap", namespace, f"cm-{index}")
            for namespace in namespaces
            for index in range(3)
        ]
        one = await kube.list("v1", "ConfigMap", namespaces[0], labels=mark)
        assert {body["metadata"]["namespace"] for body in one} == {namespaces[0]}
        assert len(one) == 3
        listed = await kube.list_into_listing([("v1", "ConfigMap")], mark, namespaces[1])
        assert listed == 3
        taken = kube.listing.take(ObjectRef("v1", "ConfigMap", namespaces[1], "cm-0"))
        assert taken is not None
        assert "managedFields" not in taken["metadata"]
        version = await kube.collection_version("v1", "ConfigMap", mark)
        assert int(version) >= max(int(b["metadata"]["resourceVersion"]) for b in everywhere)
    finally:
        kube.listing.clear()
        for namespace in namespaces:
            await kube.delete(ObjectRef("v1", "Namespace", "", namespace))


async def test_an_apply_spares_the_api_server_a_parse_and_answers_a_dict(
    kube: KubeApi, crds: None
) -> None:
    """The API server's default field validation parses an apply's body once more, to warn of
    duplicate keys the operator's JSON never has: its applies ask for none, and are accepted.
    The answer is the stored object as a plain dict."""
    validations: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        if request.method == "PATCH":
            validations.append(request.url.params.get("fieldValidation"))

    http = kube.client._client._client
    hooks = http.event_hooks
    http.event_hooks = {**hooks, "request": [*hooks["request"], record]}
    name = f"apply-{uuid.uuid4().hex[:8]}"
    service = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": SERVICE_KIND,
        "metadata": {"name": name},
        "spec": {
            "owner": "team-apply",
            "image": {"repository": "example.org/apply"},
            "suspend": True,
            "environments": {"develop": {"image": {"tag": "v1"}}},
        },
    }
    try:
        applied = await kube.apply(service)
        assert type(applied) is dict
        assert applied["spec"]["owner"] == "team-apply"
        assert applied == await kube.get(ObjectRef.of(service))
        status = await kube.apply_status(SERVICE_KIND, name, {"observedGeneration": 1})
        assert status["status"]["observedGeneration"] == 1
        assert validations == ["Ignore", "Ignore"]
    finally:
        http.event_hooks = hooks
        await kube.delete(ObjectRef.of(service))
