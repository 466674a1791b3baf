"""The lock files (requirements/*.lock.txt, written by `make lock`) agree with pyproject.toml.

`make venv`, CI and the image install only from the locks, with `--require-hashes`: a dependency
added to pyproject.toml without `make lock` would be missing there, so this fails first.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock.txt"
DEV_LOCK = ROOT / "requirements" / "dev.lock.txt"


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> Version | None:
        """The exact version when the line pins one with `==` (and nothing else), else None."""
        specs = list(self.requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            return None
        return Version(specs[0].version)


def read_lock(path: Path) -> dict[NormalizedName, list[Pin]]:
    """Every requirement of a pip requirements file, by name (a universal lock may pin a name
    more than once, under different markers)."""
    # Join the backslash continuations, then drop comments: one logical line per requirement.
    logical = path.read_text().replace("\\\n", " ").splitlines()
    pins: dict[NormalizedName, list[Pin]] = {}
    for line in logical:
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"{path.name}: unexpected option line {line!r}"
        words = line.split()
        options = [w for w in words if w.startswith("--")]
        spec = " ".join(w for w in words if not w.startswith("--"))
        requirement = Requirement(spec)
        hashes = tuple(o.removeprefix("--hash=") for o in options if o.startswith("--hash="))
        assert len(hashes) == len(options), f"{path.name}: unexpected option in {line!r}"
        pins.setdefault(canonicalize_name(requirement.name), []).append(Pin(requirement, hashes))
    return pins


def declared() -> tuple[list[Requirement], list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project["dependencies"]]
    dev = [Requirement(r) for r in project["optional-dependencies"]["dev"]]
    return runtime, dev


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    # What --require-hashes needs of every line, direct dependency or not.
    pins = read_lock(lock)
    assert pins, f"{lock.name} is empty"
    for name, entries in pins.items():
        for pin in entries:
            assert pin.version is not None, f"{lock.name}: {pin.requirement} is not pinned with =="
            assert pin.hashes, f"{lock.name}: {name} has no --hash"
            assert all(h.startswith("sha256:") for h in pin.hashes), f"{lock.name}: {name}"


@pytest.mark.parametrize(
    ("lock", "dev_too"),
    [(RUNTIME_LOCK, False), (DEV_LOCK, True)],
    ids=["runtime", "dev"],
)
def test_pyproject_dependencies_are_locked(lock: Path, dev_too: bool) -> None:
    runtime, dev = declared()
    pins = read_lock(lock)
    stale: list[str] = []
    for requirement in runtime + (dev if dev_too else []):
        entries = pins.get(canonicalize_name(requirement.name), [])
        if not entries:
            stale.append(f"{requirement}: not in the lock")
        for pin in entries:
            version = pin.version
            if version is None or not pin.hashes:
                stale.append(f"{requirement}: {pin.requirement} is not pinned and hashed")
            elif not requirement.specifier.contains(version, prereleases=True):
                stale.append(f"{requirement}: the lock has {version}")
    assert not stale, f"{lock.name} is out of date with pyproject.toml (run make lock): {stale}"


def test_runtime_lock_has_no_dev_only_package() -> None:
    runtime, dev = declared()
    runtime_names = {canonicalize_name(r.name) for r in runtime}
    dev_only = {canonicalize_name(r.name) for r in dev} - runtime_names
    leaked = sorted(dev_only & read_lock(RUNTIME_LOCK).keys())
    assert not leaked, f"dev-only packages in {RUNTIME_LOCK.name}: {leaked}"


def test_runtime_lock_is_the_dev_lock_restricted() -> None:
    # The image must run the very versions the tests ran with (make lock constrains it so).
    dev = read_lock(DEV_LOCK)
    for name, entries in read_lock(RUNTIME_LOCK).items():
        assert name in dev, f"{name} is in the runtime lock only"
        assert {p.version for p in entries} <= {p.version for p in dev[name]}, name
        assert {h for p in entries for h in p.hashes} <= {h for p in dev[name] for h in p.hashes}
