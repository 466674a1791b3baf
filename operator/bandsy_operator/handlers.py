"""kopf wiring: thin handlers that delegate to the reconcilers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .constants import FINALIZER, STORAGE_PREFIX

log = logging.getLogger(__name__)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    # Our own Events mark transitions; kopf's per-handler success events are noise.
    settings.posting.level = logging.WARNING
    log.info("started")
