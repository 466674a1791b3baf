"""What an environment costs a month (SPEC §12), pure: OpenCost's allocation model without usage
data, i.e. what the pods request x replicas x 730 hours, at the environment's prices.

A container that requests nothing is priced at what the environment's LimitRange gives it
(``spec.defaults.requests``), as the API server would admit it; without those, at nothing, and
the service's line says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .models import Environment, Quantity, Service

HOURS_PER_MONTH = 730  # OpenCost's month: 365 x 24 / 12
GIB = Decimal(2**30)
GB = Decimal(10**9)
# OpenCost's default price sheet ("GCP us-central1", configs/default.json): CPU per core-hour
# and RAM per GB-hour, here per GiB-hour (x 2^30 / 10^9).
DEFAULT_CPU_CORE_HOUR = Decimal("0.031611")
DEFAULT_MEMORY_GIB_HOUR = Decimal("0.004237") * GIB / GB
DEFAULT_PRICES_NOTE = "OpenCost's default prices (GCP us-central1); set spec.cost to use yours"

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


class InvalidQuantityError(ValueError):
    pass


def parse_quantity(value: Quantity) -> Decimal:
    """A Kubernetes quantity (``500m``, ``1.5``, ``256Mi``, ``1G``, ``2e3``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise InvalidQuantityError(f"{value!r} is not a Kubernetes quantity")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise InvalidQuantityError(f"{value!r} is not a Kubernetes quantity") from None
    return number * _SUFFIXES[match.group(2) or ""]


@dataclass(frozen=True)
class Prices:
    cpu_core_hour: Decimal
    memory_gib_hour: Decimal
    defaults: bool  # OpenCost's, because the environment sets none

    @classmethod
    def of(cls, env: Environment) -> Prices:
        cost = env.spec.cost
        if cost is None or (cost.cpu_core_hour is None and cost.memory_gib_hour is None):
            return cls(DEFAULT_CPU_CORE_HOUR, DEFAULT_MEMORY_GIB_HOUR, defaults=True)
        return cls(
            Decimal(str(cost.cpu_core_hour or 0)),
            Decimal(str(cost.memory_gib_hour or 0)),
            defaults=False,
        )


@dataclass(frozen=True)
class ServiceCost:
    service: str
    replicas: int
    cpu_cores: Decimal  # requested per pod
    memory_gib: Decimal
    monthly: Decimal
    note: str = ""  # e.g. that it requests nothing

    def to_status(self) -> dict[str, Any]:
        line: dict[str, Any] = {
            "replicas": self.replicas,
            "cpu": _plain(self.cpu_cores),
            "memoryGiB": _plain(self.memory_gib.quantize(Decimal("0.001"))),
            "monthly": _money(self.monthly),
        }
        if self.note:
            line["note"] = self.note
        return line


@dataclass(frozen=True)
class EnvironmentCost:
    environment: str
    prices: Prices
    services: list[ServiceCost] = field(default_factory=list)
    budget: Decimal | None = None

    @property
    def monthly(self) -> Decimal:
        return sum((s.monthly for s in self.services), Decimal(0))

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.monthly > self.budget

    def to_status(self) -> dict[str, Any]:
        """``status.cost`` of the environment (money as strings: exact, and no float noise)."""
        status: dict[str, Any] = {
            "monthly": _money(self.monthly),
            "prices": {
                "cpuCoreHour": _plain(self.prices.cpu_core_hour),
                "memoryGiBHour": _plain(self.prices.memory_gib_hour.quantize(Decimal("1e-9"))),
                "source": "defaults" if self.prices.defaults else "spec.cost",
            },
        }
        if self.services:  # an empty map would reach the API server as null
            status["byService"] = {s.service: s.to_status() for s in self.services}
        if self.budget is not None:
            status["monthlyBudget"] = _money(self.budget)
        return status


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def service_cost(service: Service, env: Environment, prices: Prices) -> ServiceCost:
    """Requests x replicas x 730 h: the service's own requests in ``env`` (its per-environment
    override, else its default), else the environment's LimitRange defaults."""
    replicas = service.replicas_in(env.name)
    requests: Mapping[str, Quantity] = dict(service.resources_in(env.name).requests)
    defaults = env.spec.defaults.requests.given()
    note = ""
    for resource in ("cpu", "memory"):
        if resource not in requests:
            if resource in defaults:
                requests = {**requests, resource: defaults[resource]}
            else:
                note = f"requests no {resource}: counted as none (set resources.requests)"
    cpu = parse_quantity(requests["cpu"]) if "cpu" in requests else Decimal(0)
    memory_gib = parse_quantity(requests["memory"]) / GIB if "memory" in requests else Decimal(0)
    per_hour = cpu * prices.cpu_core_hour + memory_gib * prices.memory_gib_hour
    monthly = per_hour * HOURS_PER_MONTH * replicas
    return ServiceCost(service.name, replicas, cpu, memory_gib, monthly, note)


def environment_cost(env: Environment, services: Iterable[Service]) -> EnvironmentCost:
    """Every service deployed in ``env`` and not suspended (a suspended one still runs, as the
    operator left it: it counts too)."""
    prices = Prices.of(env)
    lines = sorted(
        (service_cost(s, env, prices) for s in services if env.name in s.spec.environments),
        key=lambda line: line.service,
    )
    budget = env.spec.cost.monthly_budget if env.spec.cost else None
    return EnvironmentCost(
        env.name, prices, lines, Decimal(str(budget)) if budget is not None else None
    )
