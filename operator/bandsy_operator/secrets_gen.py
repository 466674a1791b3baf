"""Random secret values: letters and digits only, so they survive any env-file or URL context."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_letters + string.digits


def random_secret(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
