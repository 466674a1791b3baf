"""Leader election (SPEC §12): two replicas, one coordination.k8s.io Lease; only its holder
watches and reconciles.

The protocol is the official client's (``kubernetes.leaderelection`` with its ``LeaseLock``).
Its elector blocks, so it runs in a thread of its own: renewing never waits on the event loop,
and the event loop never waits on it. Around it, and none of it protocol:

- every Lease request has a timeout (the library sets none: one hung request would stall it);
- a watchdog thread ends the process once the last renewal is older than the renew deadline.
  The library notices a retry period later, or never while a request hangs; the standby may
  take over one lease duration after it last saw the Lease change, so ending at the deadline
  leaves ``lease_duration - renew_deadline`` between the last write here and the first there;
- a clean stop releases the Lease (holder cleared), so the standby takes it at its next retry.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes.config as config
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock
from urllib3.exceptions import HTTPError

from .settings import OperatorSettings

log = logging.getLogger(__name__)
# How often the watchdog compares the last renewal with the renew deadline.
WATCHDOG_INTERVAL = 0.25
# The exit status of a leader that could not renew: the Deployment starts it again, as a standby.
LOST_LEASE_EXIT_STATUS = 75


def holder_identity(settings: OperatorSettings) -> str:
    """Unique per process: the pod's name in a cluster, else the host's and a random suffix."""
    return settings.pod_name or f"{socket.gethostname()}-{secrets.token_hex(4)}"


def _api_client() -> client.ApiClient:
    """The service account in a pod, else $KUBECONFIG: lightkube's order (kube.py)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    # One more attempt (a pooled connection the server closed), not urllib3's three: the
    # elector retries every retry period anyway.
    configuration.retries = 1
    return client.ApiClient(configuration)


class _TimedCoordination:
    """The three requests ``LeaseLock`` sends, each bounded by ``timeout`` seconds."""

    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        self._api = client.CoordinationV1Api(api)
        self._timeout = timeout

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        return self._api.read_namespaced_lease(name, namespace, _request_timeout=self._timeout)

    def create_namespaced_lease(self, namespace: str, body: Any) -> Any:
        return self._api.create_namespaced_lease(namespace, body, _request_timeout=self._timeout)

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any) -> Any:
        return self._api.replace_namespaced_lease(
            name=name, namespace=namespace, body=body, _request_timeout=self._timeout
        )


class _Lock(LeaseLock):  # type: ignore[misc]  # the official client has no type hints
    """The official Lease lock, noting when this process last wrote the Lease (the time the
    request was sent: the server stored it later, so the deadline counts from no later than
    the standby's lease duration does) and writing nothing more once released."""

    def __init__(self, name: str, namespace: str, identity: str, timeout: float) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = _TimedCoordination(_api_client(), timeout)
        # Reentrant: release() reads through get(). It also keeps the elector's read-then-write
        # from interleaving with release(), which shares lease_reference with it.
        self._mutex = threading.RLock()
        self.released = False
        self.written_at: float | None = None

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        with self._mutex:
            try:
                found: tuple[bool, Any] = super().get(name, namespace)
            except HTTPError as error:
                # A timeout or a refused connection: the library expects an API error here (it
                # catches only those, and reads .body and .reason), and retries next period.
                return False, ApiException(reason=str(error))
            return found

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return self._write(super().create, name, namespace, election_record)

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return self._write(super().update, name, namespace, updated_record)

    def _write(self, write: Callable[..., bool], *args: Any) -> bool:
        sent = time.monotonic()
        with self._mutex:
            if self.released:
                return False
            try:
                if not write(*args):
                    return False
            except HTTPError as error:
                log.info("writing Lease %s/%s failed: %s", self.namespace, self.name, error)
                return False
        self.written_at = sent
        return True

    def release(self) -> bool:
        """Clear the holder if it is still this process; no write of the elector after this."""
        with self._mutex:
            self.released = True
            found, record = self.get(self.name, self.namespace)
            if not found or record.holder_identity != self.identity:
                return False
            lease = self.lease_reference
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            try:
                self.api_instance.replace_namespaced_lease(self.name, self.namespace, lease)
            except (ApiException, HTTPError) as error:
                log.warning("could not release Lease %s: %s", self.name, error)
                return False
            return True


class Leadership:
    """This process's candidacy for the Lease ``settings.lease_name`` in the operator's
    namespace: ``wait()`` blocks until it leads, ``release()`` hands over on a clean stop."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.identity = holder_identity(settings)
        self.lease = f"{settings.operator_namespace}/{settings.lease_name}"
        self.renew_deadline = settings.lease_renew_deadline
        # Two attempts fit in a renew deadline.
        timeout = settings.lease_renew_deadline / 2
        self._lock = _Lock(settings.lease_name, settings.operator_namespace, self.identity, timeout)
        self._leading = threading.Event()
        self._config = electionconfig.Config(
            self._lock,
            lease_duration=settings.lease_duration,
            renew_deadline=settings.lease_renew_deadline,
            retry_period=settings.lease_retry_period,
            onstarted_leading=self._leading.set,
            onstopped_leading=self._lost,
        )

    def wait(self) -> None:
        """Block until this process holds the Lease; from then on the watchdog guards it."""
        log.info("standby: %s waits for Lease %s", self.identity, self.lease)
        threading.Thread(target=self._elect, name="leader-election", daemon=True).start()
        self._leading.wait()
        threading.Thread(target=self._watch, name="lease-watchdog", daemon=True).start()
        log.info("leading: %s holds Lease %s", self.identity, self.lease)

    def release(self) -> None:
        """After the last write of this process: the standby takes over at its next retry."""
        if self._lock.release():
            log.info("released Lease %s", self.lease)

    def _elect(self) -> None:
        """The elector's thread. Its run() returns only once the Lease is lost (after the
        watchdog would have ended the process) or released; an exception would leave a standby
        that never takes over, or a leader that no longer renews: the process ends either way."""
        try:
            leaderelection.LeaderElection(self._config).run()
        except Exception:
            log.exception("the leader election failed")
        self._lost()

    def _watch(self) -> None:
        while not self._lock.released:
            written_at = self._lock.written_at
            if written_at is not None and time.monotonic() - written_at > self.renew_deadline:
                self._lost()
            time.sleep(WATCHDOG_INTERVAL)

    def _lost(self) -> None:
        """Not renewed in time (or no longer trying): another process may hold the Lease soon,
        so nothing more of this one may be written. Exit at once: a clean-up would write."""
        if self._lock.released:
            return
        log.critical(
            "%s has not renewed Lease %s for %.1f s: exiting so that two operators never write "
            "at once",
            self.identity,
            self.lease,
            self.renew_deadline,
        )
        logging.shutdown()
        os._exit(LOST_LEASE_EXIT_STATUS)
