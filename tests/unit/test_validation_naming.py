from __future__ import annotations

from typing import Any

import pytest

from bandsy_operator import naming
from bandsy_operator.backends import Account, ServerUnreachableError
from bandsy_operator.models import Environment
from bandsy_operator.reconcile.databases import (
    AccountRef,
    DatabaseReconciler,
    DatabaseResult,
    PendingAccount,
)
from bandsy_operator.validation import (
    environment_problems,
    exposure_refused,
    quota_without_defaults,
    shared_credentials,
    sharing_refused,
)
from factories import environment, service, tags


def test_problems_name_what_is_wrong() -> None:
    envs = {"develop": environment("develop", ingress={"allowedServices": ["web"]})}
    api = service("api", tags(preprod="release-1"), port=9000)
    worker = service("worker", tags(develop="d1"))
    admin = service(
        "admin",
        tags(develop="d1", staging="s1"),
        port=80,
        external=True,
        dependsOn=["api", "worker", "ghost"],
    )
    services = {s.name: s for s in (api, worker, admin)}
    reasons = [p.reason for p in environment_problems(admin, "develop", envs, services)]
    assert reasons == [
        "DependencyNotInEnvironment",
        "DependencyHasNoPort",
        "UnknownDependency",
    ]
    # Not allowed to be external here is no reason not to run it: it runs without an Ingress.
    refused = exposure_refused(admin, envs["develop"])
    assert refused is not None
    assert "allowedServices: web" in refused
    assert (
        exposure_refused(admin, environment("other", ingress={"allowedServices": ["admin"]}))
        is None
    )
    assert exposure_refused(worker, envs["develop"]) is None
    (unknown,) = environment_problems(admin, "staging", envs, services)
    assert unknown.reason == "UnknownEnvironment"
    assert environment_problems(worker, "develop", envs, services) == []


def test_names() -> None:
    assert naming.external_host("preprod", "web", "bandsy.app") == "preprod.web.bandsy.app"
    assert naming.internal_host("api", "production") == "api.production.svc.cluster.local"
    assert naming.dependency_url_key("billing-api") == "BILLING_API_URL"
    assert naming.render_template("{service}-{env}", "web", "develop") == "web-develop"
    with pytest.raises(naming.InvalidNameError, match="unknown placeholder"):
        naming.render_template("{service}-{team}", "web", "develop")


PG = {"host": "db.example", "adminSecretRef": {"namespace": "default", "name": "pg"}}


def env_with(name: str, user_template: str = "{service}-user", **spec: Any) -> Environment:
    return environment(name, postgres={**PG, "userTemplate": user_template}, **spec)


@pytest.mark.parametrize(
    ("spec", "protected"),
    [
        ({}, False),
        ({"promotion": {"from": "develop"}}, True),
        ({"protected": True}, True),
        ({"promotion": {"from": "develop"}, "protected": False}, False),
    ],
)
def test_protection_defaults(spec: dict[str, Any], protected: bool) -> None:
    assert environment("preprod", **spec).protected is protected
    assert environment("production").protected is True
    assert environment("production", protected=False).protected is False


def test_a_protected_environment_never_shares_a_role_with_an_unprotected_one() -> None:
    develop = env_with("develop")
    production = env_with("production")
    preprod = env_with("preprod", protected=True)
    envs = {e.name: e for e in (develop, production, preprod)}
    # production would log in as develop's role: refused there, not in develop.
    assert sharing_refused(production, envs, "postgres", "web") == ["develop"]
    assert sharing_refused(develop, envs, "postgres", "web") == []
    shared, refused = shared_credentials(production, envs)
    assert refused == ["postgres users with develop (db.example:5432)"]
    assert shared == ["postgres users with preprod (db.example:5432)"]  # both protected
    # Its own role ({env}) or an explicit allowance lifts the refusal.
    own = env_with("production", "{service}-{env}-user")
    assert sharing_refused(own, {**envs, "production": own}, "postgres", "web") == []
    allowed = environment(
        "production",
        postgres={**PG, "allowSharedCredentials": True, "userTemplate": "{service}-user"},
    )
    assert sharing_refused(allowed, {**envs, "production": allowed}, "postgres", "web") == []
    # Templates that differ but render the same role still share it.
    spelled = env_with("develop", "{service}-production-user")
    mixed = {"develop": spelled, "production": own}
    assert sharing_refused(own, mixed, "postgres", "web") == ["develop"]


def test_planning_refuses_shared_roles_and_moved_databases() -> None:
    planner = DatabaseReconciler(None, None, {})  # type: ignore[arg-type]  # plan() does no I/O
    web = service("web", tags(develop="d1", production="r1"), postgres={"enabled": True})
    develop, production = env_with("develop"), env_with("production")
    envs = {"develop": develop, "production": production}
    accounts, problems = planner.plan(web, production, envs)
    assert accounts == []
    assert [p.reason for p in problems] == ["SharedCredentialsRefused"]
    assert "{env}" in problems[0].message
    assert "develop" in problems[0].message

    # The environment's server moved under an account the service holds: refused, not moved.
    held = AccountRef("develop", "postgres", "old.example:5432", "web-user", "web-develop")
    accounts, problems = planner.plan(web, develop, envs, {held})
    assert accounts == []
    assert [p.reason for p in problems] == ["DatabaseSettingsChanged"]
    assert "old.example:5432" in problems[0].message
    # Unless the environment says it is a move.
    moving = environment("develop", postgres={**PG, "userTemplate": "{service}-user"}).model_copy(
        update={
            "meta": develop.meta.model_copy(
                update={"annotations": {"bandsy.app/move-databases": "true"}}
            )
        }
    )
    accounts, problems = planner.plan(web, moving, envs, {held})
    assert problems == []
    assert [a.server for a in accounts] == ["db.example:5432"]
    # Another user on the same server and database is no move (a template fix, say).
    renamed = AccountRef("develop", "postgres", "db.example:5432", "old-user", "web-develop")
    assert planner.plan(web, develop, envs, {renamed})[1] == []


@pytest.mark.parametrize(
    ("quota", "defaults", "uncovered"),
    [
        ({}, {}, {}),
        ({"pods": "60", "services": "10"}, {}, {}),
        (
            {"requests.cpu": "8", "requests.memory": "16Gi", "pods": "60"},
            {},
            {"requests.cpu": "requests.cpu", "requests.memory": "requests.memory"},
        ),
        ({"cpu": "8", "memory": "16Gi"}, {}, {"cpu": "requests.cpu", "memory": "requests.memory"}),
        (
            {"requests.cpu": "8", "requests.memory": "16Gi"},
            {"requests": {"cpu": "100m", "memory": "128Mi"}},
            {},
        ),
        # A default limit is the default request too.
        ({"requests.memory": "16Gi"}, {"limits": {"memory": "256Mi"}}, {}),
        # A default request is no limit.
        (
            {"limits.memory": "32Gi", "requests.cpu": "8"},
            {"requests": {"cpu": "100m", "memory": "128Mi"}},
            {"limits.memory": "limits.memory"},
        ),
        ({"limits.cpu": "8"}, {"limits": {"cpu": "1"}}, {}),
    ],
)
def test_a_quota_on_what_no_default_covers_refuses_pods(
    quota: dict[str, str], defaults: dict[str, Any], uncovered: dict[str, str]
) -> None:
    env = environment("production", quota=quota, defaults=defaults)
    assert quota_without_defaults(env) == uncovered


def test_database_ready_is_said_once_every_server_was_asked() -> None:
    ref = AccountRef("develop", "postgres", "10.99.0.1:5432", "api-user", "api-develop")
    result = DatabaseResult(accounts=[ref])
    result.pending = [PendingAccount(ref, Account("api-user", database="api-develop"), "pw")]
    assert result.condition is None  # credentials only: no server asked yet
    assert "pw" not in repr(result.pending)
    result.pending = []
    assert result.condition is not None
    assert (result.condition.status, result.condition.reason) == ("True", "DatabaseReady")
    assert not result.retry
    result.failures.append(ServerUnreachableError("10.99.0.1:5432 did not answer"))
    assert result.condition is not None
    assert (result.condition.status, result.condition.reason) == ("False", "DatabaseUnreachable")
    assert result.retry
    assert DatabaseResult().condition is None
