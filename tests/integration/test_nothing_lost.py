"""What a person typed into a Secret the operator made is never reset, whichever way the
operator learns of later edits; and the pods' config hash gives nothing away about the values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest

from bandsy_operator.constants import CONFIG_HASH_ANNOTATION
from bandsy_operator.kube import KubeApi, ObjectRef
from bandsy_operator.naming import CONFIG_HASH_KEY_SECRET
from conftest import KubectlRunner, OperatorProcess
from factories import environment_body, service_body, tags
from waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
OPERATOR_NAMESPACE = "bandsy-system"


def uid() -> str:
    return uuid.uuid4().hex[:5]


async def secret_values(kube: KubeApi, namespace: str, name: str) -> dict[str, str]:
    secret = await kube.get(ObjectRef("v1", "Secret", namespace, name))
    assert secret is not None, f"Secret {namespace}/{name} does not exist"
    data = secret.get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def fill_in(kubectl: KubectlRunner, namespace: str, name: str, key: str, value: str) -> None:
    """What ``kubectl edit secret`` does: an update of the live object by a person."""
    encoded = base64.b64encode(value.encode()).decode()
    patch = json.dumps({"data": {key: encoded}})
    kubectl("-n", namespace, "patch", "secret", name, "--type=merge", "-p", patch)


async def observed(kube: KubeApi, name: str) -> bool:
    obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
    assert obj is not None
    status = obj.get("status") or {}
    return bool(status.get("observedGeneration") == obj["metadata"]["generation"])


@pytest.fixture
def env(kubectl: KubectlRunner, operator: OperatorProcess) -> str:
    name = f"keep-{uid()}"
    kubectl.apply(environment_body(name, deletionPolicy="Delete"))
    return name


async def test_a_value_filled_in_by_hand_survives_later_edits(
    kube: KubeApi, kubectl: KubectlRunner, env: str, operator: OperatorProcess
) -> None:
    name = f"stripe-{uid()}"
    secrets = f"{name}-secrets"
    keys: list[dict[str, Any]] = [
        {"name": "SESSION_KEY", "generate": {"length": 32}},
        {"name": "STRIPE_API_KEY"},
    ]
    kubectl.apply(service_body(name, tags(**{env: "v1"}), secrets=keys))

    async def placeholder() -> dict[str, str]:
        values = await secret_values(kube, env, secrets)
        assert values.get("STRIPE_API_KEY") == "", values
        return values

    session_key = (await eventually(placeholder))["SESSION_KEY"]
    fill_in(kubectl, env, secrets, "STRIPE_API_KEY", "sk_live_typed_by_a_person")

    # The service is edited later: a new generated key reaches the same Secret.
    more = [*keys, {"name": "WEBHOOK_SECRET", "generate": {"length": 24}}]
    kubectl.apply(service_body(name, tags(**{env: "v1"}), secrets=more))

    async def added() -> dict[str, str]:
        values = await secret_values(kube, env, secrets)
        assert len(values.get("WEBHOOK_SECRET", "")) == 24, values
        return values

    values = await eventually(added)
    assert values["STRIPE_API_KEY"] == "sk_live_typed_by_a_person"
    assert values["SESSION_KEY"] == session_key
    # And after the resyncs that follow (every object read again, applied where it differs).
    await eventually(lambda: observed(kube, name))
    for _ in range(3):
        await operator_resync(operator)
    values = await secret_values(kube, env, secrets)
    assert values["STRIPE_API_KEY"] == "sk_live_typed_by_a_person"
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_a_value_filled_in_before_the_key_is_declared_is_kept(
    kube: KubeApi, kubectl: KubectlRunner, env: str, operator: OperatorProcess
) -> None:
    name = f"early-{uid()}"
    secrets = f"{name}-secrets"
    keys: list[dict[str, Any]] = [{"name": "SESSION_KEY", "generate": {"length": 32}}]
    kubectl.apply(service_body(name, tags(**{env: "v1"}), secrets=keys))
    await eventually(lambda: secret_values(kube, env, secrets))
    fill_in(kubectl, env, secrets, "PARTNER_TOKEN", "tok_before_the_spec")

    kubectl.apply(
        service_body(name, tags(**{env: "v1"}), secrets=[*keys, {"name": "PARTNER_TOKEN"}])
    )
    await eventually(lambda: observed(kube, name))
    await operator_resync(operator)
    values = await secret_values(kube, env, secrets)
    assert values["PARTNER_TOKEN"] == "tok_before_the_spec"

    async def not_missing() -> bool:
        obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
        assert obj is not None
        envs = (obj.get("status") or {}).get("environments") or {}
        ready = next(c for c in envs[env]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] != "SecretMissing", ready
        return True

    await eventually(not_missing)
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def test_the_config_hash_is_keyed_by_a_secret_of_the_operator(
    kube: KubeApi, kubectl: KubectlRunner, env: str
) -> None:
    """Anyone with ``view`` reads the pod template's hash: it is an HMAC with a key held in
    the operator's namespace, so guesses of a secret value cannot be tested against it."""
    name = f"hash-{uid()}"
    kubectl.apply(
        service_body(
            name,
            tags(**{env: "v1"}),
            config={"MODE": "a"},
            secrets=[{"name": "PIN"}],
        )
    )
    fill_later = f"{name}-secrets"
    await eventually(lambda: secret_values(kube, env, fill_later))
    fill_in(kubectl, env, fill_later, "PIN", "1234")
    key_secret = await kube.get(
        ObjectRef("v1", "Secret", OPERATOR_NAMESPACE, CONFIG_HASH_KEY_SECRET)
    )
    assert key_secret is not None
    key = base64.b64decode(key_secret["data"]["key"])
    assert len(bytes.fromhex(key.decode())) == 32  # 256 random bits, as hex text

    async def hashed() -> str:
        config = await kube.get(ObjectRef("v1", "ConfigMap", env, f"{name}-config"))
        deployment = await kube.get(ObjectRef("apps/v1", "Deployment", env, name))
        assert config is not None
        assert deployment is not None
        annotation = str(
            deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        )
        content = json.dumps(
            [config["data"], {"PIN": "1234"}], sort_keys=True, separators=(",", ":")
        ).encode()
        assert annotation == hmac.new(key, content, hashlib.sha256).hexdigest()[:16]
        return annotation

    annotation = await eventually(hashed, timeout=30)
    plain = json.dumps(
        [
            (await kube.get(ObjectRef("v1", "ConfigMap", env, f"{name}-config")) or {})["data"],
            {"PIN": "1234"},
        ],
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    assert annotation != hashlib.sha256(plain).hexdigest()[:16]
    kubectl("delete", "bsvc", name, "--wait=true", "--timeout=60s")


async def operator_resync(operator: OperatorProcess) -> None:
    """Wait for one more periodic resync of the operator (every object read again)."""
    before = operator.metrics().get("bandsy_resyncs_total", 0.0)

    async def resynced() -> bool:
        return operator.metrics().get("bandsy_resyncs_total", 0.0) > before

    await eventually(resynced, timeout=30)

    async def idle() -> bool:
        return operator.metrics().get("bandsy_work_queue_depth", 1.0) == 0.0

    # The resync reads every custom resource the session's earlier modules left (all of them
    # share this operator): on a busy machine that took more than 30 s.
    await eventually(idle, timeout=120)
