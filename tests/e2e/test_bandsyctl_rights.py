"""``bandsyctl`` acts with its caller's credentials (SPEC §10): the same rules apply as to
kubectl, a refusal prints the API server's message as it is, and history and status say who
promoted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess, Person, install_local_samples
from factories import service_body, tags
from waiting import eventually

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def bandsyctl(person: Person, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": person.kubeconfig, "BANDSY_KUBECTL": person.kubectl.binary}
    return subprocess.run([str(BIN / "bandsyctl"), *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def service(
    kubectl: KubectlRunner,
    servers: dict[str, str],
    users: dict[str, Person],
    operator: OperatorProcess,
) -> str:
    install_local_samples(kubectl, servers, ("Secret", "BandsyEnvironment"))
    name = f"ctl-{uuid.uuid4().hex[:5]}"
    # production waits for preprod to run release-1 Ready: nothing rolls out there yet.
    environments = tags(develop="develop-0000001", preprod="release-1", production="release-0")
    body = service_body(name, environments, port=8080)
    users["promoter"].kubectl.apply(body)
    return name


@pytest.mark.asyncio(loop_scope="session")
async def test_promote_as_each_person(
    kube: KubeApi, kubectl: KubectlRunner, users: dict[str, Person], service: str
) -> None:
    developer, promoter = users["developer"], users["promoter"]

    async def preprod_ready() -> bool:
        assert await kube.get(ObjectRef("apps/v1", "Deployment", "preprod", service))
        await make_deployment_ready(kube, "preprod", service)
        rows = json.loads(bandsyctl(developer, "status", service, "-o", "json").stdout)
        assert {r["environment"]: r["ready"] for r in rows}["preprod"] == "release-1", rows
        return True

    await eventually(preprod_ready)

    # The developer's promote is refused with exactly what the API server says to kubectl.
    patch = {"spec": {"environments": {"production": {"image": {"tag": "release-1"}}}}}
    by_kubectl = developer.kubectl(
        "patch", "bsvc", service, "--type=merge", "-p", json.dumps(patch), check=False
    )
    message = by_kubectl.stderr.strip().removeprefix("Error from server (Forbidden): ")
    assert "rule bandsy-promote:" in message
    assert "promote bandsyenvironments/production" in message
    for extra in ([], ["--dry-run"]):
        refused = bandsyctl(developer, "promote", service, "--to", "production", *extra)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr == f"error: {message}\n"
    # devops may not read develop's namespace (the samples make only developers its editors):
    # bandsyctl judges from the service's status then, and the promote goes through.
    develop = bandsyctl(promoter, "promote", service, "--to", "develop", "--tag", "develop-0000002")
    assert develop.returncode == 0, develop.stderr
    # The promoter's dry run says the gates pass and that they may; then it is done.
    dry = bandsyctl(promoter, "promote", service, "--to", "production", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "release-1 passes the gates" in dry.stdout
    assert "you may promote release-1 there" in dry.stdout
    done = bandsyctl(promoter, "promote", service, "--to", "production", "--reason", "go live")
    assert done.returncode == 0, done.stderr

    async def production_recorded() -> list[dict[str, str]]:
        assert await kube.get(ObjectRef("apps/v1", "Deployment", "production", service))
        await make_deployment_ready(kube, "production", service)
        shown = bandsyctl(developer, "history", service, "--env", "production", "-o", "json")
        rows: list[dict[str, str]] = json.loads(shown.stdout)
        assert rows, shown.stderr
        assert rows[0]["ready_at"], rows
        return rows

    (row,) = await eventually(production_recorded)
    assert (row["environment"], row["tag"], row["promoted_by"]) == (
        "production",
        "release-1",
        promoter.name,
    )
    assert row["change_cause"] == "go live"
    table = bandsyctl(developer, "history", service).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "ENVIRONMENT",
        "TAG",
        "APPLIED AT",
        "READY AT",
        "PROMOTED BY",
        "GATES SKIPPED",
        "MIGRATION",
        "CHANGE CAUSE",
    ]
    rows = [line.split()[:2] for line in table[1:]]
    assert rows == [
        ["develop", "develop-0000002"],
        ["develop", "develop-0000001"],
        ["preprod", "release-1"],
        ["production", "release-1"],
    ]
    status = json.loads(bandsyctl(developer, "status", service, "-o", "json").stdout)
    assert {r["environment"]: r["promoted_by"] for r in status} == {
        "develop": promoter.name,
        "preprod": promoter.name,
        "production": promoter.name,
    }
    unknown = bandsyctl(developer, "history", service, "--env", "nowhere")
    assert unknown.returncode == 1
    assert "no BandsyEnvironment 'nowhere'" in unknown.stderr


def test_connect_and_db_open_a_protected_environment_only_for_its_promoters(
    users: dict[str, Person], service: str
) -> None:
    """The rule said before anything is opened (RBAC on pods/portforward and Secrets is what
    holds the line); no pod runs here, so a permitted forward then fails in kubectl itself."""
    developer, promoter = users["developer"], users["promoter"]
    unflagged = bandsyctl(developer, "connect", service, "--env", "production")
    assert unflagged.returncode == 1
    assert "production is protected" in unflagged.stderr
    assert "--allow-production" in unflagged.stderr
    for command in ("connect", "db"):
        refused = bandsyctl(
            developer, command, service, "--env", "production", "--allow-production"
        )
        assert refused.returncode == 1
        if command == "db":  # the service has no database: said first
            assert "does not use PostgreSQL" in refused.stderr, refused.stderr
        else:
            assert "(ClusterRole bandsy:promoter:production), which you do not" in refused.stderr
    permitted = bandsyctl(promoter, "connect", service, "--env", "production", "--allow-production")
    assert permitted.returncode == 1
    assert "kubectl port-forward:" in permitted.stderr, permitted.stderr
    # develop is not protected: no flag, no right needed; the forward fails the same way.
    open_env = bandsyctl(developer, "connect", service, "--env", "develop")
    assert "kubectl port-forward:" in open_env.stderr, open_env.stderr
