"""Leader election's settings and the standby's health endpoint, without an API server (the
election itself runs against the real one: tests/integration/test_high_availability.py)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from kubernetes.leaderelection import electionconfig

from bandsy_dev.procs import free_port
from bandsy_operator.leadership import holder_identity
from bandsy_operator.settings import OperatorSettings
from bandsy_operator.standby import HEALTH_PATH, serving_health

# SPEC §12: a SIGKILLed leader is replaced within 15 s.
REPLACED_WITHIN = 15.0


def test_the_default_durations_replace_a_killed_leader_in_time_and_never_overlap() -> None:
    s = OperatorSettings()
    # The standby sees the last renewal up to a retry period late and retries a period apart.
    worst_takeover = s.lease_duration + 2 * s.lease_retry_period
    assert worst_takeover <= REPLACED_WITHIN - 3  # seconds left for the new leader's start
    # Between a lost leader's exit and the earliest takeover: its exit, a slow request.
    assert s.lease_duration - s.lease_renew_deadline >= 2
    # The official elector accepts them (it ends the process on ones it refuses).
    config = electionconfig.Config(
        object(),
        s.lease_duration,
        s.lease_renew_deadline,
        s.lease_retry_period,
        onstarted_leading=lambda: None,
        onstopped_leading=None,
    )
    assert config.retry_period == s.lease_retry_period


def test_leader_election_settings_from_the_environment() -> None:
    s = OperatorSettings.from_env(
        {
            "BANDSY_LEADER_ELECTION": "False",
            "BANDSY_LEASE_NAME": "other",
            "BANDSY_LEASE_DURATION": "12",
            "BANDSY_LEASE_RENEW_DEADLINE": "8",
            "BANDSY_LEASE_RETRY_PERIOD": "2",
        }
    )
    assert (s.leader_election, s.lease_name) == (False, "other")
    assert (s.lease_duration, s.lease_renew_deadline, s.lease_retry_period) == (12, 8.0, 2.0)
    assert OperatorSettings.from_env({}).leader_election is True


def test_the_holder_identity_is_the_pod_or_unique_per_process() -> None:
    assert holder_identity(OperatorSettings(pod_name="bandsy-operator-7d9f-x2")) == (
        "bandsy-operator-7d9f-x2"
    )
    first, second = (holder_identity(OperatorSettings()) for _ in range(2))
    assert first != second
    assert first.startswith(socket.gethostname())


def test_a_standby_serves_healthz_and_then_hands_the_port_over() -> None:
    port = free_port()
    with serving_health(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=5) as r:
            assert (r.status, r.read()) == (200, b"standby\n")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert missing.value.code == 404
    # kopf binds the same port next.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # noqa: S104  as kopf binds it
        sock.listen()
