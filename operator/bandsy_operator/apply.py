"""Apply and prune: converge objects with server-side apply, delete only what we own.

A converged object costs no request but the read: we apply only when the live object does not
already carry every field we want (``is_subset``). The applied-hash annotation in every manifest
makes a field we *stopped* setting count as a difference too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .constants import APPLIED_HASH_ANNOTATION, FIELD_MANAGER, MANAGED_BY_LABEL
from .kube import KubeApi, Manifest, ObjectRef

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def _quantity(value: str) -> Decimal | None:
    match = _QUANTITY.match(value)
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except InvalidOperation:
        return None


def _scalars_equal(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    # The API server canonicalises quantities ("0.5" -> "500m", "1024Mi" -> "1Gi").
    if isinstance(desired, str | int) and isinstance(live, str | int):
        a, b = _quantity(str(desired)), _quantity(str(live))
        return a is not None and a == b
    return False


def _is_empty(value: Any) -> bool:
    # The API server omits empty lists and maps (``ingress: []``, a Secret without data).
    return bool(value == [] or value == {})


def is_subset(desired: Any, live: Any) -> bool:
    """Every field of ``desired`` is present with the same value in ``live``."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            is_subset(value, live[key]) if key in live else _is_empty(value)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return _scalars_equal(desired, live)


def is_managed(live: Manifest) -> bool:
    labels = live.get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == FIELD_MANAGER)


@dataclass(frozen=True)
class Applied:
    live: Manifest | None
    changed: bool
    # The object exists without our managed-by label: never ours to modify.
    refused: bool = False
    # Presumed absent, it is there and ours (an inventory lost, say): left as it is, since what
    # was built for it assumed nothing existed. The caller builds again from what it reads.
    existed: bool = False


class Applier:
    """Applies desired manifests and prunes stale inventory entries, concurrently but bounded.

    It remembers the applied-hash of what it last applied or found in place. A reconcile that a
    watch event triggered may trust that memory and skip reading an object whose desired hash
    is unchanged; the periodic resync always reads (``trust_confirmed=False``), so drift is
    still found and repaired within one resync interval."""

    def __init__(self, api: KubeApi, concurrency: int = 8) -> None:
        self.api = api
        self._limit = asyncio.Semaphore(concurrency)
        self._confirmed: dict[ObjectRef, str] = {}

    async def ensure(
        self,
        desired: Manifest,
        live: Manifest | None = None,
        *,
        fetched: bool = False,
        trust_confirmed: bool = False,
        presumed_absent: bool = False,
    ) -> Applied:
        """Make the object match ``desired``; ``fetched`` says ``live`` was already read (None
        then means absent). ``presumed_absent`` (not in the inventory yet): create it without a
        read, one request instead of two when it is indeed new; see ``Applied.existed``."""
        ref = ObjectRef.of(desired)
        digest = (desired["metadata"].get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
        if not fetched and trust_confirmed and digest and self._confirmed.get(ref) == digest:
            return Applied(None, changed=False)
        async with self._limit:
            if not fetched and presumed_absent:
                created = await self.api.create_by_apply(desired)
                if created is not None:
                    if digest:
                        self._confirmed[ref] = digest
                    return Applied(created, changed=True)
            # It exists after all: read it, as it may not be ours to change.
            if not fetched:
                live = await self.api.get(ref)
            if live is not None and not is_managed(live):
                self._confirmed.pop(ref, None)
                return Applied(live, changed=False, refused=True)
            if live is not None and presumed_absent and not fetched:
                return Applied(live, changed=False, existed=True)
            if live is not None and is_subset(desired, live):
                result = Applied(live, changed=False)
            else:
                result = Applied(await self.api.apply(desired), changed=True)
        if digest:
            self._confirmed[ref] = digest
        return result

    async def ensure_all(
        self,
        objects: Sequence[Manifest],
        known: Mapping[ObjectRef, Manifest | None] | None = None,
        *,
        trust_confirmed: bool = False,
        inventory: Set[ObjectRef] | None = None,
    ) -> list[Applied]:
        """Concurrently, but Namespaces first: what lives in them cannot be created before.
        ``known`` holds objects already read (None: absent); objects outside ``inventory`` (what
        was applied before) are presumed new."""
        known = known or {}

        def one(obj: Manifest) -> Awaitable[Applied]:
            ref = ObjectRef.of(obj)
            if ref in known:
                return self.ensure(obj, known[ref], fetched=True)
            return self.ensure(
                obj,
                trust_confirmed=trust_confirmed,
                presumed_absent=inventory is not None and ref not in inventory,
            )

        results: dict[int, Applied] = {}
        for first in (True, False):
            batch = [i for i, obj in enumerate(objects) if (obj["kind"] == "Namespace") == first]
            applied = await asyncio.gather(*(one(objects[i]) for i in batch))
            results.update(zip(batch, applied, strict=True))
        return [results[i] for i in range(len(objects))]

    async def prune(self, stale: Iterable[ObjectRef]) -> list[ObjectRef]:
        """Delete inventory entries we no longer want; objects without our label are left alone."""

        async def prune_one(ref: ObjectRef) -> ObjectRef | None:
            async with self._limit:
                live = await self.api.get(ref)
                if live is None or not is_managed(live):
                    return None
                self._confirmed.pop(ref, None)
                return ref if await self.api.delete(ref) else None

        results = await asyncio.gather(*(prune_one(ref) for ref in sorted(stale)))
        return [ref for ref in results if ref is not None]
