"""Hypothesis strategies for malformed BandsyService and BandsyEnvironment bodies, each with the
outcome its author expects: refused by the API server (and with which status code), accepted and
reported by the operator (and with which reason), or valid after all.

A body is a valid base with one to three mutations: wrong types and unknown fields anywhere the
CRD schema has a place (both read from crds/), out-of-range numbers, bad names, templates, tags,
enums and patterns, and references the CRD cannot check (unknown environments and dependencies,
a database the environment lacks, names too long for PostgreSQL, external where not allowed).

Every mutation states its own outcome from SPEC §3 and the CRD's documented rules; a recipe's
outcome is composed from them by `Recipe.expected` (rules there). No operator code decides it:
the test compares this prediction with what the API server and the operator really do.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from hypothesis import strategies as st

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
NAME, PORT, IMAGE = ("metadata", "name"), ("spec", "port"), ("spec", "image")


# -- outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What must become of a body: ``refused`` by the API server with ``code``, ``reported``
    by the operator with ``reason`` (found by its check ``check``, see CHECKS), or ``valid``."""

    kind: Literal["refused", "reported", "valid"]
    code: int = 0
    reason: str = ""
    check: str = ""

    def __str__(self) -> str:
        detail = self.code or self.reason
        return f"{self.kind} {detail}" if detail else self.kind


# Schema (OpenAPI), CEL and metadata validation answer 422 Invalid.
REFUSED = Outcome("refused", 422)
# Strict field validation (kubectl's default, and RawApi's) finds unknown fields while the body is
# decoded, before any schema or CEL rule runs: 400 BadRequest, whatever else is wrong with it.
UNKNOWN_FIELD = Outcome("refused", 400)
VALID = Outcome("valid")

# What the operator looks for in one environment of an accepted service, in its order: the
# environment itself, then each dependsOn entry in order, then the databases per backend
# (postgres, redis, mongo). The first problem found is the reason it reports (in the
# environment's and the service's Ready and Stalled conditions). Across environments, the first
# one in sorted order names it, and a service with one environment free of problems is not
# malformed (it deploys there). The precedence is the one issue 13 states the operator documents
# (bandsy_operator.validation.environment_problems, then DatabaseReconciler.plan); stated here as
# data, never computed by its code. "External where the environment does not allow it" is no
# problem of this list: such a service deploys without exposure (valid input).
CHECKS: tuple[tuple[str, frozenset[str]], ...] = (
    ("environment", frozenset({"UnknownEnvironment"})),
    (
        "dependsOn",
        frozenset({"UnknownDependency", "DependencyNotInEnvironment", "DependencyHasNoPort"}),
    ),
    ("postgres", frozenset({"DatabaseNotConfigured", "InvalidDatabaseName"})),
    ("redis", frozenset({"DatabaseNotConfigured", "InvalidDatabaseName"})),
    ("mongo", frozenset({"DatabaseNotConfigured", "InvalidDatabaseName"})),
)
CHECK_ORDER = {check: i for i, (check, _) in enumerate(CHECKS)}


def reported(reason: str, check: str) -> Outcome:
    assert reason in dict(CHECKS)[check], (reason, check)
    return Outcome("reported", reason=reason, check=check)


# The outcome of each kind of mutation on its own, as the author reads SPEC §3 ("validation that
# needs only the object itself lives in the CRD", refused by the API server; "validation that
# needs other objects is done by the operator", reported) and the CRDs' rules. Never computed.
OUTCOMES: Mapping[str, Outcome] = {
    "wrong type": REFUSED,
    # The keys of an object where the schema declares no field are unknown fields.
    "object where the schema has no fields": UNKNOWN_FIELD,
    "unknown field": UNKNOWN_FIELD,
    "bad name": REFUSED,  # pattern and length; a service's reserved bandsy- prefix
    "schema or CEL rule": REFUSED,  # range, length, pattern, enum, required field, CEL rule
    "unknown environment": reported("UnknownEnvironment", "environment"),
    "unknown dependency": reported("UnknownDependency", "dependsOn"),
    "dependency not in the environment": reported("DependencyNotInEnvironment", "dependsOn"),
    "dependency without a port": reported("DependencyHasNoPort", "dependsOn"),
    "mongo the environment lacks": reported("DatabaseNotConfigured", "mongo"),
    "database name over 63 bytes": reported("InvalidDatabaseName", "postgres"),
    # Deployed without exposure, the refusal reported apart: it blocks nothing.
    "external where not allowed": VALID,
}


def _within(path: Path, ancestor: Path) -> bool:
    """``path`` is ``ancestor`` or lies below it."""
    return path[: len(ancestor)] == ancestor


@dataclass(frozen=True)
class Context:
    """What a body may refer to: its unique name and objects that exist in the cluster."""

    name: str
    labels: Mapping[str, str]
    environment: str  # has postgres and redis, no mongo, allows no external service but web
    portless: str  # a service without a port in `environment` and `long_names_environment`
    elsewhere: str  # a service in neither of them
    long_names_environment: str  # postgres only; its database template overflows 63 bytes
    # for names of 30 characters and more: "{service}-{env}-{env}-{env}", env of 12


@dataclass(frozen=True)
class Mutation:
    """One change to a valid body and the outcome its author expects of it alone.

    ``writes``: every field ``apply`` sets or removes (paths, ENV unresolved). ``subject``: where
    its problem lies (default: its writes). ``absent``: fields whose absence is its problem.
    ``replaced_below``: a later mutation writing below it replaces its value (of the wrong JSON
    type: `set_at` and `obj_at` put an empty object or list there), which erases it.
    ``renamed``: its outcome when the recipe renames the object (it refers to ``ctx.name``)."""

    what: str
    apply: Callable[[dict[str, Any], Context], None]
    outcome: Outcome
    writes: tuple[Path, ...]
    subject: tuple[Path, ...] = ()
    absent: tuple[Path, ...] = ()
    replaced_below: bool = False
    renamed: Outcome | None = None

    def __repr__(self) -> str:
        return self.what

    def erased_by(self, later: Mutation) -> bool:
        """A later mutation undoes this one's problem: it rewrote the subject or a parent of it
        (what is there now is the later one's outcome to state), wrote below a wrongly typed
        value (replacing it), or wrote a missing field, a parent of it (as before) or a child
        of it (which brings the field along)."""
        for written in later.writes:
            for subject in self.subject or self.writes:
                if _within(subject, written):
                    return True
                if self.replaced_below and _within(written, subject):
                    return True
            for missing in self.absent:
                if _within(missing, written) or _within(written, missing):
                    return True
        return False


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

    def survivors(self) -> list[Mutation]:
        """The mutations no later one erased."""
        return [
            m
            for i, m in enumerate(self.mutations)
            if not any(m.erased_by(later) for later in self.mutations[i + 1 :])
        ]

    def expected(self) -> Outcome:
        """The recipe's outcome, composed from its mutations' own (OUTCOMES) by these rules:

        1. A later mutation erases an earlier one (`Mutation.erased_by`) when it rewrites the
           earlier one's subject or a parent of it (`_env_replacement` of spec.environments
           erases whatever an earlier one did to an environment), writes below a wrongly typed
           value that `set_at` or `obj_at` then replace by an empty object or list (which erases
           it where the schema requires no field there), or writes a field whose absence was
           the problem.
        2. A rename (never to ``ctx.name``) gives a mutation that refers to ``ctx.name`` its
           ``renamed`` outcome, even when the rest of the mutation that renamed is erased.
        3. Refusal dominates: 400 when an unknown field survives (strict field validation
           decodes the body before any schema or CEL rule runs), else 422.
        4. Else the operator's first problem in CHECKS order; none left: valid.

        Every body the API server accepts names one environment: each mutation that names
        others either replaces them all or is refused. So "first environment in sorted order"
        and "malformed only when every environment has a problem" reduce to that environment's
        first problem; the test checks the premise on every accepted body."""
        # Every rename gives a name other than ctx.name, and a rename stays even when a later
        # mutation erases the rest of the one that made it.
        renamed = any(NAME in m.writes for m in self.mutations)
        outcomes = [
            m.renamed if renamed and m.renamed is not None else m.outcome for m in self.survivors()
        ]
        codes = {o.code for o in outcomes if o.kind == "refused"}
        if codes:
            return Outcome("refused", 400 if 400 in codes else 422)
        problems = sorted(
            (o for o in outcomes if o.kind == "reported"), key=lambda o: CHECK_ORDER[o.check]
        )
        # Two problems of one check would need two writers of one field: the later erases.
        assert len({o.check for o in problems}) == len(problems), (self.describe(), problems)
        return problems[0] if problems else VALID


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


def mutation(
    path: Path,
    value: Any,
    why: str = "",
    outcome: Outcome = OUTCOMES["schema or CEL rule"],
    absent: tuple[Path, ...] = (),
    replaced_below: bool = False,
) -> Mutation:
    """Set ``value`` at ``path``; it breaks a rule of the schema or CEL unless told otherwise."""
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    return Mutation(
        f"{_show(path)} = {shown}" + (f" ({why})" if why else ""),
        setter(path, value),
        outcome,
        writes=(path,),
        absent=absent,
        replaced_below=replaced_below,
    )


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
def typed_paths(kind: str) -> list[tuple[Path, str, bool]]:
    """Every place in the CRD's spec with a declared type, and whether it requires fields."""
    return [
        (path, t, bool(node.get("required")))
        for path, node in _walk(schema(kind), ())
        if (t := _type(node)) and path
    ]


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
    """Refused by the schema's type check (422); but the keys of an object where the schema
    declares no field are unknown fields to strict field validation (400). A later mutation
    writing below the value replaces it by an empty object or list: that erases it only where
    the schema requires no field."""

    def wrong(place: tuple[Path, str, bool]) -> st.SearchStrategy[Mutation]:
        path, expected, requires = place
        values = JSON_VALUES.filter(lambda v: not fits(v, expected))
        return values.map(
            lambda v: mutation(
                path,
                v,
                f"not {expected}",
                OUTCOMES[
                    "object where the schema has no fields"
                    if isinstance(v, dict) and v
                    else "wrong type"
                ],
                replaced_below=not requires,
            )
        )

    return st.sampled_from(typed_paths(kind)).flatmap(wrong)


FIELD_NAMES = st.from_regex(r"\A[a-z][a-zA-Z0-9]{0,11}\Z")


def unknown_field(kind: str) -> st.SearchStrategy[Mutation]:
    """Refused (400) by strict field validation."""

    def add(place: tuple[Path, frozenset[str]]) -> st.SearchStrategy[Mutation]:
        path, known = place
        return st.tuples(FIELD_NAMES.filter(lambda f: f not in known), JSON_VALUES).map(
            lambda fv: mutation((*path, fv[0]), fv[1], "unknown field", OUTCOMES["unknown field"])
        )

    return st.sampled_from(object_places(kind)).flatmap(add)


def not_matching(pattern: str, strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Strings the CRD's pattern refuses. The API server matches with Go's RE2, whose ``\\s`` is
    ASCII ([\\t\\n\\f\\r ]): patterns here spell such classes out so Python agrees."""
    compiled = re.compile(pattern)
    return strategy.filter(lambda s: compiled.fullmatch(s) is None)


def is_cidr(value: str) -> bool:
    """As CEL's isCIDR: an address, a slash and a prefix length (host bits allowed)."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return "/" in value


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
DNS_LABEL = r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?"
ENV_NAME = r"[a-z][a-z0-9-]{0,19}"
SUFFIX = st.from_regex(r"\A[a-z0-9]{1,8}\Z")
RESERVED_PREFIX = "bandsy-"  # names of environment-level objects (bandsy-default-deny, ...)


def bad_name(limit: int, reserved_prefix: str | None = None) -> st.SearchStrategy[Mutation]:
    """Names the CRD refuses (422): cases that are easy to get wrong, and generated noise."""

    def rename(transform: Callable[[str], str], why: str) -> Mutation:
        def apply(body: dict[str, Any], ctx: Context) -> None:
            body["metadata"]["name"] = transform(ctx.name)

        return Mutation(f"metadata.name {why}", apply, OUTCOMES["bad name"], writes=(NAME,))

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
    if reserved_prefix:
        fixed.append(
            rename(lambda n: reserved_prefix + n, f"with the reserved {reserved_prefix} prefix")
        )
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


def spec_fields(
    what: str,
    outcome: Outcome,
    make: Callable[[Context], dict[str, Any]],
    keys: tuple[str, ...],
    subject: tuple[Path, ...] = (),
    renamed: Outcome | None = None,
) -> Mutation:
    """Set the top-level spec fields ``keys`` (each replaced whole) to what ``make`` gives."""

    def apply(body: dict[str, Any], ctx: Context) -> None:
        fields = make(ctx)
        assert set(fields) == set(keys), (what, fields)
        obj_at(body, ("spec",)).update(fields)

    writes = tuple(("spec", key) for key in keys)
    return Mutation(what, apply, outcome, writes, subject=subject, renamed=renamed)


# -- BandsyService --------------------------------------------------------------------------------


def _env_replacement(
    environments: dict[str, Any], why: str, outcome: Outcome = OUTCOMES["schema or CEL rule"]
) -> Mutation:
    return mutation(("spec", "environments"), environments, why, outcome)


def service_references() -> st.SearchStrategy[Mutation]:
    """Accepted by the API server: the operator needs other objects to know what is wrong (or
    that nothing is: external where not allowed deploys without exposure)."""

    def depend(on: Callable[[Context], str], why: str, kind: str) -> Mutation:
        return spec_fields(
            f"dependsOn {why}",
            OUTCOMES[kind],
            lambda ctx: {"dependsOn": [on(ctx)]},
            ("dependsOn",),
        )

    def long_database_name(size: int) -> Mutation:
        def apply(body: dict[str, Any], ctx: Context) -> None:
            body["metadata"]["name"] = ctx.name + "-" + "x" * (size - len(ctx.name) - 1)
            obj_at(body, ("spec",)).update(
                environments=tags(**{ctx.long_names_environment: "v1"}), postgres={"enabled": True}
            )

        return Mutation(
            f"a {size}-character name where the database name exceeds 63 bytes",
            apply,
            OUTCOMES["database name over 63 bytes"],
            writes=(NAME, ("spec", "environments"), ("spec", "postgres")),
        )

    return st.one_of(
        SUFFIX.map(
            lambda s: _env_replacement(
                tags(**{f"nowhere-{s}": "v1"}),
                "an unknown environment",
                OUTCOMES["unknown environment"],
            )
        ),
        SUFFIX.map(
            lambda s: mutation(
                ("spec", "dependsOn"),
                [f"ghost-{s}"],
                "unknown service",
                OUTCOMES["unknown dependency"],
            )
        ),
        st.just(
            depend(
                lambda ctx: ctx.portless, "a service without a port", "dependency without a port"
            )
        ),
        st.just(
            depend(
                lambda ctx: ctx.elsewhere,
                "a service not in the environment",
                "dependency not in the environment",
            )
        ),
        st.just(
            spec_fields(
                "mongo enabled where the environment has no mongo",
                OUTCOMES["mongo the environment lacks"],
                lambda ctx: {"mongo": {"enabled": True}},
                ("mongo",),
            )
        ),
        # Valid input: deployed without exposure, the refusal reported apart (it blocks nothing).
        st.just(
            spec_fields(
                "external where the environment does not allow it",
                OUTCOMES["external where not allowed"],
                lambda ctx: {"external": True, "port": 8080},
                ("external", "port"),
            )
        ),
        st.integers(30, 40).map(long_database_name),
    )


def service_out_of_range() -> st.SearchStrategy[Mutation]:
    """Refused (422): minimum, maximum, maxLength, maxItems, maxProperties."""
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


def _reclaim_delete_with_production(body: dict[str, Any], ctx: Context) -> None:
    spec = obj_at(body, ("spec",))
    spec["postgres"] = {"enabled": True, "reclaimPolicy": "Delete"}
    spec["environments"] = {**obj_at(spec, ("environments",)), **tags(production="v1")}


def without_port(field: str, value: Any, what: str) -> Mutation:
    """Refused (422): ``field`` needs a port. It removes the port an earlier mutation may have
    set, so the port is missing until a later one sets it."""

    def apply(body: dict[str, Any], ctx: Context) -> None:
        spec = obj_at(body, ("spec",))
        spec[field] = copy.deepcopy(value)
        spec.pop("port", None)

    return Mutation(
        what,
        apply,
        OUTCOMES["schema or CEL rule"],
        writes=(("spec", field), PORT),
        subject=(("spec", field),),
        absent=(PORT,),
    )


def service_patterns() -> st.SearchStrategy[Mutation]:
    """Strings that miss their pattern or rule, fields missing, CEL rules broken: refused (422)."""
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
    env_image = ("spec", "environments", ENV, "image")
    return st.one_of(
        not_matching(tag, TEXT).map(lambda t: mutation((*env_image, "tag"), t, "bad tag")),
        st.just(mutation((*env_image, "tag"), "latest", "not develop")),
        not_matching(repository, TEXT).map(
            lambda r: mutation(("spec", "image", "repository"), r, "bad repository")
        ),
        bad_env_key.map(lambda k: _env_replacement(tags(**{k: "v1"}), "bad environment name")),
        st.just(
            mutation(
                ("spec", "environments", ENV),
                {"replicas": 1},
                "environment without image",
                absent=(env_image,),
            )
        ),
        st.just(mutation(env_image, {}, "image without tag", absent=((*env_image, "tag"),))),
        not_matching(key, TEXT.filter(bool)).map(
            lambda k: mutation(("spec", "config"), {k: "v"}, "bad config key")
        ),
        not_matching(key, TEXT).map(
            lambda k: mutation(("spec", "secrets"), [{"name": k}], "bad secret name")
        ),
        st.just(mutation(("spec", "secrets"), [{"name": "K"}, {"name": "K"}], "duplicate")),
        st.just(
            spec_fields(
                "a key both config and secret",
                OUTCOMES["schema or CEL rule"],
                lambda ctx: {"config": {"SAME": "v"}, "secrets": [{"name": "SAME"}]},
                ("config", "secrets"),
            )
        ),
        not_matching(extension, TEXT).map(
            lambda e: mutation(
                ("spec", "postgres"), {"enabled": True, "extensions": [e]}, "bad extension"
            )
        ),
        st.just(without_port("external", True, "external without a port")),
        st.just(without_port("healthCheck", {"path": "/healthz"}, "health check, no port")),
        # Go's \s, not Python's (which also has \v and, in str patterns, Unicode spaces).
        not_matching(r"/[^\t\n\f\r ]*", TEXT).map(
            lambda p: spec_fields(
                f"healthCheck.path = {p!r}",
                OUTCOMES["schema or CEL rule"],
                lambda ctx: {"port": 8080, "healthCheck": {"path": p}},
                ("port", "healthCheck"),
                subject=(("spec", "healthCheck"),),  # the port it adds is fine
            )
        ),
        quantity_text().map(
            lambda q: mutation(("spec", "resources", "requests", "cpu"), q, "bad quantity")
        ),
        TEXT.filter(lambda p: p not in ("Retain", "Delete")).map(
            lambda p: mutation(("spec", "postgres", "reclaimPolicy"), p, "unknown policy")
        ),
        # Rewriting either half ends the conflict. (Only spec.postgres rewritten would leave an
        # unknown environment "production" next to the base one: no accepted mutation does that.)
        st.just(
            Mutation(
                "reclaimPolicy Delete with production",
                _reclaim_delete_with_production,
                OUTCOMES["schema or CEL rule"],
                writes=(("spec", "postgres"), ("spec", "environments", "production")),
                subject=(
                    ("spec", "postgres", "reclaimPolicy"),
                    ("spec", "environments", "production"),
                ),
            )
        ),
        # Itself by the name the body starts with: renamed, it is a service that does not exist.
        st.just(
            spec_fields(
                "depends on itself",
                OUTCOMES["schema or CEL rule"],
                lambda ctx: {"dependsOn": [ctx.name]},
                ("dependsOn",),
                renamed=OUTCOMES["unknown dependency"],
            )
        ),
        not_matching(DNS_LABEL, TEXT).map(
            lambda d: mutation(("spec", "dependsOn"), [d], "bad dependency name")
        ),
        st.just(mutation(("spec", "dependsOn"), ["ghost-a", "ghost-a"], "duplicate dependency")),
        st.just(
            Mutation(
                "no image",
                lambda body, ctx: obj_at(body, ("spec",)).pop("image", None),
                OUTCOMES["schema or CEL rule"],
                writes=(IMAGE,),
                absent=(IMAGE,),
            )
        ),
        # A later mutation recreates spec, still without the required image.
        st.just(
            Mutation(
                "no spec",
                lambda body, ctx: body.pop("spec", None),
                OUTCOMES["schema or CEL rule"],
                writes=(("spec",),),
                absent=(IMAGE,),
            )
        ),
    )


# -- BandsyEnvironment: everything generated is refused --------------------------------------------


def environment_out_of_range() -> st.SearchStrategy[Mutation]:
    """Refused (422): minimum, maximum, minLength, maxLength, maxItems, maxProperties."""
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
    """Refused (422): patterns, enums, CEL rules, required fields."""
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
        # From itself by the name the body starts with: renamed, from another environment.
        st.just(
            spec_fields(
                "promotion from itself",
                OUTCOMES["schema or CEL rule"],
                lambda ctx: {"promotion": {"from": ctx.name}},
                ("promotion",),
                renamed=VALID,
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
        st.one_of(
            st.sampled_from(["10.0.0.0/33", "300.1.1.1/8", "10.0.0.0", "::/129"]),
            TEXT.filter(lambda v: not is_cidr(v)),  # a run drew "0.0.0.0/0": a good one
        ).map(lambda v: mutation(("spec", "postgres", "egressTo"), {"cidr": v}, "bad cidr")),
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
                OUTCOMES["schema or CEL rule"],
                writes=(("spec", "postgres", field),),
                absent=(("spec", "postgres", field),),
            )
        ),
        not_matching(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", TEXT).map(
            lambda v: mutation(("spec", "redis", "adminSecretRef", "name"), v, "bad secret name")
        ),
    )


# -- recipes --------------------------------------------------------------------------------------


def mutations(kind: str) -> st.SearchStrategy[Mutation]:
    if kind == SERVICE:
        specific = [service_out_of_range(), service_patterns(), service_references()]
        return st.one_of(
            wrong_type(SERVICE), unknown_field(SERVICE), bad_name(40, RESERVED_PREFIX), *specific
        )
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
