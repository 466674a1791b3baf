"""What the node's tests show when one fails: the operator runs in pods there, so its log and
the Jobs and pods it made are not in the test's own output unless collected here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report: pytest.TestReport = yield
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.when == "call" and report.failed and hasattr(cluster, "evidence"):
        try:
            report.sections.append(("the cluster when it failed", cluster.evidence()))
        except Exception as error:  # evidence is a help, never a second failure
            report.sections.append(("the cluster when it failed", f"not collected: {error!r}"))
    return report
