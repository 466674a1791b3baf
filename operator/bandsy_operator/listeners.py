"""Listeners the operator adds to shared Gateways (``builders.exposure.build_listener``).

The Gateway is the platform team's: the operator neither owns nor deletes it. Each listener is
server-side applied by a field manager of its own, so it is listed apart from the others the
Gateway has, and taking it away is an empty apply by that manager (the API server removes what
only that manager set). The service's inventory lists it as a ``GatewayListener`` entry, so a
revoked exposure takes it off like any object it no longer wants.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import naming
from .apply import is_subset
from .builders.meta import content_hash
from .constants import GATEWAY_API_VERSION, GATEWAY_KIND, GATEWAY_LISTENER_KIND
from .kube import KubeApi, Manifest, ObjectRef
from .observation import ReadMode


def listener_ref(listener: Manifest) -> ObjectRef:
    """The inventory entry of a listener ``build_listener`` states."""
    meta = listener["metadata"]
    name = listener["spec"]["listeners"][0]["name"]
    return ObjectRef(
        GATEWAY_API_VERSION, GATEWAY_LISTENER_KIND, meta["namespace"], f"{meta['name']}/{name}"
    )


def listener_of(ref: ObjectRef) -> tuple[ObjectRef, str]:
    """The Gateway a listener entry is on, and the listener's name."""
    gateway, _, listener = ref.name.partition("/")
    return ObjectRef(GATEWAY_API_VERSION, GATEWAY_KIND, ref.namespace, gateway), listener


def is_listener(ref: ObjectRef) -> bool:
    return ref.kind == GATEWAY_LISTENER_KIND


def _listeners(gateway: Manifest) -> dict[str, Any]:
    return {item["name"]: item for item in (gateway.get("spec") or {}).get("listeners") or []}


class GatewayListeners:
    """Applies and takes away the operator's listeners; remembers what it last found in place,
    so a reconcile that trusts its memory does not read the Gateway again."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._confirmed: dict[ObjectRef, str] = {}

    async def gateway_exists(self, listener: Manifest, mode: ReadMode) -> bool:
        """Whether the listener's Gateway is there to take it (and the Certificate its
        namespace would hold): remembered while trusted, else read."""
        ref = listener_ref(listener)
        if mode is ReadMode.TRUSTED and ref in self._confirmed:
            return True
        return await self.api.get(listener_of(ref)[0]) is not None

    async def ensure(self, listener: Manifest, mode: ReadMode) -> bool:
        """The listener is on its Gateway as stated; False when there is no such Gateway
        (an apply would try to create one, which is not ours to make)."""
        ref, digest = listener_ref(listener), content_hash(listener)
        if mode is ReadMode.TRUSTED and self._confirmed.get(ref) == digest:
            return True
        gateway_ref, name = listener_of(ref)
        live = await self.api.get(gateway_ref)
        if live is None:
            self._confirmed.pop(ref, None)
            return False
        wanted = listener["spec"]["listeners"][0]
        if not is_subset(wanted, _listeners(live).get(name)):
            await self.api.apply(listener, naming.listener_field_manager(name))
        self._confirmed[ref] = digest
        return True

    async def release(self, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
        """Take these listeners off their Gateways; returns those that were there."""
        released = []
        for ref in refs:
            self._confirmed.pop(ref, None)
            gateway_ref, name = listener_of(ref)
            live = await self.api.get(gateway_ref)
            if live is None or name not in _listeners(live):
                continue
            empty = {
                "apiVersion": gateway_ref.api_version,
                "kind": gateway_ref.kind,
                "metadata": {"name": gateway_ref.name, "namespace": gateway_ref.namespace},
            }
            await self.api.apply(empty, naming.listener_field_manager(name))
            released.append(ref)
        return released
