"""A user's view: apply the samples with kubectl and read the result with kubectl."""

from __future__ import annotations

import base64
import json

import pytest

from bandsy_dev.kubelet import make_deployment_ready
from bandsy_operator.kube import KubeApi
from conftest import KubectlRunner, OperatorProcess, install_local_samples
from waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]
ENVIRONMENTS = ("develop", "preprod", "production")
SERVICES = ("web", "api", "worker")


async def test_samples_converge_and_read_well(
    kube: KubeApi, kubectl: KubectlRunner, operator: OperatorProcess, servers: dict[str, str]
) -> None:
    # As `make run` does, with production's soak shortened by devops for this run.
    install_local_samples(kubectl, servers, ("Secret", "BandsyEnvironment", "BandsyService"))

    async def deployed() -> bool:
        for env in ENVIRONMENTS[:2]:  # production waits for preprod to run the tag Ready
            found = kubectl("-n", env, "get", "deployments", "-o", "name").stdout.split()
            assert {f"deployment.apps/{s}" for s in SERVICES} <= set(found), (env, found)
        for env in ENVIRONMENTS:  # applied concurrently with the Deployments
            kubectl("-n", env, "get", "secret", "api-secrets")
        return True

    await eventually(deployed, timeout=60)
    key = base64.b64encode(b"sk_test_e2e").decode()
    for env in ENVIRONMENTS:
        kubectl(
            "-n",
            env,
            "patch",
            "secret",
            "api-secrets",
            "--type=merge",
            "-p",
            json.dumps({"data": {"STRIPE_API_KEY": key}}),
        )

    async def all_ready() -> bool:
        # The config hash changes when the secret is filled in: play kubelet until it settles.
        for env in ENVIRONMENTS:
            for service in SERVICES:
                await make_deployment_ready(kube, env, service)
        rows = kubectl("get", "bsvc", "-o", "json").stdout
        items = {i["metadata"]["name"]: i for i in json.loads(rows)["items"]}
        for service in SERVICES:
            ready = [c for c in items[service]["status"]["conditions"] if c["type"] == "Ready"]
            assert ready[0]["status"] == "True", (service, ready)
        return True

    await eventually(all_ready, timeout=60, interval=1)
    table = kubectl("get", "bsvc", *SERVICES).stdout
    print(table)
    lines = [line.split() for line in table.splitlines()]
    assert lines[0] == ["NAME", "DEVELOP", "PREPROD", "PRODUCTION", "READY", "REASON", "AGE"]
    rows = {line[0]: line[1:6] for line in lines[1:]}
    for service in SERVICES:
        assert rows[service] == [
            "develop-3f2a9c1",
            "release-1.7.2",
            "release-1.7.2",
            "True",
            "Ready",
        ]

    wide = kubectl("get", "bsvc", "web", "-o", "wide").stdout
    print(wide)
    assert "MESSAGE" in wide.splitlines()[0]
    assert "URL" in wide.splitlines()[0]

    environments = kubectl("get", "benv", *ENVIRONMENTS).stdout
    print(environments)
    header, *env_rows = [line.split() for line in environments.splitlines()]
    assert header == [
        "NAME",
        "NAMESPACE",
        "FROM",
        "FROZEN",
        "SERVICES",
        "READY",
        "REASON",
        "COST",
        "AGE",
    ]
    by_name = {row[0]: row for row in env_rows}
    assert by_name["production"][1:4] == ["production", "preprod", "false"]

    async def counted() -> bool:
        out = kubectl("get", "benv", "production", "-o", "jsonpath={.status.services}").stdout
        services = json.loads(kubectl("get", "bsvc", "-o", "json").stdout)["items"]
        in_production = [s for s in services if "production" in s["spec"]["environments"]]
        ready, _, total = out.removesuffix(" ready").partition("/")
        assert int(total) == len(in_production), out
        assert int(ready) >= len(SERVICES), out  # other tests may run services there too
        return True

    await eventually(counted, timeout=30)

    described = kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "regarding.name=api",
        "-o",
        "json",
        check=False,
    )
    assert "sk_test_e2e" not in described.stdout
