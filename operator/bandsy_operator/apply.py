"""Apply and prune: converge objects with server-side apply, delete only what we own.

A converged object costs no request but the read: we apply only when the live object does not
already carry every field we want (``converged``). The applied-hash annotation in every manifest
makes a field we *stopped* setting count as a difference too. How much is read first is the
reconcile's choice (``observation``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from lightkube.core.exceptions import ApiError

from .concurrently import all_of
from .constants import (
    APPLIED_HASH_ANNOTATION,
    FIELD_MANAGER,
    HANDOVER_FIELD_MANAGER,
    MANAGED_BY_LABEL,
)
from .kube import KubeApi, Manifest, ObjectRef, is_conflict
from .observation import Basis, Observed, ReadMode, basis

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


# Lists the desired state leaves out because they are empty (the API server stores an empty list
# as absent, and a rendered manifest must say what is stored) but that must stay empty: a rule
# someone adds to one of our NetworkPolicies is drift. Omitting a list from an apply does not
# remove what another field manager put there, so a repair states it empty once.
EXCLUSIVE_LISTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "NetworkPolicy": (("spec", "ingress"), ("spec", "egress")),
}


def _extra_entries(desired: Manifest, live: Manifest) -> list[tuple[str, str]]:
    """Exclusive lists that are empty in ``desired`` but not in ``live``."""
    return [
        (parent, field)
        for parent, field in EXCLUSIVE_LISTS.get(str(desired.get("kind")), ())
        if not (desired.get(parent) or {}).get(field) and (live.get(parent) or {}).get(field)
    ]


# Fields another controller owns once we leave them out: the HPA's replicas. Server-side apply
# resets a field whose only manager stops stating it (replicas would drop to 1), so before that
# apply a second manager applies the live value, and keeps it until the other controller writes.
HANDED_OVER: Mapping[str, tuple[tuple[str, str], ...]] = {"Deployment": (("spec", "replicas"),)}


def handover(desired: Manifest, live: Manifest | None) -> Manifest | None:
    """What the handover manager applies before ``desired`` (None: nothing to hand over)."""
    if live is None:
        return None
    fields = [
        (parent, field)
        for parent, field in HANDED_OVER.get(str(desired.get("kind")), ())
        if field not in (desired.get(parent) or {}) and field in (live.get(parent) or {})
    ]
    if not fields:
        return None
    meta = live["metadata"]
    body: Manifest = {
        "apiVersion": desired["apiVersion"],
        "kind": desired["kind"],
        # Only if it still holds the value read: a scaling in between is not undone.
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
    }
    for parent, field in fields:
        body.setdefault(parent, {})[field] = live[parent][field]
    return body


def converged(desired: Manifest, live: Manifest) -> bool:
    """The live object carries every desired field, and nothing in our exclusive lists."""
    return is_subset(desired, live) and not _extra_entries(desired, live)


def repair(desired: Manifest, live: Manifest | None) -> Manifest:
    """What to apply so that ``live`` becomes ``desired``: exclusive lists someone filled in
    are stated empty, which takes them over and clears them."""
    extra = _extra_entries(desired, live) if live is not None else []
    if not extra:
        return desired
    fixed = {**desired}
    for parent, field in extra:
        fixed[parent] = {**fixed.get(parent, {}), field: []}
    return fixed


@dataclass(frozen=True)
class Applied:
    live: Manifest | None
    changed: bool
    # The object exists without our managed-by label: never ours to modify.
    refused: bool = False
    # Not as this reconcile presumed: there although presumed absent (an inventory lost, say), or
    # changed since it was read (the apply's resourceVersion precondition failed). Nothing was
    # written: what was built from the presumption may be wrong, so the caller builds again from
    # a live read.
    outdated: bool = False


Known = Basis | Observed


class Applier:
    """Applies desired manifests and prunes stale inventory entries, concurrently but bounded.

    It remembers the applied-hash of what it last applied or found in place: an object whose
    basis is ``REMEMBERED`` and whose desired hash is unchanged is not read again (see
    ``observation``)."""

    def __init__(self, api: KubeApi, concurrency: int = 8) -> None:
        self.api = api
        self._limit = asyncio.Semaphore(concurrency)
        self._confirmed: dict[ObjectRef, str] = {}

    async def observe(
        self, ref: ObjectRef, known: Basis, remembered: Manifest | None = None
    ) -> Observed:
        """An object a build depends on, found as ``known`` says (``remembered``: this
        operator's memory of it)."""
        if known is Basis.PRESUMED_ABSENT:
            return Observed(None, known)
        if known is Basis.REMEMBERED and remembered is not None:
            return Observed(remembered, known)
        return Observed(await self.api.get(ref), Basis.READ)

    async def ensure(self, desired: Manifest, known: Known) -> Applied:
        """Make the object match ``desired``. A ``resourceVersion`` in ``desired`` is a
        precondition: the apply happens only if the object is still the one read."""
        ref = ObjectRef.of(desired)
        digest = (desired["metadata"].get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
        if known is Basis.REMEMBERED and digest and self._confirmed.get(ref) == digest:
            return Applied(None, changed=False)
        async with self._limit:
            if known is Basis.PRESUMED_ABSENT or (
                isinstance(known, Observed)
                and known.basis is Basis.PRESUMED_ABSENT
                and known.body is None
            ):
                result = await self._create(desired, ref)
            else:
                live = known.body if isinstance(known, Observed) else await self.api.get(ref)
                result = await self._converge(desired, live)
        if result.refused or result.outdated:
            self._confirmed.pop(ref, None)
        elif digest:
            self._confirmed[ref] = digest
        return result

    async def _create(self, desired: Manifest, ref: ObjectRef) -> Applied:
        """One request for an object that is indeed new; the name taken is read, as it may not
        be ours to change and what was built assumed nothing existed."""
        created = await self.api.create_by_apply(desired)
        if created is not None:
            return Applied(created, changed=True)
        live = await self.api.get(ref)
        if live is not None and not is_managed(live):
            return Applied(live, changed=False, refused=True)
        return Applied(live, changed=False, outdated=True)

    async def _converge(self, desired: Manifest, live: Manifest | None) -> Applied:
        if live is not None and not is_managed(live):
            return Applied(live, changed=False, refused=True)
        if live is not None and converged(desired, live):
            return Applied(live, changed=False)
        try:
            if (handing := handover(desired, live)) is not None:
                await self.api.apply(handing, HANDOVER_FIELD_MANAGER)
            return Applied(await self.api.apply(repair(desired, live)), changed=True)
        except ApiError as error:
            if is_conflict(error) and (handing or desired["metadata"].get("resourceVersion")):
                return Applied(live, changed=False, outdated=True)
            raise

    async def ensure_all(
        self,
        objects: Sequence[Manifest],
        mode: ReadMode,
        recorded: Set[ObjectRef],
        observed: Mapping[ObjectRef, Observed] | None = None,
    ) -> list[Applied]:
        """Concurrently, but Namespaces first: what lives in them cannot be created before.
        ``observed``: objects this reconcile already found; the others get the basis ``mode``
        gives them (``recorded``: what was applied before, the inventory)."""
        observed = observed or {}

        def one(obj: Manifest) -> Awaitable[Applied]:
            ref = ObjectRef.of(obj)
            return self.ensure(obj, observed.get(ref) or basis(mode, ref in recorded))

        results: dict[int, Applied] = {}
        for first in (True, False):
            batch = [i for i, obj in enumerate(objects) if (obj["kind"] == "Namespace") == first]
            applied = await all_of(*(one(objects[i]) for i in batch))
            results.update(zip(batch, applied, strict=True))
        return [results[i] for i in range(len(objects))]

    def forget(self, refs: Iterable[ObjectRef]) -> None:
        """Objects deleted by others (the garbage collector): not confirmed any more."""
        for ref in refs:
            self._confirmed.pop(ref, None)

    async def prune(self, stale: Iterable[ObjectRef]) -> list[ObjectRef]:
        """Delete inventory entries we no longer want; objects without our label are left alone."""

        async def prune_one(ref: ObjectRef) -> ObjectRef | None:
            async with self._limit:
                live = await self.api.get(ref)
                if live is None or not is_managed(live):
                    return None
                self._confirmed.pop(ref, None)
                return ref if await self.api.delete(ref) else None

        results = await all_of(*(prune_one(ref) for ref in sorted(stale)))
        return [ref for ref in results if ref is not None]
