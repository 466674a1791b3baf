"""API group, labels, annotations and other names shared by every module."""

from __future__ import annotations

from typing import Final

GROUP: Final = "bandsy.app"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
FIELD_MANAGER: Final = "bandsy-operator"
FINALIZER: Final = f"{GROUP}/finalizer"
STORAGE_PREFIX: Final = GROUP
