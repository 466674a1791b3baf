"""Client-side SCRAM-SHA-256 verifiers (RFC 5802 / RFC 7677), in PostgreSQL's stored form.

PostgreSQL accepts a pre-hashed verifier in ``ALTER ROLE … PASSWORD``; sending it instead of the
password keeps the plaintext out of the server's statement log. asyncpg has no helper for this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict

ITERATIONS = 4096
SALT_BYTES = 16
# Every reconcile checks every account, and the 4096 PBKDF2 rounds were 7 % of the operator's CPU
# in a converge: answers are remembered per (password digest, verifier), those of the verifiers
# made here from the start; a verifier changed by hand is a new key. The plaintext is not kept.
_KNOWN_ANSWERS: OrderedDict[tuple[bytes, str], bool] = OrderedDict()
_KNOWN_ANSWERS_MAX = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_sha256_verifier(
    password: str, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.

    Passwords here are ASCII letters and digits, for which SASLprep is the identity."""
    fresh = salt is None
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    verifier = f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"
    if fresh:  # about to be set on a role: the next reconcile's check need not redo the rounds
        _remember(_key(password, verifier), True)
    return verifier


def verifier_matches(password: str, verifier: str) -> bool:
    """Whether ``password`` logs in against a stored ``SCRAM-SHA-256$…`` verifier: the check the
    server does at login, without a login."""
    key = _key(password, verifier)
    if key in _KNOWN_ANSWERS:
        _KNOWN_ANSWERS.move_to_end(key)
        return _KNOWN_ANSWERS[key]
    answer = _compute_match(password, verifier)
    _remember(key, answer)
    return answer


def _key(password: str, verifier: str) -> tuple[bytes, str]:
    return hashlib.sha256(password.encode("utf-8")).digest(), verifier


def _remember(key: tuple[bytes, str], answer: bool) -> None:
    _KNOWN_ANSWERS[key] = answer
    if len(_KNOWN_ANSWERS) > _KNOWN_ANSWERS_MAX:
        _KNOWN_ANSWERS.popitem(last=False)


def _compute_match(password: str, verifier: str) -> bool:
    try:
        method, rest = verifier.split("$", 1)
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        expected = scram_sha256_verifier(password, base64.b64decode(salt), int(iterations))
    except ValueError:  # not a SCRAM verifier (md5, or malformed)
        return False
    return hmac.compare_digest(expected.rsplit("$", 1)[1], keys)
