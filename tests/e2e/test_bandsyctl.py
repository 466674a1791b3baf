"""``bandsyctl`` and ``kubectl bandsy`` as a user runs them, against the real control plane."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator.kube import KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body
from waiting import eventually

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def run(
    servers: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": servers["KUBECONFIG"]}
    return subprocess.run(
        [str(BIN / "bandsyctl"), *args], capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.fixture(scope="module")
def app(kubectl: KubectlRunner, operator: OperatorProcess) -> dict[str, str]:
    s = uuid.uuid4().hex[:5]
    names = {"dev": f"cdev-{s}", "prod": f"cprod-{s}", "svc": f"cli-{s}"}
    kubectl.apply(
        environment_body(names["dev"], deletionPolicy="Delete", config={"LOG_LEVEL": "debug"}),
        environment_body(names["prod"], promotion={"from": names["dev"]}, deletionPolicy="Delete"),
        service_body(
            names["svc"],
            {names["dev"]: {"image": {"tag": "v1"}}, names["prod"]: {"image": {"tag": "v1"}}},
            port=8080,
            # A number to kubectl's YAML reader unless render quotes it.
            config={"GREETING": 'say "hi"', "SAMPLE_RATE": "1e-3"},
            secrets=[{"name": "SESSION_KEY", "generate": {"length": 24}}],
        ),
    )
    return names


@pytest.mark.asyncio(loop_scope="session")
async def test_status_promote_render_dotenv(
    kube: KubeApi,
    kubectl: KubectlRunner,
    servers: dict[str, str],
    app: dict[str, str],
    tmp_path: Path,
) -> None:
    dev, prod, svc = app["dev"], app["prod"], app["svc"]
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", dev, svc)))
    await make_deployment_ready(kube, dev, svc)
    await eventually(lambda: kube.get(ObjectRef("apps/v1", "Deployment", prod, svc)))
    await make_deployment_ready(kube, prod, svc)

    async def converged() -> bool:
        rows = json.loads(run(servers, "status", svc, "-o", "json").stdout)
        assert [(r["environment"], r["summary"]) for r in rows] == [(dev, "v1"), (prod, "v1")], rows
        return True

    await eventually(converged)
    table = run(servers, "status", svc).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "SERVICE",
        "ENVIRONMENT",
        "DESIRED",
        "APPLIED",
        "READY",
        "PROMOTED BY",
        "BLOCKED",
        "URL",
        "ROUTE",
        "CERTIFICATE",
    ]
    # Who promoted what runs: the admin who applied the service (SPEC §10).
    assert table[1].split()[5] == "bandsy-admin", table

    # promote: v2 is not Ready upstream yet, so the dry run says it would be blocked.
    blocked = run(servers, "promote", svc, "--to", prod, "--tag", "v2", "--dry-run")
    assert blocked.returncode == 1
    assert "NotReadyUpstream" in blocked.stdout
    kubectl(
        "patch",
        "bsvc",
        svc,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"environments": {dev: {"image": {"tag": "v2"}}}}}),
    )

    async def dev_on_v2() -> bool:
        obj = await kube.get(ObjectRef("apps/v1", "Deployment", dev, svc))
        assert obj is not None
        assert obj["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
        await make_deployment_ready(kube, dev, svc)
        rows = json.loads(run(servers, "status", svc, "-o", "json").stdout)
        assert rows[0]["ready"] == "v2", rows
        return True

    await eventually(dev_on_v2)
    dry = run(servers, "promote", svc, "--to", prod, "--dry-run")  # default: Ready upstream
    assert dry.returncode == 0, dry.stderr
    assert "v2 passes the gates" in dry.stdout
    done = run(servers, "promote", svc, "--to", prod, "--reason", "ship v2")
    assert done.returncode == 0, done.stderr
    obj = json.loads(kubectl("get", "bsvc", svc, "-o", "json").stdout)
    assert obj["spec"]["environments"][prod]["image"]["tag"] == "v2"
    assert obj["metadata"]["annotations"]["bandsy.app/change-cause"] == "ship v2"
    assert obj["metadata"]["annotations"][f"bandsy.app/promoted-by.{prod}"] == "bandsy-admin"

    # render: exactly what the operator applies, so a server-side diff is empty.
    async def prod_on_v2() -> bool:
        live = await kube.get(ObjectRef("apps/v1", "Deployment", prod, svc))
        assert live is not None
        return bool(live["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2"))

    await eventually(prod_on_v2)
    rendered = run(servers, "render", svc, "--env", dev, "--show-secrets")
    assert rendered.returncode == 0, rendered.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered.stdout)]
    assert kinds == ["ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"]
    diff = kubectl(
        "diff",
        "--server-side",
        "--force-conflicts",
        "--field-manager=bandsy-operator",
        "-f",
        "-",
        input=rendered.stdout,
        check=False,
    )
    # Nothing differs, not even a generation: render builds what the API server stores (a
    # NetworkPolicy's empty rule lists are left out, as the server leaves them out).
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    hidden = run(servers, "render", svc, "--env", dev)
    assert all("data" not in d for d in yaml.safe_load_all(hidden.stdout) if d["kind"] == "Secret")

    # dotenv: only into a git-ignored file, never production without a flag.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(".env\n")
    refused = run(servers, "dotenv", svc, "--env", dev, "-o", "config.env", cwd=tmp_path)
    assert refused.returncode == 1
    assert "not ignored by git" in refused.stderr
    assert not (tmp_path / "config.env").exists()
    wrote = run(servers, "dotenv", svc, "--env", dev, "-o", ".env", cwd=tmp_path)
    assert wrote.returncode == 0, wrote.stderr
    dotenv = (tmp_path / ".env").read_text()
    assert 'GREETING="say \\"hi\\""' in dotenv
    assert 'LOG_LEVEL="debug"' in dotenv
    assert "SESSION_KEY=" in dotenv
    assert oct((tmp_path / ".env").stat().st_mode & 0o777) == "0o600"
    production = run(servers, "dotenv", svc, "--env", "production", cwd=tmp_path)
    assert production.returncode == 1
    assert "--allow-production" in production.stderr


def test_errors_and_usage(servers: dict[str, str], app: dict[str, str]) -> None:
    missing = run(servers, "status", "no-such-service")
    assert missing.returncode == 1
    assert "no BandsyService 'no-such-service'" in missing.stderr
    wrong_env = run(servers, "render", app["svc"], "--env", "nowhere")
    assert wrong_env.returncode == 1
    assert "no BandsyEnvironment 'nowhere'" in wrong_env.stderr
    usage = run(servers, "promote", app["svc"])
    assert usage.returncode == 2
    assert "--to" in usage.stderr
    for command in ("status", "history", "promote", "render", "dotenv", "check-branch"):
        helped = run(servers, command, "--help")
        assert helped.returncode == 0
        assert "usage: bandsyctl" in helped.stdout
    assert run(servers, "check-branch", "feature/12_add-login").returncode == 0
    assert run(servers, "check-branch", "Feature/x").returncode == 1


def test_kubectl_plugin(kubectl: KubectlRunner, app: dict[str, str]) -> None:
    kubectl.env["PATH"] = f"{BIN}{os.pathsep}{kubectl.env.get('PATH', '')}"
    result = kubectl("bandsy", "status", app["svc"])
    assert app["svc"] in result.stdout
