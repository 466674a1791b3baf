"""The central credential store: one Secret per role and server, in the operator's namespace.

Environments get projections (``<svc>-postgres`` …); the canonical password lives only here. A
password is stored *before* any server learns it, so after a crash at any point the stored
password is the one the next reconcile makes work.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections import defaultdict
from dataclasses import dataclass

from lightkube.core.exceptions import ApiError

from . import naming
from .constants import FIELD_MANAGER, GROUP, MANAGED_BY_LABEL
from .kube import KubeApi, Manifest, ObjectRef, is_conflict
from .observation import Basis
from .secrets_gen import random_secret

PASSWORD_LENGTH = 40
HASH_KEY_BYTES = 32
BACKEND_LABEL = f"{GROUP}/backend"
SERVER_ANNOTATION = f"{GROUP}/server"
USER_ANNOTATION = f"{GROUP}/user"
ROTATION_ANNOTATION = f"{GROUP}/rotation"


@dataclass(frozen=True)
class Credential:
    backend: str
    server: str
    user: str
    password: str
    rotation: str  # the rotate-credentials token this password answers

    @property
    def secret_name(self) -> str:
        return naming.credential_secret(self.backend, self.server, self.user)


def _decode(secret: Manifest, key: str) -> str:
    return base64.b64decode((secret.get("data") or {}).get(key, "")).decode()


class HashKeyMissingError(Exception):
    """The operator has not created its config-hash key yet (``bandsyctl render`` only reads)."""


class CredentialStore:
    """Remembers each credential it wrote or read: with the basis ``REMEMBERED`` that memory is
    used instead of reading the Secret again, as the applier trusts what it confirmed; the
    periodic resync reads, so a Secret edited by hand is still taken then."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._known: dict[str, Credential] = {}  # by Secret name
        # One rotation at a time per credential: environments sharing a role rotate it once.
        self._rotations: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def _ref(self, backend: str, server: str, user: str) -> ObjectRef:
        return ObjectRef(
            "v1", "Secret", self.namespace, naming.credential_secret(backend, server, user)
        )

    def _manifest(self, credential: Credential) -> Manifest:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": credential.secret_name,
                "namespace": self.namespace,
                "labels": {MANAGED_BY_LABEL: FIELD_MANAGER, BACKEND_LABEL: credential.backend},
                "annotations": {
                    SERVER_ANNOTATION: credential.server,
                    USER_ANNOTATION: credential.user,
                    ROTATION_ANNOTATION: credential.rotation,
                },
            },
            "data": {
                "username": base64.b64encode(credential.user.encode()).decode(),
                "password": base64.b64encode(credential.password.encode()).decode(),
            },
        }

    def _remember(self, credential: Credential) -> Credential:
        self._known[credential.secret_name] = credential
        return credential

    async def get(
        self, backend: str, server: str, user: str, known: Basis = Basis.READ
    ) -> Credential | None:
        ref = self._ref(backend, server, user)
        if known is Basis.REMEMBERED and (remembered := self._known.get(ref.name)) is not None:
            return remembered
        secret = await self.api.get(ref)
        if secret is None:
            self._known.pop(ref.name, None)
            return None
        annotations = secret["metadata"].get("annotations") or {}
        return self._remember(
            Credential(
                backend,
                server,
                user,
                _decode(secret, "password"),
                annotations.get(ROTATION_ANNOTATION, ""),
            )
        )

    async def get_or_create(
        self, backend: str, server: str, user: str, known: Basis = Basis.READ
    ) -> Credential:
        """A presumed-absent credential is created first, which saves a read when it is new."""
        if known is not Basis.PRESUMED_ABSENT:
            found = await self.get(backend, server, user, known)
            if found is not None:
                return found
        fresh = Credential(backend, server, user, random_secret(PASSWORD_LENGTH), "")
        try:
            await self.api.create(self._manifest(fresh))
        except ApiError as error:
            if not is_conflict(error):  # a conflict: it exists (another worker's): use it
                raise
            found = await self.get(backend, server, user)
            assert found is not None
            return found
        return self._remember(fresh)

    async def rotate(self, credential: Credential, token: str) -> Credential:
        """The credential answering rotation ``token``: a new password once per token, however
        many environments (sharing this role) ask for it concurrently."""
        async with self._rotations[credential.secret_name]:
            current = self._known.get(credential.secret_name, credential)
            if current.rotation == token:
                return current
            return await self._rotate(current, token)

    async def _rotate(self, credential: Credential, token: str) -> Credential:
        rotated = Credential(
            credential.backend,
            credential.server,
            credential.user,
            random_secret(PASSWORD_LENGTH),
            token,
        )
        await self.api.apply(self._manifest(rotated))
        return self._remember(rotated)

    async def forget(self, backend: str, server: str, user: str) -> None:
        ref = self._ref(backend, server, user)
        self._known.pop(ref.name, None)
        await self.api.delete(ref)

    async def config_hash_key(self, *, create: bool) -> bytes:
        """The key of the pods' config hash (``bandsy.app/config-hash``), which must not let
        whoever may read a Deployment test guesses of a secret value against it. Made once by
        the operator (``create``; a restart only reads it); a read-only caller gets
        HashKeyMissingError before that."""
        ref = ObjectRef("v1", "Secret", self.namespace, naming.CONFIG_HASH_KEY_SECRET)
        secret = await self.api.get(ref)
        if secret is None and create:
            # Stored as hex text: whoever reads Secrets here (people, tools) reads text.
            key = secrets.token_hex(HASH_KEY_BYTES).encode()
            manifest: Manifest = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": ref.name,
                    "namespace": self.namespace,
                    "labels": {MANAGED_BY_LABEL: FIELD_MANAGER},
                },
                "data": {"key": base64.b64encode(key).decode()},
            }
            try:
                await self.api.create(manifest)
            except ApiError as error:
                if not is_conflict(error):  # a conflict: another replica made it; read it
                    raise
                secret = await self.api.get(ref)
            else:
                return key
        if secret is None or not (secret.get("data") or {}).get("key"):
            raise HashKeyMissingError(
                f"Secret {self.namespace}/{ref.name} (the config-hash key) does not exist yet: "
                "the operator creates it when it starts"
            )
        return base64.b64decode(secret["data"]["key"])
