"""Inventory: every object the operator created for a custom resource, grouped by environment.

Stored in ``status.inventory`` as ``<env>|<apiVersion>|<kind>|<namespace>|<name>`` entries. It is
written *before* new objects are applied (as the union of old and new), so an operator killed
mid-way never leaves an object it does not know about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .kube import ObjectRef

Inventory = dict[str, frozenset[ObjectRef]]


def parse(entries: Iterable[str]) -> Inventory:
    grouped: dict[str, set[ObjectRef]] = {}
    for entry in entries:
        env, _, ref = entry.partition("|")
        grouped.setdefault(env, set()).add(ObjectRef.parse(ref))
    return {env: frozenset(refs) for env, refs in grouped.items()}


def recorded(status: Mapping[str, Any]) -> Inventory:
    """The inventory a custom resource's status records."""
    return parse(status.get("inventory") or [])


def type_of(entry: str) -> tuple[str, str]:
    """The apiVersion and kind of an entry without parsing all of it (a scrape counts
    thousands, a pass lists by them)."""
    _, api_version, kind, _ = entry.split("|", 3)
    return api_version, kind


def serialize(inventory: Mapping[str, Iterable[ObjectRef]]) -> list[str]:
    return sorted(f"{env}|{ref}" for env, refs in inventory.items() for ref in refs)


def union(a: Inventory, b: Inventory) -> Inventory:
    return {env: a.get(env, frozenset()) | b.get(env, frozenset()) for env in a.keys() | b.keys()}


def refs(inventory: Inventory) -> frozenset[ObjectRef]:
    """Every object, whichever environment it is listed under."""
    return frozenset().union(*inventory.values())


def stale(previous: Inventory, current: Inventory) -> set[ObjectRef]:
    """Objects in ``previous`` that ``current`` no longer wants (in any environment)."""
    wanted = set().union(*current.values()) if current else set()
    return {ref for refs in previous.values() for ref in refs if ref not in wanted}
