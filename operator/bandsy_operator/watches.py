"""Watches of the operator's objects: its custom resources, and the Deployments, pods and Jobs
it labels as its own.

kopf keeps each object's events in a queue of their own until one of its workers takes them,
so its start-up listing of every Deployment was decoded and held at once: 74 MiB of the
operator's peak with 1000 services x 3 environments. Here each event goes to its handler as it
is read (the handlers only note news and queue a reconcile, they never wait), and a watch of
what start-up has just read starts at the collection's version instead of with every object.
kopf only runs the start-up and clean-up handlers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from lightkube.core.exceptions import ApiError

from .constants import FIELD_MANAGER, MANAGED_BY_LABEL
from .kube import CLIENT_ERRORS, KubeApi, Manifest

log = logging.getLogger(__name__)
# Only ours: the API server filters by label, so nobody else's objects are sent at all.
OWNED = {MANAGED_BY_LABEL: FIELD_MANAGER}
# The API server ends a watch after this long; the next one goes on from the last version seen.
SERVER_TIMEOUT_SECONDS = 300
# Between attempts while the API server does not answer.
RETRY_SECONDS = 2.0
GONE = 410
# A connection cut in the middle of an event leaves a line that is not JSON.
WATCH_ERRORS: tuple[type[Exception], ...] = (*CLIENT_ERRORS, msgspec.DecodeError)


class Since(enum.Enum):
    """Where a watch starts when the operator does."""

    # Changes after the collection's version of that moment: what is there already is read
    # by the reconciles that start-up queues.
    NOW = "now"
    # Every object first, as ADDED, then the changes: what is there is itself news.
    EVERYTHING = "everything"


EventHandler = Callable[[str, Manifest], None]


@dataclass(frozen=True)
class Watch:
    """One kind's watch everywhere, of the objects with ``labels`` (empty: every object)."""

    api_version: str
    kind: str
    labels: Mapping[str, str]
    since: Since
    handle: EventHandler

    async def starting_version(self, api: KubeApi) -> str | None:
        if self.since is Since.EVERYTHING:
            return None
        return await api.collection_version(self.api_version, self.kind, dict(self.labels))


async def follow(api: KubeApi, watch: Watch, version: str | None) -> None:
    """Hand each event of ``watch`` to its handler, from ``version`` (None: every object first),
    until cancelled. A reconnect goes on from the last version seen, bookmarks included. A
    version the server no longer has (410 Gone: cut off for longer than its history) starts
    again with every object: the changes since are unknown, and the handlers tell news from
    what they knew by resourceVersion."""
    while True:
        try:
            async for event_type, body in api.watch(
                watch.api_version, watch.kind, dict(watch.labels), version, SERVER_TIMEOUT_SECONDS
            ):
                version = str(body["metadata"]["resourceVersion"])
                if event_type != "BOOKMARK":
                    _deliver(watch, event_type, body)
        except ApiError as error:
            if error.status.code != GONE:
                await _retry_later(watch, error)
                continue
            log.info("watch of %ss: version %s expired, reading every one", watch.kind, version)
            version = None
        except WATCH_ERRORS as error:
            await _retry_later(watch, error)


def _deliver(watch: Watch, event_type: str, body: Manifest) -> None:
    try:
        watch.handle(event_type, body)
    except Exception:  # a handler's bug must not end the watch of every other object
        meta = body.get("metadata", {})
        log.exception(
            "%s event of %s %s/%s failed",
            event_type,
            watch.kind,
            meta.get("namespace"),
            meta.get("name"),
        )


async def _retry_later(watch: Watch, error: Exception) -> None:
    log.warning("watch of %ss: %s; again in %.0f s", watch.kind, error, RETRY_SECONDS)
    await asyncio.sleep(RETRY_SECONDS)
