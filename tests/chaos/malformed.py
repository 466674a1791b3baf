"""Hypothesis strategies for malformed BandsyService and BandsyEnvironment bodies, and the
operator's own verdict on a body the API server accepted.

A body is a valid base with one to three mutations: wrong types and unknown fields anywhere the
CRD schema has a place (both read from crds/), out-of-range numbers, bad names, templates, tags,
enums and patterns, and references the CRD cannot check (unknown environments and dependencies,
external where not allowed, a database the environment lacks, names too long for PostgreSQL).
"""

from __future__ import annotations

import copy
import itertools
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml
from hypothesis import strategies as st
from pydantic import ValidationError

from bandsy_operator.models import Environment, Service, parse_environment, parse_service
from bandsy_operator.reconcile.databases import DatabaseReconciler
from bandsy_operator.validation import environment_problems
from conftest import REPO_ROOT
from factories import environment_body, service_body, tags

SERVICE, ENVIRONMENT = "BandsyService", "BandsyEnvironment"
ENV = object()  # in a path: the environment the base service is deployed to
# Keys a map in the schema gets when a path goes through it (valid ones: only the value is bad).
MAP_KEYS = {
    "config": "CHAOS_KEY",
    "quota": "pods",
    "requests": "cpu",
    "limits": "cpu",
    "podSelector": "app",
}
Path = tuple[Any, ...]


@dataclass(frozen=True)
class Context:
    """What a body may refer to: its unique name and objects that exist in the cluster."""

    name: str
    labels: Mapping[str, str]
    environment: str  # has postgres and redis, no mongo, allows no external service but web
    portless: str  # a service in `environment` without a port
    elsewhere: str  # a service that is not in `environment`
    long_names_environment: str  # its database template overflows 63 bytes for long names


@dataclass(frozen=True)
class Mutation:
    what: str
    apply: Callable[[dict[str, Any], Context], None]

    def __repr__(self) -> str:
        return self.what


@dataclass(frozen=True)
class Recipe:
    kind: str
    mutations: tuple[Mutation, ...]

    def body(self, ctx: Context) -> dict[str, Any]:
        body = base_service(ctx) if self.kind == SERVICE else base_environment(ctx)
        for mutation in self.mutations:
            mutation.apply(body, ctx)
        return body

    def describe(self) -> str:
        return f"{self.kind}: " + "; ".join(m.what for m in self.mutations)


def base_service(ctx: Context) -> dict[str, Any]:
    body = service_body(ctx.name, tags(**{ctx.environment: "v1"}))
    body["metadata"]["labels"] = dict(ctx.labels)
    return body


def base_environment(ctx: Context) -> dict[str, Any]:
    ref = {"namespace": "default", "name": "chaos-unused-admin"}
    body = environment_body(
        ctx.name,
        deletionPolicy="Delete",
        postgres={"host": "127.0.0.1", "adminSecretRef": ref, "egressTo": {"cidr": "10.0.0.0/8"}},
        redis={"host": "127.0.0.1", "adminSecretRef": ref},
    )
    body["metadata"]["labels"] = dict(ctx.labels)
    return body


# -- paths ----------------------------------------------------------------------------------------


def _resolve(path: Path, ctx: Context) -> Path:
    return tuple(ctx.environment if part is ENV else part for part in path)


def set_at(body: dict[str, Any], path: Path, value: Any) -> None:
    """Set ``value`` at ``path``, creating (or replacing wrongly typed) parents on the way."""
    node: Any = body
    for key, child_key in itertools.pairwise(path):
        want_list = isinstance(child_key, int)
        if isinstance(node, list):
            while len(node) <= key:
                node.append([] if want_list else {})
            child = node[key]
        else:
            child = node.get(key)
        if not isinstance(child, list if want_list else dict):
            child = [] if want_list else {}
            node[key] = child
        node = child
    last = path[-1]
    if isinstance(node, list):
        while len(node) <= last:
            node.append({})
    node[last] = value


def obj_at(body: dict[str, Any], path: Path) -> dict[str, Any]:
    """The object at ``path``, created (or replacing what an earlier mutation put there)."""
    node = body
    for key in path:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    return node


def setter(path: Path, value: Any) -> Callable[[dict[str, Any], Context], None]:
    def apply(body: dict[str, Any], ctx: Context) -> None:
        set_at(body, _resolve(path, ctx), copy.deepcopy(value))

    return apply


def _show(path: Path) -> str:
    return ".".join("<env>" if p is ENV else f"[{p}]" if isinstance(p, int) else p for p in path)


def mutation(path: Path, value: Any, why: str = "") -> Mutation:
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    return Mutation(f"{_show(path)} = {shown}" + (f" ({why})" if why else ""), setter(path, value))


# -- the CRD schemas ------------------------------------------------------------------------------


@cache
def schema(kind: str) -> dict[str, Any]:
    plural = "bandsyservices" if kind == SERVICE else "bandsyenvironments"
    crd = yaml.safe_load((REPO_ROOT / "crds" / f"bandsy.app_{plural}.yaml").read_text())
    root: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def _walk(node: dict[str, Any], path: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        if path or name == "spec":  # the object's own fields; metadata is the API server's
            found += _walk(child, (*path, name))
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        key = ENV if path[-1] == "environments" else MAP_KEYS.get(path[-1], "key")
        found += _walk(additional, (*path, key))
    if "items" in node:
        found += _walk(node["items"], (*path, 0))
    return found


def _type(node: dict[str, Any]) -> str | None:
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = node.get("type")
    return str(kind) if kind else None


@cache
def typed_paths(kind: str) -> list[tuple[Path, str]]:
    """Every place in the CRD's spec with a declared type."""
    return [(path, t) for path, node in _walk(schema(kind), ()) if (t := _type(node)) and path]


@cache
def object_places(kind: str) -> list[tuple[Path, frozenset[str]]]:
    """Every object with fixed properties (no free-form map): where an unknown field is one."""
    return [
        (path, frozenset(node["properties"]))
        for path, node in _walk(schema(kind), ())
        if node.get("properties") and path
    ]


def fits(value: Any, kind: str) -> bool:
    integral = isinstance(value, int | float) and not isinstance(value, bool)
    integral = integral and float(value).is_integer()
    return {
        "string": isinstance(value, str),
        "integer": integral,
        "boolean": isinstance(value, bool),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "int-or-string": integral or isinstance(value, str),
    }[kind]


JSON_VALUES = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=3), st.integers(0, 9)),
)


def wrong_type(kind: str) -> st.SearchStrategy[Mutation]:
    def wrong(place: tuple[Path, str]) -> st.SearchStrategy[Mutation]:
        path, expected = place
        values = JSON_VALUES.filter(lambda v: not fits(v, expected))
        return values.map(lambda v: mutation(path, v, f"not {expected}"))

    return st.sampled_from(typed_paths(kind)).flatmap(wrong)


FIELD_NAMES = st.from_regex(r"\A[a-z][a-zA-Z0-9]{0,11}\Z")


def unknown_field(kind: str) -> st.SearchStrategy[Mutation]:
    def add(place: tuple[Path, frozenset[str]]) -> st.SearchStrategy[Mutation]:
        path, known = place
        return st.tuples(FIELD_NAMES.filter(lambda f: f not in known), JSON_VALUES).map(
            lambda fv: mutation((*path, fv[0]), fv[1], "unknown field")
        )

    return st.sampled_from(object_places(kind)).flatmap(add)


def not_matching(pattern: str, strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    compiled = re.compile(pattern)
    return strategy.filter(lambda s: compiled.fullmatch(s) is None)


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
DNS_LABEL = r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?"
ENV_NAME = r"[a-z][a-z0-9-]{0,19}"
SUFFIX = st.from_regex(r"\A[a-z0-9]{1,8}\Z")


def bad_name(limit: int) -> st.SearchStrategy[Mutation]:
    """Names the CRD refuses: cases that are easy to get wrong, and generated noise."""

    def rename(transform: Callable[[str], str], why: str) -> Mutation:
        def apply(body: dict[str, Any], ctx: Context) -> None:
            body["metadata"]["name"] = transform(ctx.name)

        return Mutation(f"metadata.name {why}", apply)

    fixed = [
        rename(str.upper, "in capitals"),
        rename(lambda n: f"0{n}", "starting with a digit"),
        rename(lambda n: f"-{n}", "starting with a hyphen"),
        rename(lambda n: f"{n}-", "ending with a hyphen"),
        rename(lambda n: n.replace("-", "_"), "with an underscore"),
        rename(lambda n: f"{n}.x", "with a dot"),
        rename(lambda n: f"{n} x", "with a space"),
        rename(lambda n: "", "empty"),
    ]
    too_long = st.integers(limit + 1, limit + 30).map(
        lambda size: rename(lambda n: (n + "-" + "x" * size)[:size], f"of {size} characters")
    )
    # Appended noise with a character no name may have ('0' would leave a valid name).
    noise = TEXT.filter(lambda s: re.search(r"[^a-z0-9-]", s) is not None).map(
        lambda extra: rename(lambda n: n + extra, f"+ {extra!r}")
    )
    return st.one_of(st.sampled_from(fixed), too_long, noise)


def quantity_text() -> st.SearchStrategy[str]:
    number = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    quantity = rf"(\+|-)?{number}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{number}))?"
    return not_matching(quantity, st.text("0123456789.abcGMKi xyz-+", max_size=6))


# -- BandsyService --------------------------------------------------------------------------------


def _env_replacement(environments: dict[str, Any], why: str) -> Mutation:
    return mutation(("spec", "environments"), environments, why)


def service_references() -> st.SearchStrategy[Mutation]:
    """Accepted by the API server, refused by the operator: it needs other objects to know."""

    def depend(on: Callable[[Context], str], why: str) -> Mutation:
        def apply(body: dict[str, Any], ctx: Context) -> None:
            obj_at(body, ("spec",))["dependsOn"] = [on(ctx)]

        return Mutation(f"dependsOn {why}", apply)

    def long_database_name(size: int) -> Mutation:
        def apply(body: dict[str, Any], ctx: Context) -> None:
            body["metadata"]["name"] = ctx.name + "-" + "x" * (size - len(ctx.name) - 1)
            obj_at(body, ("spec",)).update(
                environments=tags(**{ctx.long_names_environment: "v1"}), postgres={"enabled": True}
            )

        return Mutation(f"a {size}-character name where the database name exceeds 63 bytes", apply)

    def mongo(body: dict[str, Any], ctx: Context) -> None:
        obj_at(body, ("spec",))["mongo"] = {"enabled": True}

    def external(body: dict[str, Any], ctx: Context) -> None:
        obj_at(body, ("spec",)).update(external=True, port=8080)

    return st.one_of(
        SUFFIX.map(
            lambda s: _env_replacement(tags(**{f"nowhere-{s}": "v1"}), "an unknown environment")
        ),
        SUFFIX.map(lambda s: mutation(("spec", "dependsOn"), [f"ghost-{s}"], "unknown service")),
        st.just(depend(lambda ctx: ctx.portless, "a service without a port")),
        st.just(depend(lambda ctx: ctx.elsewhere, "a service not in the environment")),
        st.just(Mutation("mongo enabled where the environment has no mongo", mongo)),
        st.just(Mutation("external where the environment does not allow it", external)),
        st.integers(30, 40).map(long_database_name),
    )


def service_out_of_range() -> st.SearchStrategy[Mutation]:
    negative = st.integers(-(10**6), -1)
    return st.one_of(
        st.one_of(st.integers(-100, 0), st.integers(65536, 10**9)).map(
            lambda v: mutation(("spec", "port"), v)
        ),
        st.integers(2**63, 2**70).map(lambda v: mutation(("spec", "port"), v, "beyond int64")),
        st.one_of(negative, st.integers(51, 10**6)).map(
            lambda v: mutation(("spec", "replicas"), v)
        ),
        st.one_of(negative, st.integers(51, 10**6)).map(
            lambda v: mutation(("spec", "environments", ENV, "replicas"), v)
        ),
        st.one_of(st.integers(-5, 15), st.integers(129, 10**4)).map(
            lambda v: mutation(
                ("spec", "secrets"), [{"name": "GENERATED", "generate": {"length": v}}]
            )
        ),
        st.integers(256, 300).map(
            lambda n: mutation(("spec", "image", "repository"), "a" * n, "too long")
        ),
        st.integers(129, 200).map(
            lambda n: mutation(("spec", "environments", ENV, "image", "tag"), "v" * n, "too long")
        ),
        st.integers(33, 40).map(
            lambda n: mutation(("spec", "dependsOn"), [f"dep-{i}" for i in range(n)], "too many")
        ),
        st.integers(17, 20).map(
            lambda n: _env_replacement(tags(**{f"e{i}": "v1" for i in range(n)}), "too many")
        ),
        st.integers(257, 260).map(
            lambda n: mutation(("spec", "config"), {f"K{i}": "v" for i in range(n)}, "too many")
        ),
        st.integers(4097, 4200).map(
            lambda n: mutation(("spec", "config"), {"BIG": "v" * n}, "value too long")
        ),
        st.integers(17, 20).map(
            lambda n: mutation(
                ("spec", "postgres"),
                {"enabled": True, "extensions": [f"e{i}" for i in range(n)]},
                "too many extensions",
            )
        ),
        st.integers(65, 70).map(
            lambda n: mutation(
                ("spec", "secrets"), [{"name": f"S{i}"} for i in range(n)], "too many secrets"
            )
        ),
    )


def service_patterns() -> st.SearchStrategy[Mutation]:
    """Strings that miss their pattern or rule."""
    tag = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
    repository = r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
    key = r"[A-Z_][A-Z0-9_]*"
    extension = r"[a-z_][a-z0-9_]*"
    bad_env_key = not_matching(
        ENV_NAME,
        st.one_of(
            st.text(string.ascii_uppercase, min_size=1, max_size=5),
            st.from_regex(r"\A[0-9-][a-z0-9-]{0,5}\Z"),
            st.integers(21, 30).map(lambda n: "e" * n),
            TEXT,
        ),
    )
    return st.one_of(
        not_matching(tag, TEXT).map(
            lambda t: mutation(("spec", "environments", ENV, "image", "tag"), t, "bad tag")
        ),
        st.just(mutation(("spec", "environments", ENV, "image", "tag"), "latest", "not develop")),
        not_matching(repository, TEXT).map(
            lambda r: mutation(("spec", "image", "repository"), r, "bad repository")
        ),
        bad_env_key.map(lambda k: _env_replacement(tags(**{k: "v1"}), "bad environment name")),
        st.just(
            mutation(("spec", "environments", ENV), {"replicas": 1}, "environment without image")
        ),
        st.just(mutation(("spec", "environments", ENV, "image"), {}, "image without tag")),
        not_matching(key, TEXT.filter(bool)).map(
            lambda k: mutation(("spec", "config"), {k: "v"}, "bad config key")
        ),
        not_matching(key, TEXT).map(
            lambda k: mutation(("spec", "secrets"), [{"name": k}], "bad secret name")
        ),
        st.just(mutation(("spec", "secrets"), [{"name": "K"}, {"name": "K"}], "duplicate")),
        st.just(
            Mutation(
                "a key both config and secret",
                lambda body, ctx: obj_at(body, ("spec",)).update(
                    config={"SAME": "v"}, secrets=[{"name": "SAME"}]
                ),
            )
        ),
        not_matching(extension, TEXT).map(
            lambda e: mutation(
                ("spec", "postgres"), {"enabled": True, "extensions": [e]}, "bad extension"
            )
        ),
        st.just(mutation(("spec", "external"), True, "external without a port")),
        st.just(mutation(("spec", "healthCheck"), {"path": "/healthz"}, "health check, no port")),
        not_matching(r"/[^\s]*", TEXT).map(
            lambda p: Mutation(
                f"healthCheck.path = {p!r}",
                lambda body, ctx: obj_at(body, ("spec",)).update(
                    port=8080, healthCheck={"path": p}
                ),
            )
        ),
        quantity_text().map(
            lambda q: mutation(("spec", "resources", "requests", "cpu"), q, "bad quantity")
        ),
        TEXT.filter(lambda p: p not in ("Retain", "Delete")).map(
            lambda p: mutation(("spec", "postgres", "reclaimPolicy"), p, "unknown policy")
        ),
        st.just(
            Mutation(
                "reclaimPolicy Delete with production",
                lambda body, ctx: obj_at(body, ("spec",)).update(
                    postgres={"enabled": True, "reclaimPolicy": "Delete"},
                    environments={
                        **obj_at(body, ("spec", "environments")),
                        **tags(production="v1"),
                    },
                ),
            )
        ),
        st.just(
            Mutation(
                "depends on itself",
                lambda body, ctx: obj_at(body, ("spec",)).update(dependsOn=[ctx.name]),
            )
        ),
        not_matching(DNS_LABEL, TEXT).map(
            lambda d: mutation(("spec", "dependsOn"), [d], "bad dependency name")
        ),
        st.just(mutation(("spec", "dependsOn"), ["ghost-a", "ghost-a"], "duplicate dependency")),
        st.just(Mutation("no image", lambda body, ctx: obj_at(body, ("spec",)).pop("image", None))),
        st.just(Mutation("no spec", lambda body, ctx: body.pop("spec", None))),
    )


# -- BandsyEnvironment ----------------------------------------------------------------------------


def environment_out_of_range() -> st.SearchStrategy[Mutation]:
    return st.one_of(
        st.one_of(st.integers(-(10**6), -1), st.integers(2592001, 10**9)).map(
            lambda v: mutation(("spec", "promotion", "soakSeconds"), v)
        ),
        st.one_of(st.integers(-100, 0), st.integers(65536, 10**9)).map(
            lambda v: mutation(("spec", "postgres", "port"), v)
        ),
        st.integers(33, 40).map(
            lambda n: mutation(("spec", "quota"), {f"q{i}": "1" for i in range(n)}, "too many")
        ),
        st.integers(257, 300).map(
            lambda n: mutation(("spec", "imagePolicy", "tagPattern"), "x" * n, "too long")
        ),
        st.integers(201, 240).map(
            lambda n: mutation(("spec", "ingress", "domain"), "a" * (n - 4) + ".com", "too long")
        ),
        st.integers(64, 80).map(lambda n: mutation(("spec", "namespace"), "n" * n, "too long")),
        st.integers(101, 110).map(
            lambda n: mutation(
                ("spec", "ingress", "allowedServices"), [f"s{i}" for i in range(n)], "too many"
            )
        ),
        st.integers(33, 40).map(
            lambda n: mutation(("spec", "access", "viewers"), [f"g{i}" for i in range(n)])
        ),
        st.just(mutation(("spec", "access", "editors"), [""], "empty group")),
        st.just(mutation(("spec", "postgres", "host"), "", "empty host")),
        st.integers(254, 300).map(lambda n: mutation(("spec", "redis", "host"), "h" * n)),
    )


TEMPLATE = r"([a-z0-9_-]|\{service\}|\{env\})+"
PREFIX_TEMPLATE = r"([a-z0-9_:.-]|\{service\}|\{env\})+"


def _valid_template(value: str, pattern: str, limit: int) -> bool:
    return bool(re.fullmatch(pattern, value)) and "{service}" in value and len(value) <= limit


def environment_patterns() -> st.SearchStrategy[Mutation]:
    templates = [
        (("spec", "postgres", "userTemplate"), TEMPLATE, 63),
        (("spec", "postgres", "databaseTemplate"), TEMPLATE, 63),
        (("spec", "redis", "userTemplate"), TEMPLATE, 63),
        (("spec", "redis", "keyPrefixTemplate"), PREFIX_TEMPLATE, 128),
    ]
    template_values = st.one_of(
        st.from_regex(r"\A[a-z0-9_-]{1,12}\Z"),  # no {service}
        TEXT.map(lambda s: "{service}" + s),
        st.sampled_from(["{service}-{team}", "{Service}", "{service", "{{service}}"]),
        st.integers(55, 130).map(lambda n: "{service}" + "x" * n),
    )

    def bad_template(place: tuple[Path, str, int]) -> st.SearchStrategy[Mutation]:
        path, pattern, limit = place
        return template_values.filter(lambda v: not _valid_template(v, pattern, limit)).map(
            lambda v: mutation(path, v, "bad template")
        )

    def enum(path: Path, allowed: set[str]) -> st.SearchStrategy[Mutation]:
        return TEXT.filter(lambda v: v not in allowed).map(lambda v: mutation(path, v, "enum"))

    namespace = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    domain = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+"
    return st.one_of(
        st.sampled_from(templates).flatmap(bad_template),
        enum(("spec", "podSecurity"), {"privileged", "baseline", "restricted"}),
        enum(("spec", "deletionPolicy"), {"Retain", "Delete"}),
        enum(
            ("spec", "postgres", "sslMode"),
            {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"},
        ),
        st.just(
            Mutation(
                "promotion from itself",
                lambda body, ctx: obj_at(body, ("spec",)).update(promotion={"from": ctx.name}),
            )
        ),
        not_matching(ENV_NAME, TEXT).map(lambda v: mutation(("spec", "promotion", "from"), v)),
        st.just(
            mutation(
                ("spec", "postgres", "egressTo"),
                {"namespace": "db", "cidr": "10.0.0.0/8"},
                "both targets",
            )
        ),
        st.just(mutation(("spec", "redis", "egressTo"), {}, "no target")),
        st.just(
            mutation(
                ("spec", "postgres", "egressTo"),
                {"cidr": "10.0.0.0/8", "podSelector": {"app": "db"}},
                "podSelector without namespace",
            )
        ),
        st.one_of(st.sampled_from(["10.0.0.0/33", "300.1.1.1/8", "10.0.0.0", "::/129"]), TEXT).map(
            lambda v: mutation(("spec", "postgres", "egressTo"), {"cidr": v}, "bad cidr")
        ),
        not_matching(r"[a-z0-9]([-a-z0-9./]*[a-z0-9])?", TEXT.filter(bool)).map(
            lambda k: mutation(("spec", "quota"), {k: "1"}, "bad quota key")
        ),
        quantity_text().map(lambda q: mutation(("spec", "quota"), {"pods": q}, "bad quantity")),
        not_matching(namespace, TEXT).map(lambda v: mutation(("spec", "namespace"), v)),
        not_matching(domain, TEXT).map(lambda v: mutation(("spec", "ingress", "domain"), v)),
        not_matching(namespace, TEXT).map(
            lambda v: mutation(("spec", "ingress", "controllerNamespace"), v)
        ),
        not_matching(DNS_LABEL, TEXT).map(
            lambda v: mutation(("spec", "ingress", "allowedServices"), [v])
        ),
        not_matching(r"[A-Z_][A-Z0-9_]*", TEXT.filter(bool)).map(
            lambda k: mutation(("spec", "config"), {k: "v"}, "bad config key")
        ),
        st.sampled_from(["host", "adminSecretRef"]).map(
            lambda field: Mutation(
                f"postgres without {field}",
                lambda body, ctx: obj_at(body, ("spec", "postgres")).pop(field, None),
            )
        ),
        not_matching(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", TEXT).map(
            lambda v: mutation(("spec", "redis", "adminSecretRef", "name"), v, "bad secret name")
        ),
    )


# -- recipes and the operator's verdict -----------------------------------------------------------


def mutations(kind: str) -> st.SearchStrategy[Mutation]:
    if kind == SERVICE:
        specific = [service_out_of_range(), service_patterns(), service_references()]
        return st.one_of(wrong_type(SERVICE), unknown_field(SERVICE), bad_name(40), *specific)
    return st.one_of(
        wrong_type(ENVIRONMENT),
        unknown_field(ENVIRONMENT),
        bad_name(20),
        environment_out_of_range(),
        environment_patterns(),
    )


def recipes() -> st.SearchStrategy[Recipe]:
    """Three services for every environment: services carry most of the rules."""
    kinds = st.sampled_from([SERVICE, SERVICE, SERVICE, ENVIRONMENT])
    return kinds.flatmap(
        lambda kind: st.lists(mutations(kind), min_size=1, max_size=3).map(
            lambda found: Recipe(kind, tuple(found))
        )
    )


def operator_verdict(
    kind: str,
    stored: dict[str, Any],
    environments: Mapping[str, Environment],
    services: Mapping[str, Service],
) -> str | None:
    """The reason the operator reports for a body the API server accepted (as stored, defaults
    included), or None when the operator would act on it: then it is not malformed. A service
    is malformed only when every environment it names has a problem; one that deploys anywhere
    is valid input with a problem elsewhere."""
    stored = {**stored, "metadata": {**stored["metadata"], "uid": "not-yet", "generation": 1}}
    try:
        model = parse_service(stored) if kind == SERVICE else parse_environment(stored)
    except ValidationError:
        return "InvalidSpec"
    if not isinstance(model, Service):
        return None
    services = {**services, model.name: model}
    planner = DatabaseReconciler(None, None, {})  # type: ignore[arg-type]  # plan() does no I/O
    reasons = []
    for env in sorted(model.spec.environments):
        problems = environment_problems(model, env, environments, services)
        if not problems:
            problems = planner.plan(model, environments[env])[1]
        if not problems:
            return None
        reasons.append(problems[0].reason)
    return reasons[0] if reasons else None
