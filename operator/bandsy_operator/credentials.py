"""The central credential store: one Secret per role and server, in the operator's namespace.

Environments get projections (``<svc>-postgres`` …); the canonical password lives only here. A
password is stored *before* any server learns it, so after a crash at any point the stored
password is the one the next reconcile makes work.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from lightkube.core.exceptions import ApiError

from . import naming
from .constants import FIELD_MANAGER, GROUP, MANAGED_BY_LABEL
from .kube import KubeApi, Manifest, ObjectRef
from .secrets_gen import random_secret

PASSWORD_LENGTH = 40
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


class CredentialStore:
    """Remembers each credential it wrote or read. A reconcile a watch event triggered may use
    that memory instead of reading the Secret again (``cached=True``), as the applier trusts what
    it confirmed; the periodic resync reads, so a Secret edited by hand is still taken then."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._known: dict[str, Credential] = {}  # by Secret name

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
        self, backend: str, server: str, user: str, *, cached: bool = False
    ) -> Credential | None:
        ref = self._ref(backend, server, user)
        if cached and (known := self._known.get(ref.name)) is not None:
            return known
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
        self,
        backend: str,
        server: str,
        user: str,
        *,
        likely_new: bool = False,
        cached: bool = False,
    ) -> Credential:
        """``likely_new``: try the create first, which saves a read for a new account."""
        if not likely_new:
            found = await self.get(backend, server, user, cached=cached)
            if found is not None:
                return found
        fresh = Credential(backend, server, user, random_secret(PASSWORD_LENGTH), "")
        try:
            await self.api.create(self._manifest(fresh))
        except ApiError as error:
            if error.status.code != 409:  # another worker created it first: use theirs
                raise
            found = await self.get(backend, server, user)
            assert found is not None
            return found
        return self._remember(fresh)

    async def rotate(self, credential: Credential, token: str) -> Credential:
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
