from __future__ import annotations

import pytest

from bandsy_operator import naming
from bandsy_operator.validation import environment_problems
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
        "ExternalNotAllowed",
    ]
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
