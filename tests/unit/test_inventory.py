"""Inventory entries (pure)."""

from __future__ import annotations

from bandsy_operator import inventory
from bandsy_operator.kube import ObjectRef


def test_an_entry_round_trips_and_tells_its_kind() -> None:
    ref = ObjectRef("apps/v1", "Deployment", "develop", "web")
    (entry,) = inventory.serialize({"develop": [ref]})
    assert entry == "develop|apps/v1|Deployment|develop|web"
    assert inventory.parse([entry]) == {"develop": frozenset({ref})}
    assert inventory.type_of(entry) == ("apps/v1", "Deployment")
    cluster_scoped = inventory.serialize({"develop": [ObjectRef("v1", "Namespace", "", "dev")]})
    assert inventory.type_of(cluster_scoped[0]) == ("v1", "Namespace")
