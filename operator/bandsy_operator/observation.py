"""How a reconcile knows the current state of what it acts on: the one rule of trust.

A reconcile runs in one of two read modes. Start-up, the periodic resync and recovery read every
object and credential from the servers (``LIVE``), so drift and hand edits are found. A reconcile
that a watch event triggered trusts what this operator last wrote or read (``TRUSTED``): an object
it recorded (in an inventory or an account list) is taken from memory, and one it never recorded
is presumed absent and created without a read. Either presumption that turns out wrong is noticed
by the server (a conflict) and the reconcile runs again in ``LIVE`` mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

Manifest = dict[str, Any]


class ReadMode(Enum):
    LIVE = "live"
    TRUSTED = "trusted"


class Basis(Enum):
    """Where an object's state comes from, before anything is known of it."""

    READ = "read"  # ask the server now
    REMEMBERED = "remembered"  # this operator's memory of it, or a read when it has none
    PRESUMED_ABSENT = "presumed-absent"  # never recorded by us: create it without a read


def basis(mode: ReadMode, recorded: bool) -> Basis:
    """``recorded``: the object (or account) is in what this operator wrote down before."""
    if mode is ReadMode.LIVE:
        return Basis.READ
    return Basis.REMEMBERED if recorded else Basis.PRESUMED_ABSENT


@dataclass(frozen=True)
class Observed:
    """An object as a reconcile found it: its body (None: absent) and where that came from."""

    body: Manifest | None
    basis: Basis

    @property
    def resource_version(self) -> str | None:
        if self.body is None:
            return None
        version = self.body.get("metadata", {}).get("resourceVersion")
        return str(version) if version else None
