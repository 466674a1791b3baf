"""The operator's Kubernetes client: plain-dict manifests in and out, server-side apply.

Built on lightkube's async client (httpx, typed resource registry, SSA as a first-class verb).
Everything above this module speaks ``dict`` manifests so builders stay pure and ``render`` can
print exactly what is applied.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx2 as httpx
import msgspec
from lightkube import AsyncClient, KubeConfig, codecs
from lightkube.config.client_adapter import verify_cluster
from lightkube.core.exceptions import ApiError, ConfigError
from lightkube.core.resource import NamespacedResource, NamespacedResourceG
from lightkube.core.resource_registry import resource_registry
from lightkube.core.selector import build_selector
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models import meta_v1
from lightkube.resources.authentication_v1 import SelfSubjectReview
from lightkube.types import CascadeType, PatchType

from .constants import (
    CERT_MANAGER_GROUP,
    CERTIFICATE_KIND,
    CERTIFICATE_PLURAL,
    ENVIRONMENT_KIND,
    ENVIRONMENT_PLURAL,
    FIELD_MANAGER,
    GATEWAY_API_VERSION,
    GATEWAY_GROUP,
    GATEWAY_KIND,
    GATEWAY_LISTENER_KIND,
    GATEWAY_PLURAL,
    GROUP,
    HTTP_ROUTE_KIND,
    HTTP_ROUTE_PLURAL,
    MONITORING_GROUP,
    PROMETHEUS_RULE_KIND,
    PROMETHEUS_RULE_PLURAL,
    SERVICE_KIND,
    SERVICE_MONITOR_KIND,
    SERVICE_MONITOR_PLURAL,
    SERVICE_PLURAL,
    VERSION,
)
from .transport import api_transport

Manifest = dict[str, Any]
# etcd's revision starts at 1 and its first write is revision 2, so no object carries version 1.
NEVER_STORED_VERSION = "1"
# Objects per LIST response: a large listing comes in pages, so neither the API server nor we
# hold it all in one response.
LIST_PAGE_SIZE = 500
# zlib's fastest level: a listed body is compressed and read back once, within a pass.
LISTING_COMPRESSION = 1
# Seconds to connect, or to wait for an answer (a watch waits for its events longer).
REQUEST_TIMEOUT_SECONDS = 10.0
# Connections to the API server, every one kept alive between requests. httpx keeps 20 of its
# 100: at a reconcile's concurrency the others were closed after each request and opened again,
# a TLS handshake each (1.8 ms of client CPU per apply against 1.3 ms, bench of 1500 applies).
API_CONNECTIONS = 32
# Unless told otherwise ("Warn", its default), the API server parses an apply's body a third
# time, strictly, to warn of duplicate keys, which no JSON encoder writes (and lightkube reads no
# warnings). A field no schema has is refused either way: an apply builds a typed object.
APPLY_FIELD_VALIDATION = "Ignore"
# What a request can fail with: an API error status, or the connection itself.
CLIENT_ERRORS: tuple[type[Exception], ...] = (ApiError, httpx.HTTPError)

# Our own kinds, registered so they resolve like built-in ones.
BandsyEnvironmentResource = create_global_resource(
    GROUP, VERSION, ENVIRONMENT_KIND, ENVIRONMENT_PLURAL
)
BandsyServiceResource = create_global_resource(GROUP, VERSION, SERVICE_KIND, SERVICE_PLURAL)
# The Prometheus Operator's (SPEC §12), registered whether or not the cluster serves them: an
# inventory may list one after its CRD is gone, and pruning it must find nothing, not fail.
create_namespaced_resource(MONITORING_GROUP, "v1", SERVICE_MONITOR_KIND, SERVICE_MONITOR_PLURAL)
create_namespaced_resource(MONITORING_GROUP, "v1", PROMETHEUS_RULE_KIND, PROMETHEUS_RULE_PLURAL)
# Exposure's (SPEC §12): Gateway API's and cert-manager's, likewise.
create_namespaced_resource(GATEWAY_GROUP, "v1", HTTP_ROUTE_KIND, HTTP_ROUTE_PLURAL)
create_namespaced_resource(GATEWAY_GROUP, "v1", GATEWAY_KIND, GATEWAY_PLURAL)
create_namespaced_resource(CERT_MANAGER_GROUP, "v1", CERTIFICATE_KIND, CERTIFICATE_PLURAL)


@dataclass(frozen=True, order=True, slots=True)
class ObjectRef:
    """Identity of one object; its string form is an inventory entry."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: Manifest) -> ObjectRef:
        meta = manifest["metadata"]
        return cls(
            manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"]
        )

    @classmethod
    def parse(cls, entry: str) -> ObjectRef:
        api_version, kind, namespace, name = entry.rsplit("|", 3)
        return cls(api_version, kind, namespace, name)

    def __str__(self) -> str:
        return f"{self.api_version}|{self.kind}|{self.namespace}|{self.name}"


def is_not_found(error: BaseException) -> bool:
    """404: no such object, or no such kind at all (its CRD removed), which the API server
    answers in plain text and lightkube leaves an httpx error."""
    if isinstance(error, ApiError):
        return error.status.code == 404
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 404


def is_conflict(error: ApiError) -> bool:
    """409: the name is taken (a create), or the object changed since the version we sent."""
    return error.status.code == 409


def is_forbidden(error: BaseException) -> bool:
    return isinstance(error, ApiError) and error.status.code == 403


def is_unreachable(error: BaseException) -> bool:
    """The API server was not there to answer (down, restarting, behind a proxy that could not
    reach it), as opposed to answering no or "slow down" (429): worth retrying once it is back."""
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, ApiError) and (error.status.code or 0) in (502, 503, 504)


def without_managed_fields(body: Mapping[str, Any]) -> Manifest:
    """A body to keep in memory: managedFields, often its bulk, is nothing we read."""
    meta = {k: v for k, v in body.get("metadata", {}).items() if k != "managedFields"}
    return {**body, "metadata": meta}


# A body kept for a while (the listing, the world's Deployments, service Secrets): compact
# JSON without managedFields. A Deployment takes about 3 KiB so against 16 KiB as Python
# objects; msgspec packs it in about 40 µs and reads it back in about 10 µs.
Packed = bytes


def packed(body: Mapping[str, Any]) -> Packed:
    return msgspec.json.encode(without_managed_fields(body))


def unpacked(data: Packed) -> Manifest:
    body: Manifest = msgspec.json.decode(data)
    return body


def _resource(api_version: str, kind: str) -> Any:
    # lightkube's overloads are keyed on concrete resource classes; ours are chosen at run time.
    return resource_registry.load(api_version, kind)


def _scope(res: Any, namespace: str | None) -> dict[str, Any]:
    """lightkube's namespace argument: one namespace or (``None``) every one, for a namespaced
    kind only."""
    if issubclass(res, NamespacedResource | NamespacedResourceG):
        return {"namespace": namespace or "*"}
    return {}


class _ListMetadata(msgspec.Struct, rename="camel"):
    resource_version: str = ""
    continue_: str = ""  # the next page's token; empty on the last page


class _ListPage(msgspec.Struct):
    metadata: _ListMetadata
    items: list[msgspec.Raw] | None = None


_LIST_PAGE = msgspec.json.Decoder(_ListPage)


def _as_dict(obj: Any) -> Manifest:
    data: Manifest = obj.to_dict()
    return data


# Kinds a pass never lists everywhere: the operator's ClusterRole grants no list on Secrets
# (every Secret of the cluster is a power it does not need), so they are listed per environment
# namespace, where a RoleBinding of its own allows it; a listener on a shared Gateway is an
# inventory entry, not a kind (``listeners``), and the Gateway it is on is read by name.
SECRET = ("v1", "Secret")
UNLISTED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {SECRET, (GATEWAY_API_VERSION, GATEWAY_LISTENER_KIND)}
)


class Listing:
    """Bodies read by paged LISTs, each answering one later read of its object in place of a
    GET: a resync pass reads thousands of objects with a few requests (SPEC §9).

    A body is only as fresh as its LIST, so it is dropped once used, once this operator writes
    the object, or when a watch says the object changed; ``clear`` ends it all. Only objects
    found count: a name the LIST did not return may still be taken by an object without our
    label, so its read goes to the server."""

    def __init__(self) -> None:
        # Packed and compressed: a pass lists every object of every service at once (15018 at
        # 1000 services x 3 environments, 20 MiB packed), and reads each once.
        self._bodies: dict[ObjectRef, bytes] = {}

    def __len__(self) -> int:
        return len(self._bodies)

    def add(self, body: Mapping[str, Any]) -> None:
        self._bodies[ObjectRef.of(dict(body))] = zlib.compress(packed(body), LISTING_COMPRESSION)

    def take(self, ref: ObjectRef) -> Manifest | None:
        found = self._bodies.pop(ref, None)
        return None if found is None else unpacked(zlib.decompress(found))

    def drop(self, ref: ObjectRef) -> None:
        self._bodies.pop(ref, None)

    def clear(self) -> None:
        self._bodies = {}  # a new dict: the old one's memory is freed at once


class KubeApi:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.listing = Listing()

    @classmethod
    def from_environment(cls) -> KubeApi:
        """$KUBECONFIG / ~/.kube/config, or the in-cluster service account."""
        return cls.from_config(KubeConfig.from_env())

    @classmethod
    def from_kubeconfig(cls, path: str) -> KubeApi:
        return cls.from_config(KubeConfig.from_file(path))

    @classmethod
    def from_config(cls, config: KubeConfig) -> KubeApi:
        single = config.get()
        if single is None or single.user is None:
            raise ConfigError("the kubeconfig has no current context with a user")
        # lightkube takes no pool limits, only a transport: ours verifies as lightkube would.
        verify = verify_cluster(single.cluster, single.user, single.abs_file)
        transport = api_transport(verify, API_CONNECTIONS)
        return cls(AsyncClient(config, field_manager=FIELD_MANAGER, transport=transport))

    async def close(self) -> None:
        await self.client.close()

    async def get(self, ref: ObjectRef) -> Manifest | None:
        if (listed := self.listing.take(ref)) is not None:
            return listed
        try:
            obj = await self.client.get(
                _resource(ref.api_version, ref.kind), ref.name, namespace=ref.namespace or None
            )
        except CLIENT_ERRORS as error:
            if is_not_found(error):
                return None
            raise
        return _as_dict(obj)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> list[Manifest]:
        """Objects of one kind, in one namespace or (``None``) everywhere."""
        return [body async for body in self.each(api_version, kind, namespace, labels)]

    async def each(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> AsyncIterator[Manifest]:
        """``list``, one object at a time: a caller that keeps only part of each never holds
        them all."""
        token: str | None = None
        while True:
            page = await self._list_page(
                api_version, kind, namespace, labels, LIST_PAGE_SIZE, token
            )
            for raw in page.items or ():
                # Objects in a list of a built-in kind do not say what they are.
                yield {"apiVersion": api_version, "kind": kind, **msgspec.json.decode(raw)}
            if not (token := page.metadata.continue_):
                return

    async def _list_page(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: dict[str, str] | None,
        limit: int,
        token: str | None,
    ) -> _ListPage:
        """One page of a LIST, its objects left undecoded: each is decoded on its own, so that
        at most one of them is a Python object at a time (lightkube's list makes a typed model
        of each object of the page, and a dict of each model: 58 MiB at once in the restart
        with 1000 services x 3 environments)."""
        request = self._collection_request(
            api_version, kind, namespace, labels, {"limit": limit, "continue": token}
        )
        response = await self._send(request)
        return _LIST_PAGE.decode(response.content)

    async def _send(self, request: Any) -> httpx.Response:
        """A request lightkube built, sent by us; an error status raises as lightkube's do."""
        generic = self.client._client
        response: httpx.Response = await generic.send(generic.build_adapter_request(request))  # type: ignore[no-untyped-call]
        generic.raise_for_status(response)  # type: ignore[no-untyped-call]
        return response

    def _collection_request(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None,
        params: Mapping[str, Any],
        watch: bool = False,
    ) -> Any:
        """A LIST or WATCH of one kind, built by lightkube's own client (the URL, its auth and
        its transport) but sent by us: lightkube would decode the answer into typed models."""
        res = _resource(api_version, kind)
        selector = build_selector(dict(labels or {})) or None
        return self.client._client.prepare_request(
            "list",
            res=res,
            **_scope(res, namespace),
            watch=watch,
            params={"labelSelector": selector, **params},
        )

    async def list_into_listing(
        self,
        kinds: Iterable[tuple[str, str]],
        labels: dict[str, str],
        namespace: str | None = None,
    ) -> int:
        """Add to the listing every object of ``kinds`` that has ``labels``, in ``namespace`` or
        (``None``) everywhere, page by page; returns how many were listed."""
        listed = 0
        for api_version, kind in kinds:
            async for body in self.each(api_version, kind, namespace, labels):
                self.listing.add(body)
                listed += 1
        return listed

    async def collection_version(self, api_version: str, kind: str, labels: dict[str, str]) -> str:
        """The version of the collection now: a watch from it tells every later change. One
        object is listed (at most) for it, not all of them."""
        page = await self._list_page(api_version, kind, None, labels, 1, None)
        return page.metadata.resource_version

    async def watch(
        self,
        api_version: str,
        kind: str,
        labels: dict[str, str],
        resource_version: str | None,
        server_timeout: int,
    ) -> AsyncIterator[tuple[str, Manifest]]:
        """The events of one watch request everywhere, as plain bodies (``msgspec`` straight to
        dicts: lightkube's typed models cost several times the CPU), until the server ends it.
        Without ``resource_version`` every object comes first, as ADDED. BOOKMARK events carry
        only a version: the server sends them so that a reconnect need not start from an old
        one. An ERROR event, a 410 Gone included, raises ``ApiError``."""
        generic = self.client._client
        request = self._collection_request(
            api_version,
            kind,
            None,
            labels,
            {
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": server_timeout,
            },
            watch=True,
        )
        # Uncompressed: the API server's gzip writer holds a watch's later events back (after a
        # start with every object, none came at all).
        request.headers = {"Accept-Encoding": "identity"}
        # The server ends the watch in time: a read that waits longer found a dead connection.
        request.timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS, read=server_timeout + 30)
        sent = generic.build_adapter_request(request)
        response: httpx.Response = await generic.send(sent, stream=True)  # type: ignore[no-untyped-call]
        try:
            if response.is_error:
                await response.aread()
                raise ApiError(request=response.request, response=response)
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = msgspec.json.decode(line)
                if event["type"] == "ERROR":
                    raise ApiError(
                        status=cast(meta_v1.Status, meta_v1.Status.from_dict(event["object"]))
                    )
                yield event["type"], event["object"]
        finally:
            await response.aclose()

    async def username(self) -> str | None:
        """Who the API server takes us for (a SelfSubjectReview, which anyone may ask)."""
        review = await self.client.create(SelfSubjectReview())
        user = review.status.userInfo if review.status else None
        return str(user.username) if user is not None and user.username else None

    async def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER) -> Manifest:
        """Server-side apply as ``bandsy-operator``, forcing: these fields are ours."""
        ref = ObjectRef.of(manifest)
        self.listing.drop(ref)
        res = _resource(ref.api_version, ref.kind)
        return await self._apply(res, ref.name, ref.namespace or None, manifest, field_manager)

    async def create_by_apply(self, manifest: Manifest) -> Manifest | None:
        """Server-side apply that only creates: the object is made with our field ownership, or,
        when an object of that name exists (anyone's), nothing is written and None returned.

        The apply carries a resourceVersion no stored object has, so the API server refuses it
        with a conflict if the object exists (kubernetes/kubernetes#106745 made this hold for
        every kind): one request instead of a GET and an apply for an object we expect to be new.
        """
        conditional = {
            **manifest,
            "metadata": {**manifest["metadata"], "resourceVersion": NEVER_STORED_VERSION},
        }
        try:
            return await self.apply(conditional)
        except ApiError as error:
            if is_conflict(error):
                return None
            raise

    async def apply_status(self, kind: str, name: str, status: dict[str, Any]) -> Manifest:
        """Server-side apply of a custom resource's status subresource."""
        res = BandsyServiceResource if kind == SERVICE_KIND else BandsyEnvironmentResource
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
            "status": status,
        }
        return await self._apply(res.Status, name, None, body, FIELD_MANAGER)

    async def _apply(
        self,
        res: Any,
        name: str,
        namespace: str | None,
        body: Mapping[str, Any],
        field_manager: str,
    ) -> Manifest:
        """A forced server-side apply, built by lightkube's own client but sent by us: its
        ``patch`` takes no field validation, and would decode the answer into a typed model
        only for us to turn it into a dict again."""
        request = self.client._client.prepare_request(
            "patch",
            res=res,
            obj=body,
            name=name,
            namespace=namespace,
            headers={"Content-Type": PatchType.APPLY.value},
            params={
                "force": "true",
                "fieldManager": field_manager,
                "fieldValidation": APPLY_FIELD_VALIDATION,
            },
        )
        response = await self._send(request)
        applied: Manifest = msgspec.json.decode(response.content)
        return applied

    async def set_finalizers(
        self, kind: str, meta: Mapping[str, Any], finalizers: Sequence[str]
    ) -> Manifest:
        """Replace the finalizers of one of our custom resources, read at ``meta``'s version: a
        merge patch replaces the whole list, so a newer version is a conflict (409), not lost."""
        res = BandsyServiceResource if kind == SERVICE_KIND else BandsyEnvironmentResource
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}
        obj = await self.client.patch(res, meta["name"], body, patch_type=PatchType.MERGE)
        return _as_dict(obj)

    async def delete(self, ref: ObjectRef) -> bool:
        """Delete with background propagation; False when it was already gone."""
        self.listing.drop(ref)
        try:
            await self.client.delete(
                _resource(ref.api_version, ref.kind),
                ref.name,
                namespace=ref.namespace or None,
                cascade=CascadeType.BACKGROUND,
            )
        except CLIENT_ERRORS as error:
            if is_not_found(error):
                return False
            raise
        return True

    async def log_tail(self, namespace: str, pod: str, lines: int) -> str:
        """The last ``lines`` lines of a pod's (only) container."""
        chunks = [
            chunk async for chunk in self.client.log(pod, namespace=namespace, tail_lines=lines)
        ]
        return "".join(chunks)

    async def create(self, manifest: Manifest) -> Manifest:
        self.listing.drop(ObjectRef.of(manifest))
        obj = await self.client.create(codecs.from_dict(manifest))
        return _as_dict(obj)
