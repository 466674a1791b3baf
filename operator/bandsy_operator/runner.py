"""Process entry point: logging, the Lease (a standby waits here), then kopf cluster-wide with
a liveness endpoint."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys

import kopf

from . import metrics
from .leadership import Leadership
from .settings import OperatorSettings
from .standby import HEALTH_PATH, serving_health
from .world import World


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(json_logs: bool, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:
        # A line per HTTP request or per watch event drowns everything else; errors still
        # surface through the callers.
        # The elector logs every retry of a standby (each 1.5 s) at INFO; leadership.py logs
        # the transitions.
        for noisy in ("httpx", "httpx2", "httpcore", "kopf.objects", "leaderelection"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bandsy_operator")
    parser.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    settings = OperatorSettings.from_env()
    configure_logging(args.json_logs or settings.json_logs, args.verbose)

    from . import handlers  # noqa: F401  registers the kopf handlers

    # Modules, classes and functions live as long as the process: out of the collector's sight,
    # a full collection no longer walks their few hundred thousand objects (SPEC §9).
    gc.freeze()

    memo = kopf.Memo()
    # The gate: a standby starts no watch and no reconcile until it holds the Lease.
    if settings.leader_election:
        memo.leadership = Leadership(settings)
        # A standby answers its scrapes too (its target is up, bandsy_leader 0); the start-up
        # handler points the exporter at the real world once this process leads.
        metrics.serve(settings.metrics_port, World())
        with serving_health(settings.liveness_port):
            memo.leadership.wait()
    metrics.LEADER.set(1)
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}{HEALTH_PATH}",
        memo=memo,
    )
