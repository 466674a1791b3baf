"""SPEC §10 against the real API server, as real users with their own tokens (the token file of
hack/bandsy_dev/users.py): a developer of team-checkout, a devops promoter, a developer of another
team and the CI deploy identity, with the rights deploy/samples/rights.yaml binds and the
policies of deploy/policies. Every refusal and every permission of §10 is proven here; the
operator's history records who promoted (bandsyctl: tests/e2e/test_bandsyctl_rights.py)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.types import PatchType

from bandsy_dev import rights
from bandsy_dev.kubelet import make_deployment_ready
from bandsy_dev.operator_process import kubeconfig_with_token
from bandsy_operator.kube import BandsyServiceResource, KubeApi, ObjectRef
from conftest import KubectlRunner, OperatorProcess, Person, install_local_samples
from factories import environment_body, service_body, tags
from recorded_events import events_about
from waiting import eventually

pytestmark = pytest.mark.integration
DEVELOP, PREPROD, PRODUCTION = "develop", "preprod", "production"
Result = subprocess.CompletedProcess[str]


def uid() -> str:
    return uuid.uuid4().hex[:5]


RESTORE = '{"id": "20261201T110500Z-3f2a", "from": "develop@latest"}'


def dev_tag() -> str:
    """A tag develop's imagePolicy accepts (deploy/samples/environments.yaml)."""
    return f"develop-{uuid.uuid4().hex[:7]}"


def refused(result: Result, rule: str, *words: str) -> str:
    """The API server refused with the message of ``rule`` naming ``words`` (the right)."""
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert f"rule {rule}:" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def accepted(result: Result) -> Result:
    assert result.returncode == 0, result.stderr
    return result


def rbac_refused(result: Result, user: str, resource: str) -> None:
    """RBAC refused (kubectl patch reads the object first: a missing get refuses it too)."""
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert f'User "{user}" cannot ' in result.stderr, result.stderr
    assert f'resource "{resource}"' in result.stderr, result.stderr


def patch(kubectl: KubectlRunner, name: str, body: dict[str, Any], *extra: str) -> Result:
    return kubectl(
        "patch", "bsvc", name, "--type=merge", "-p", json.dumps(body), *extra, check=False
    )


def env_patch(env: str, **fields: Any) -> dict[str, Any]:
    return {"spec": {"environments": {env: fields}}}


def tag_patch(env: str, tag: str) -> dict[str, Any]:
    return env_patch(env, image={"tag": tag})


def apply_as(person: Person, body: dict[str, Any], *extra: str) -> Result:
    return person.kubectl(
        "apply", "--server-side", "-f", "-", *extra, input=json.dumps(body), check=False
    )


def annotations_of(kubectl: KubectlRunner, name: str) -> dict[str, str]:
    obj = json.loads(kubectl("get", "bsvc", name, "-o", "json").stdout)
    return dict(obj["metadata"].get("annotations") or {})


def promote_probe(person: Person, env: str) -> Result:
    body = service_body(f"probe-{uid()}", tags(**{env: "release-1"}))
    return apply_as(person, body, "--dry-run=server")


@pytest.fixture(scope="module")
def environments(kubectl: KubectlRunner, servers: dict[str, str], users: dict[str, Person]) -> None:
    """develop, preprod (protected: true) and production (protected by default: it promotes
    from preprod) as the samples define them; the API server reads them as the policy's
    parameters through an informer, so wait until it has."""
    install_local_samples(kubectl, servers, ("Secret", "BandsyEnvironment"))
    for env in (PREPROD, PRODUCTION):
        until(lambda env=env: "bandsy-promote" in promote_probe(users["developer"], env).stderr)


def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for what the API server learns through its informers (parameters, RBAC)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.2)


def delete(kubectl: KubectlRunner, *names: str) -> None:
    kubectl("delete", "bsvc", *names, "--wait=false", "--ignore-not-found")


# -- kubectl auth can-i -------------------------------------------------------------------------


def can_i(kubectl: KubectlRunner, *args: str) -> str:
    return str(kubectl("auth", "can-i", *args, check=False).stdout.strip())


@pytest.mark.parametrize(
    ("role", "production", "preprod", "own_web", "patch_services", "update_environments"),
    [
        ("developer", "no", "no", "yes", "yes", "no"),
        ("promoter", "yes", "yes", "no", "yes", "yes"),
        ("other_team", "no", "no", "no", "yes", "no"),
        ("ci", "no", "no", "yes", "yes", "no"),
    ],
)
def test_kubectl_auth_can_i_answers_each_person(
    kubectl: KubectlRunner,
    users: dict[str, Person],
    role: str,
    production: str,
    preprod: str,
    own_web: str,
    patch_services: str,
    update_environments: str,
) -> None:
    person = users[role]
    expected = {
        ("promote", "bandsyenvironments/production"): production,
        ("promote", "bandsyenvironments/preprod"): preprod,
        ("own", "bandsyservices/web"): own_web,
        ("patch", "bandsyservices"): patch_services,
        ("update", "bandsyenvironments"): update_environments,
    }
    for (verb, resource), answer in expected.items():
        # With their own token, and as an admin asks on their behalf.
        assert can_i(person.kubectl, verb, resource) == answer, (role, verb, resource)
        groups = [f"--as-group={group}" for group in person.groups]
        as_person = can_i(kubectl, verb, resource, f"--as={person.name}", *groups)
        assert as_person == answer, (role, verb, resource)
    # Promoters are named people: `--as` alone (no groups) answers the same.
    alone = can_i(kubectl, "promote", "bandsyenvironments/production", f"--as={person.name}")
    assert alone == production


# -- promote ------------------------------------------------------------------------------------


def test_a_developer_changes_develop_and_nothing_protected(
    kubectl: KubectlRunner, users: dict[str, Person], environments: None
) -> None:
    developer = users["developer"]
    name = f"dev-{uid()}"
    accepted(apply_as(developer, service_body(name, tags(develop=dev_tag()), port=8080)))
    try:
        # develop is not protected: tag, replicas, config, its break glass.
        accepted(patch(developer.kubectl, name, tag_patch(DEVELOP, dev_tag())))
        accepted(patch(developer.kubectl, name, env_patch(DEVELOP, replicas=2, config={"A": "1"})))
        skip = {"metadata": {"annotations": {"bandsy.app/skip-gates": f"{DEVELOP}=x"}}}
        accepted(patch(developer.kubectl, name, skip))
        assert annotations_of(kubectl, name)[f"bandsy.app/promoted-by.{DEVELOP}"] == developer.name

        # Entering a protected environment is a promote of it.
        for env in (PREPROD, PRODUCTION):
            message = refused(
                patch(developer.kubectl, name, tag_patch(env, "release-1")),
                "bandsy-promote",
                f"{developer.name} may not change {name} in the protected environment {env}",
                f"needs the right to promote bandsyenvironments/{env}",
                f"bandsy:promoter:{env}",
            )
            assert "ValidatingAdmissionPolicy 'bandsy-promote'" in message
        created = service_body(f"new-{uid()}", tags(develop=dev_tag(), production="release-1"))
        refused(
            apply_as(developer, created),
            "bandsy-promote",
            "may not create",
            "promote bandsyenvironments/production",
        )
        assert kubectl("get", "bsvc", created["metadata"]["name"], check=False).returncode != 0
    finally:
        delete(kubectl, name)


def test_a_developer_may_not_touch_what_production_runs(
    kubectl: KubectlRunner, users: dict[str, Person], environments: None
) -> None:
    developer, promoter = users["developer"], users["promoter"]
    name = f"prod-{uid()}"
    body = service_body(name, tags(develop=dev_tag(), production="release-1"), port=8080)
    accepted(apply_as(promoter, body))
    right = "promote bandsyenvironments/production"
    try:
        for change in (
            tag_patch(PRODUCTION, "release-2"),
            env_patch(PRODUCTION, replicas=3),
            env_patch(PRODUCTION, config={"FEATURE_X": "true"}),
            env_patch(PRODUCTION, resources={"limits": {"memory": "1Gi"}}),
            # What every environment uses changes production too.
            {"spec": {"image": {"repository": "ghcr.io/elsewhere/web"}}},
            {"spec": {"replicas": 4}},
            {"spec": {"config": {"FEATURE_Y": "on"}}},
            # Leaving production, and break glass for it.
            {"spec": {"environments": {PRODUCTION: None}}},
            {"metadata": {"annotations": {"bandsy.app/skip-gates": f"{PRODUCTION}=release-2"}}},
            # A restore of production's database (bandsyctl restore).
            {"metadata": {"annotations": {f"bandsy.app/restore.{PRODUCTION}": RESTORE}}},
        ):
            refused(patch(developer.kubectl, name, change), "bandsy-promote", right)
        refused(
            developer.kubectl("delete", "bsvc", name, check=False),
            "bandsy-promote",
            f"may not delete {name} in the protected environment production",
            right,
        )
        # The same edits are a promoter's to make.
        accepted(patch(promoter.kubectl, name, tag_patch(PRODUCTION, "release-2")))
        accepted(
            patch(promoter.kubectl, name, {"spec": {"image": {"repository": "ghcr.io/moved/x"}}})
        )
        stamps = annotations_of(kubectl, name)
        assert stamps[f"bandsy.app/promoted-by.{PRODUCTION}"] == promoter.name
        # A restore in develop is the developer's to ask for.
        restore_develop = {"metadata": {"annotations": {f"bandsy.app/restore.{DEVELOP}": RESTORE}}}
        accepted(patch(developer.kubectl, name, restore_develop))
        # A develop-only edit by the developer leaves production's stamp alone.
        accepted(patch(developer.kubectl, name, tag_patch(DEVELOP, dev_tag())))
        after = annotations_of(kubectl, name)
        assert after[f"bandsy.app/promoted-by.{DEVELOP}"] == developer.name
        assert after[f"bandsy.app/promoted-by.{PRODUCTION}"] == promoter.name
        accepted(promoter.kubectl("delete", "bsvc", name, "--wait=false", check=False))
    finally:
        delete(kubectl, name)


def test_protection_is_read_from_each_environment(
    kubectl: KubectlRunner, users: dict[str, Person], environments: None
) -> None:
    """``spec.protected``, or its default (production, or promoted from another environment),
    as the API server reads it from each BandsyEnvironment; a new protected environment gets a
    promoter role of the same shape as the shipped ones."""
    developer = users["developer"]
    s = uid()
    first, promoted, opted_out = f"a-{s}", f"b-{s}", f"c-{s}"
    kubectl.apply(
        environment_body(first, deletionPolicy="Delete"),
        environment_body(promoted, promotion={"from": first}, deletionPolicy="Delete"),
        environment_body(
            opted_out, promotion={"from": first}, protected=False, deletionPolicy="Delete"
        ),
    )
    role = f"bandsy:promoter:{promoted}"
    rbac = "rbac.authorization.k8s.io"
    try:
        # The API server reads environments through an informer: wait for the new ones.
        until(lambda: "bandsy-promote" in promote_probe(developer, promoted).stderr)
        refused(promote_probe(developer, promoted), "bandsy-promote", f"bandsy:promoter:{promoted}")
        accepted(promote_probe(developer, first))
        accepted(promote_probe(developer, opted_out))

        kubectl.apply(
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": [
                    {
                        "apiGroups": ["bandsy.app"],
                        "resources": ["bandsyenvironments"],
                        "resourceNames": [promoted],
                        "verbs": ["promote"],
                    }
                ],
            },
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": rbac, "kind": "User", "name": developer.name}],
            },
        )
        until(
            lambda: can_i(developer.kubectl, "promote", f"bandsyenvironments/{promoted}") == "yes"
        )
        accepted(promote_probe(developer, promoted))
        # Still not production: one environment's right is that environment's only.
        refused(
            promote_probe(developer, PRODUCTION), "bandsy-promote", "bandsy:promoter:production"
        )
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")
        kubectl("delete", "benv", first, promoted, opted_out, "--wait=false")


# -- the CI deploy identity ---------------------------------------------------------------------


def workflow_patch(env: str, tag: str) -> dict[str, Any]:
    """What .github/workflows/service-release.yaml sends (its jq program), for ``env``."""
    return {
        "metadata": {"annotations": {"bandsy.app/change-cause": f"{tag}: merge feature/1_x"}},
        "spec": {"environments": {env: {"image": {"tag": tag}}}},
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_ci_deploys_to_develop_and_is_refused_preprod_and_production(
    kube: KubeApi,
    kubectl: KubectlRunner,
    users: dict[str, Person],
    environments: None,
    operator: OperatorProcess,
) -> None:
    ci = users["ci"]
    name = f"ci-{uid()}"
    body = service_body(
        name, tags(develop=dev_tag(), preprod="release-1", production="release-1"), port=8080
    )
    body["spec"]["owner"] = "team-checkout"  # an owned service: CI deploys it all the same
    kubectl.apply(body)
    try:
        # The workflow's steps: read the repository, patch develop, wait for the rollout.
        repository = ci.kubectl(
            "get", "bandsyservice", name, "-o", "jsonpath={.spec.image.repository}"
        )
        assert repository.stdout == body["spec"]["image"]["repository"]
        tag = dev_tag()
        accepted(patch(ci.kubectl, name, workflow_patch(DEVELOP, tag)))

        async def rolled_out() -> bool:
            deployment = await kube.get(ObjectRef("apps/v1", "Deployment", DEVELOP, name))
            assert deployment is not None
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image.endswith(f":{tag}"), image
            await make_deployment_ready(kube, DEVELOP, name)
            return True

        await eventually(rolled_out)
        summary = f"jsonpath={{.status.environments.develop.summary}}={tag}"
        accepted(
            ci.kubectl(
                "wait", "bandsyservice", name, f"--for={summary}", "--timeout=30s", check=False
            )
        )
        history = await _history(kube, name, DEVELOP)
        assert (history[0]["tag"], history[0]["promotedBy"]) == (tag, ci.name)

        # The same patch anywhere protected: refused, and nothing changed.
        for env in (PREPROD, PRODUCTION):
            refused(
                patch(ci.kubectl, name, workflow_patch(env, "release-2")),
                "bandsy-promote",
                f"{ci.name} may not change {name} in the protected environment {env}",
                f"promote bandsyenvironments/{env}",
            )
        spec = json.loads(kubectl("get", "bsvc", name, "-o", "json").stdout)["spec"]
        assert spec["environments"][PRODUCTION]["image"]["tag"] == "release-1"
        # Exactly what a develop deploy needs: no create, delete, update, environments.
        other = service_body(f"ci-new-{uid()}", tags(develop=dev_tag()))
        created = ci.kubectl("create", "-f", "-", input=json.dumps(other), check=False)
        rbac_refused(created, ci.name, "bandsyservices")
        assert "cannot create" in created.stderr
        deleted = ci.kubectl("delete", "bsvc", name, check=False)
        rbac_refused(deleted, ci.name, "bandsyservices")
        assert "cannot delete" in deleted.stderr
        rbac_refused(
            ci.kubectl("patch", "benv", DEVELOP, "--type=merge", "-p", '{"spec":{}}', check=False),
            ci.name,
            "bandsyenvironments",
        )
    finally:
        delete(kubectl, name)


# -- own ----------------------------------------------------------------------------------------


def grant_team(kubectl: KubectlRunner, service: str, team: str = "team-checkout") -> str:
    """What an admin does for a team's new service: a role granting `own` on it, bound to the
    team's group (as deploy/samples/rights.yaml does for web and api). Returns the role."""
    role = f"test:owner:{service}"
    rbac = "rbac.authorization.k8s.io"
    kubectl.apply(
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": ["bandsy.app"],
                    "resources": ["bandsyservices"],
                    "resourceNames": [service],
                    "verbs": ["own"],
                }
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": rbac, "kind": "Group", "name": team}],
        },
    )
    return role


def revoke(kubectl: KubectlRunner, role: str) -> None:
    kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")


@pytest.fixture
def owned(kubectl: KubectlRunner, environments: None) -> Iterator[str]:
    """A service of team-checkout, in develop and production, and the team's role for it."""
    name = f"own-{uid()}"
    role = grant_team(kubectl, name)
    body = service_body(name, tags(develop=dev_tag(), production="release-1"), port=8080)
    body["spec"]["owner"] = "team-checkout"
    kubectl.apply(body)
    yield name
    delete(kubectl, name)
    revoke(kubectl, role)


def test_only_the_owning_team_or_a_promoter_changes_an_owned_service(
    kubectl: KubectlRunner, users: dict[str, Person], owned: str
) -> None:
    developer, other, promoter = users["developer"], users["other_team"], users["promoter"]
    assert can_i(developer.kubectl, "own", f"bandsyservices/{owned}") == "yes"
    assert can_i(other.kubectl, "own", f"bandsyservices/{owned}") == "no"
    right = f"the right to own bandsyservices/{owned}"
    for change in (
        tag_patch(DEVELOP, dev_tag()),
        {"metadata": {"annotations": {"bandsy.app/change-cause": "not mine"}}},
        {"spec": {"secrets": [{"name": "EXTRA_KEY"}]}},
    ):
        refused(
            patch(other.kubectl, owned, change),
            "bandsy-own",
            f"{owned} is owned by team-checkout; {other.name} may not change it",
            right,
        )
    # Deleting it is refused too (it runs in production: by either rule; the owner rule alone in
    # the next test).
    deleted = other.kubectl("delete", "bsvc", owned, check=False)
    assert deleted.returncode != 0
    assert re.search(r"rule bandsy-(own|promote):", deleted.stderr), deleted.stderr
    # The team, and a promoter of one of its environments, may.
    accepted(patch(developer.kubectl, owned, tag_patch(DEVELOP, dev_tag())))
    accepted(patch(developer.kubectl, owned, {"spec": {"secrets": [{"name": "EXTRA_KEY"}]}}))
    accepted(patch(promoter.kubectl, owned, tag_patch(DEVELOP, dev_tag())))
    # Owning is not promoting: the team still needs the right for production.
    refused(
        patch(developer.kubectl, owned, tag_patch(PRODUCTION, "release-2")),
        "bandsy-promote",
        "promote bandsyenvironments/production",
    )


def test_unowned_services_are_left_to_rbac_and_the_owner_is_immutable(
    kubectl: KubectlRunner, users: dict[str, Person], environments: None
) -> None:
    developer, other = users["developer"], users["other_team"]
    name = f"free-{uid()}"
    accepted(apply_as(developer, service_body(name, tags(develop=dev_tag()), port=8080)))
    try:
        accepted(patch(other.kubectl, name, tag_patch(DEVELOP, dev_tag())))
        accepted(patch(developer.kubectl, name, {"spec": {"owner": "team-checkout"}}))
        refused(patch(other.kubectl, name, tag_patch(DEVELOP, dev_tag())), "bandsy-own", "own")
        refused(
            other.kubectl("delete", "bsvc", name, check=False),
            "bandsy-own",
            f"{name} is owned by team-checkout; {other.name} may not delete it",
            f"the right to own bandsyservices/{name}",
        )
        # Set once, it stays: not even an admin changes or removes it.
        for change in ({"spec": {"owner": "team-search"}}, {"spec": {"owner": None}}):
            result = patch(kubectl, name, change)
            assert result.returncode != 0
            assert "spec.owner is immutable once set" in result.stderr, result.stderr
        # Being in the owner group is not the right: RBAC is (`own` on its name). Until the
        # team's role lists the service, the team is refused too; then it may delete it.
        refused(developer.kubectl("delete", "bsvc", name, check=False), "bandsy-own", "own")
        role = grant_team(kubectl, name)
        accepted(developer.kubectl("delete", "bsvc", name, "--wait=false", check=False))
        revoke(kubectl, role)
    finally:
        delete(kubectl, name)


# -- environments, stamps, the operator ---------------------------------------------------------


def test_environment_edits_follow_rbac(users: dict[str, Person], environments: None) -> None:
    change = ("patch", "benv", PRODUCTION, "--type=merge", "-p", '{"spec":{"config":{"X":"1"}}}')
    for role in ("developer", "other_team", "ci"):
        person = users[role]
        rbac_refused(person.kubectl(*change, check=False), person.name, "bandsyenvironments")
    # devops (bandsy:environment-editor); a server dry run: the shared environment is untouched.
    accepted(users["promoter"].kubectl(*change, "--dry-run=server", check=False))


def test_who_promoted_cannot_be_forged(
    kubectl: KubectlRunner, users: dict[str, Person], environments: None
) -> None:
    developer, promoter = users["developer"], users["promoter"]
    name = f"forge-{uid()}"
    kubectl.apply(service_body(name, tags(develop=dev_tag(), production="release-1"), port=8080))
    try:
        for person, key in (
            (developer, f"bandsy.app/promoted-by.{PRODUCTION}"),
            (developer, f"bandsy.app/promoted-by.{PREPROD}"),  # not even an environment of it
            (promoter, f"bandsy.app/promoted-at.{PRODUCTION}"),
            (promoter, "bandsy.app/skip-gates-at"),
        ):
            forged = {"metadata": {"annotations": {key: "2020-01-01T00:00:00Z"}}}
            refused(
                patch(person.kubectl, name, forged),
                "bandsy-promoted-by",
                f"{key} can only be written by the API server",
            )
        # Sent along with a real promote, the API server's stamp wins.
        disguised = tag_patch(DEVELOP, dev_tag())
        disguised["metadata"] = {"annotations": {f"bandsy.app/promoted-by.{DEVELOP}": "ops-bob"}}
        accepted(patch(developer.kubectl, name, disguised))
        stamps = annotations_of(kubectl, name)
        assert stamps[f"bandsy.app/promoted-by.{DEVELOP}"] == developer.name
        stamped_at = datetime.datetime.fromisoformat(stamps[f"bandsy.app/promoted-at.{DEVELOP}"])
        age = datetime.datetime.now(datetime.UTC) - stamped_at
        assert abs(age.total_seconds()) < 60, stamps
    finally:
        delete(kubectl, name)


def test_an_unstamped_promote_is_refused(
    kubectl: KubectlRunner, users: dict[str, Person], environments: None
) -> None:
    """Without the mutating policy (its binding deleted), nobody is recorded: the validating
    policy refuses every promote rather than let one pass unstamped."""
    kubectl("delete", "mutatingadmissionpolicybinding", "bandsy-promoted-by")
    try:
        body = service_body(f"unstamped-{uid()}", tags(develop=dev_tag()))

        def create() -> Result:
            return apply_as(users["developer"], body, "--dry-run=server")

        until(lambda: "does not carry the stamps" in create().stderr)
        refused(
            create(),
            "bandsy-promoted-by",
            f"this promote of {DEVELOP} does not carry the stamps",
            "MutatingAdmissionPolicy bandsy-promoted-by",
        )
    finally:
        rights.install(kubectl)  # back, and acting again


def test_a_malformed_service_gets_the_crds_message(
    users: dict[str, Person], environments: None
) -> None:
    """The mutating policy runs before the CRD's schema is checked and cannot read a malformed
    body; it yields (failurePolicy Ignore), so the person reads what is wrong with it."""
    body = service_body(f"bad-{uid()}", tags(develop=dev_tag()))
    body["spec"]["environments"] = [DEVELOP]
    create = ("create", "--dry-run=server", "-f", "-")
    result = users["developer"].kubectl(*create, input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "spec.environments in body must be of type object" in result.stderr, result.stderr
    assert "policy" not in result.stderr, result.stderr


@pytest.mark.asyncio(loop_scope="session")
async def test_the_operator_is_never_refused(
    kubectl: KubectlRunner,
    servers: dict[str, str],
    tmp_path: Path,
    owned: str,
    operator: OperatorProcess,
) -> None:
    """Its ServiceAccount is exempt from every policy (it writes status and finalizers only, but
    a policy must never stand between it and its finalizer): shown on an owned service in
    production, where it holds neither `own` nor `promote`. Its own client, as it patches."""
    token = kubectl(
        "-n", "bandsy-system", "create", "token", "bandsy-operator", "--duration=10m"
    ).stdout.strip()
    config = kubeconfig_with_token(
        servers["KUBECONFIG"], token, tmp_path / "operator.kubeconfig", "bandsy-operator"
    )
    assert can_i(KubectlRunner(config), "own", f"bandsyservices/{owned}") == "no"
    assert can_i(KubectlRunner(config), "promote", "bandsyenvironments/production") == "no"
    before = stamps_of(kubectl, owned)
    api = KubeApi.from_kubeconfig(config)
    try:
        for body, dry_run in (
            ({"metadata": {"labels": {"checked-by": "operator"}}}, False),
            (tag_patch(PRODUCTION, "release-9"), True),
        ):
            await api.client.patch(
                BandsyServiceResource, owned, body, patch_type=PatchType.MERGE, dry_run=dry_run
            )
    finally:
        await api.close()
    assert json.loads(kubectl("get", "bsvc", owned, "-o", "json").stdout)["metadata"]["labels"]
    # Nor stamped: what it writes is no one's promote.
    assert stamps_of(kubectl, owned) == before


def stamps_of(kubectl: KubectlRunner, name: str) -> dict[str, str]:
    return {
        key: value
        for key, value in annotations_of(kubectl, name).items()
        if key.startswith(("bandsy.app/promoted-", "bandsy.app/skip-gates"))
    }


# -- who promoted, break glass ------------------------------------------------------------------


async def _history(kube: KubeApi, name: str, env: str) -> list[dict[str, Any]]:
    obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
    assert obj is not None
    status = ((obj.get("status") or {}).get("environments") or {}).get(env) or {}
    return list(status.get("history") or [])


async def _running(kube: KubeApi, env: str, name: str) -> str | None:
    deployment = await kube.get(ObjectRef("apps/v1", "Deployment", env, name))
    if deployment is None:
        return None
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"]).rpartition(":")[2]


async def _rolls_out(kube: KubeApi, env: str, name: str, tag: str) -> None:
    async def running() -> bool:
        assert await _running(kube, env, name) == tag
        return True

    await eventually(running)
    await make_deployment_ready(kube, env, name)


async def _recorded(kube: KubeApi, name: str, env: str, tag: str, by: str) -> dict[str, Any]:
    async def newest() -> dict[str, Any]:
        history = await _history(kube, name, env)
        assert history, f"no rollout recorded in {env} yet"
        entry = history[0]
        assert (entry["tag"], entry.get("promotedBy")) == (tag, by), entry
        assert entry.get("readyAt"), entry
        return entry

    return await eventually(newest)


@pytest.mark.asyncio(loop_scope="session")
async def test_history_records_who_promoted_and_break_glass_serves_once(
    kube: KubeApi,
    kubectl: KubectlRunner,
    users: dict[str, Person],
    environments: None,
    operator: OperatorProcess,
) -> None:
    developer, promoter = users["developer"], users["promoter"]
    name = f"hist-{uid()}"
    first = dev_tag()
    body = service_body(name, tags(develop=first, preprod="release-1"), port=8080)
    accepted(apply_as(promoter, body))
    try:
        await _rolls_out(kube, PREPROD, name, "release-1")
        await _recorded(kube, name, PREPROD, "release-1", promoter.name)
        accepted(patch(promoter.kubectl, name, tag_patch(PRODUCTION, "release-1")))
        await _rolls_out(kube, PRODUCTION, name, "release-1")
        entry = await _recorded(kube, name, PRODUCTION, "release-1", promoter.name)
        assert entry["promotedAt"] <= entry["appliedAt"], entry

        second = dev_tag()
        accepted(patch(developer.kubectl, name, tag_patch(DEVELOP, second)))
        await _rolls_out(kube, DEVELOP, name, second)
        await _recorded(kube, name, DEVELOP, second, developer.name)

        # Break glass: release-2 straight into production, past preprod.
        glass = tag_patch(PRODUCTION, "release-2")
        glass["metadata"] = {"annotations": {"bandsy.app/skip-gates": f"{PRODUCTION}=release-2"}}
        accepted(patch(promoter.kubectl, name, glass))
        assert "bandsy.app/skip-gates-at" in annotations_of(kubectl, name)
        await _rolls_out(kube, PRODUCTION, name, "release-2")
        entry = await _recorded(kube, name, PRODUCTION, "release-2", promoter.name)
        assert entry["gatesSkipped"] is True
        (event,) = await events_about(kube, name, "GatesSkipped")
        assert event["type"] == "Warning"

        # Back to release-1 (it passes the gates), then release-2 again: the break glass served
        # its one rollout (release-2 ran Ready there since it was set), so the gates hold it.
        accepted(patch(promoter.kubectl, name, tag_patch(PRODUCTION, "release-1")))
        await _rolls_out(kube, PRODUCTION, name, "release-1")
        accepted(patch(promoter.kubectl, name, tag_patch(PRODUCTION, "release-2")))

        async def held() -> bool:
            obj = await kube.get(ObjectRef("bandsy.app/v1alpha1", "BandsyService", "", name))
            assert obj is not None
            status = obj["status"]["environments"][PRODUCTION]
            (blocked,) = [c for c in status["conditions"] if c["type"] == "PromotionBlocked"]
            assert blocked["reason"] == "NotReadyUpstream", status
            return True

        await eventually(held)
        assert await _running(kube, PRODUCTION, name) == "release-1"
        assert len(await events_about(kube, name, "GatesSkipped")) == 1
    finally:
        delete(kubectl, name)
