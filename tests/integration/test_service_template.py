"""The BandsyService `bandsyctl init-service` writes is one the API server takes, CRD rules and
admission policies included (the other starter files: tests/unit/test_scaffold.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandsy_operator import scaffold
from conftest import KubectlRunner

pytestmark = pytest.mark.integration


# Names no other test of the session uses: the samples' "web" may exist, and then the dry run
# says "configured", not "created".
@pytest.mark.parametrize("name", ["starter-web", "a", "payments-api-v2", "x" * 40])
def test_the_starter_service_passes_a_server_dry_run(
    kubectl: KubectlRunner, crds: None, tmp_path: Path, name: str
) -> None:
    files = scaffold.render(name, scaffold.Platform.parse(scaffold.DEFAULT_PLATFORM))
    (manifest,) = (p for p in scaffold.write(tmp_path, files) if p.name == "bandsy.yaml")
    result = kubectl("apply", "--dry-run=server", "-f", str(manifest))
    assert f"bandsyservice.bandsy.app/{name} created (server dry run)" in result.stdout
