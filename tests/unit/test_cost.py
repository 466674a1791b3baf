"""What an environment costs (SPEC §12): quantities, requests x replicas x 730 h at the
environment's prices (OpenCost's defaults where unset), the budget, and `bandsyctl cost`."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bandsy_operator.cli import cost_rows
from bandsy_operator.cost import (
    DEFAULT_CPU_CORE_HOUR,
    DEFAULT_PRICES_NOTE,
    InvalidQuantityError,
    Prices,
    environment_cost,
    parse_quantity,
    service_cost,
)
from bandsy_operator.reconcile.environment import budget_condition
from bandsy_operator.world import World
from factories import _stored, environment, environment_body, service, service_body, tags

PRICES = {"cpuCoreHour": 0.04, "memoryGiBHour": 0.005}


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        (2, Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("256Mi", Decimal(256 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1G", Decimal(10**9)),
        ("2e3", Decimal(2000)),
        ("100k", Decimal(100_000)),
    ],
)
def test_kubernetes_quantities(quantity: str | int, value: Decimal) -> None:
    assert parse_quantity(quantity) == value


@pytest.mark.parametrize("bad", ["", "1Gb", "one", "1 Gi", "--1"])
def test_not_a_quantity(bad: str) -> None:
    with pytest.raises(InvalidQuantityError):
        parse_quantity(bad)


def test_requests_times_replicas_times_730_hours() -> None:
    env = environment("develop", cost=PRICES)
    api = service(
        "api",
        {"develop": {"image": {"tag": "v1"}, "replicas": 3}},
        resources={"requests": {"cpu": "500m", "memory": "512Mi"}},
    )
    line = service_cost(api, env, Prices.of(env))
    # (0.5 x 0.04 + 0.5 x 0.005) x 730 x 3
    assert line.monthly == Decimal("0.0225") * 730 * 3
    assert line.to_status() == {
        "replicas": 3,
        "cpu": "0.5",
        "memoryGiB": "0.5",
        "monthly": "49.28",
    }


def test_an_environment_override_wins_and_limitrange_defaults_fill_in() -> None:
    env = environment(
        "develop", cost=PRICES, defaults={"requests": {"cpu": "100m", "memory": "128Mi"}}
    )
    overridden = service(
        "api",
        {"develop": {"image": {"tag": "v1"}, "resources": {"requests": {"cpu": "2"}}}},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
    )
    line = service_cost(overridden, env, Prices.of(env))
    assert (line.cpu_cores, line.memory_gib) == (Decimal(2), Decimal("0.125"))
    bare = service("web", {"develop": {"image": {"tag": "v1"}}})
    line = service_cost(bare, environment("develop", cost=PRICES), Prices.of(env))
    assert line.monthly == 0
    assert "requests no memory" in line.note


def test_opencost_default_prices_and_the_budget() -> None:
    env = environment("develop", cost={"monthlyBudget": 20})
    prices = Prices.of(env)
    assert prices.defaults
    assert prices.cpu_core_hour == DEFAULT_CPU_CORE_HOUR
    api = service(
        "api",
        {"develop": {"image": {"tag": "v1"}}, "production": {"image": {"tag": "v1"}}},
        replicas=2,
        resources={"requests": {"cpu": "1", "memory": "1Gi"}},
    )
    cost = environment_cost(env, [api, service("qa-only", {"qa": {"image": {"tag": "v1"}}})])
    assert [line.service for line in cost.services] == ["api"]
    assert cost.over_budget
    status = cost.to_status()
    assert status["prices"]["source"] == "defaults"
    assert status["monthlyBudget"] == "20.00"
    over = budget_condition(cost)
    assert (over.status, over.reason) == ("True", "BudgetExceeded")
    assert "api" in over.message
    within = budget_condition(
        environment_cost(environment("develop", cost={"monthlyBudget": 99}), [api])
    )
    assert (within.status, within.reason) == ("False", "WithinBudget")
    assert budget_condition(environment_cost(environment("develop"), [api])).reason == "NoBudget"


def test_bandsyctl_cost_lines_and_notes() -> None:
    world = World()
    world.observe_environment(_stored(environment_body("develop", cost=PRICES), "uid-d"))
    world.observe_environment(_stored(environment_body("qa", cost={"monthlyBudget": 1}), "uid-q"))
    body = service_body(
        "api", tags(develop="v1", qa="v1"), resources={"requests": {"cpu": "1", "memory": "1Gi"}}
    )
    world.observe_service(_stored(body, "uid-api"))
    rows, notes = cost_rows(world, None)
    assert [(r["environment"], r["service"]) for r in rows] == [
        ("develop", "api"),
        ("develop", "(total)"),
        ("qa", "api"),
        ("qa", "(total)"),
    ]
    assert rows[0]["monthly"] == rows[1]["monthly"] == "32.85"  # (0.04 + 0.005) x 730
    assert rows[3]["note"] == "budget 1.00"
    # OpenCost's: (0.031611 + 0.004237 x 2^30 / 10^9) x 730 = 26.397...
    assert notes == ["qa: 26.40 a month is over its budget of 1.00", f"qa: {DEFAULT_PRICES_NOTE}"]
    assert [r["environment"] for r in cost_rows(world, "qa")[0]] == ["qa", "qa"]
