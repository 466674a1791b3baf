"""Permission refusals in an operator's log: what says the shipped RBAC lacks something.

The API server words an RBAC refusal as ``... is forbidden: User "<name>" cannot <verb> ...``.
Other refusals also say "forbidden" (a create while a CRD is being deleted: "forbidden: create
not allowed while custom resource definition is terminating") and say nothing about RBAC.
"""

from __future__ import annotations

import re

_DENIAL = re.compile(r'forbidden: User "[^"]*" cannot ', re.IGNORECASE)


def rbac_denials(log: str) -> list[str]:
    return [line for line in log.splitlines() if _DENIAL.search(line)]
