"""Files shipped inside a Go module (CRDs, mostly), taken from the Go module proxy at the version
a ``hack/*/go.mod`` pins, with its go.sum checking the download, and cached in .cache: the way
the tests get other projects' published definitions without vendoring them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .kube import REPO_ROOT


def pinned_version(pinned: Path, module: str) -> str:
    """The version ``pinned/go.mod`` requires of ``module`` (one-line or block form)."""
    for line in (pinned / "go.mod").read_text().splitlines():
        words = line.split()
        if words[:2] == ["require", module]:
            return words[2]
        if words[:1] == [module] and len(words) >= 2:
            return words[1]
    raise RuntimeError(f"{pinned / 'go.mod'} requires no {module}")


def module_files(
    pinned: Path, module: str, directory: str, names: Sequence[str], cache_name: str
) -> list[Path]:
    """``names`` from ``directory`` of the module, downloaded into the cache the first time."""
    version = pinned_version(pinned, module)
    cache = REPO_ROOT / ".cache" / cache_name / version
    files = [cache / name for name in names]
    if all(path.is_file() for path in files):
        return files
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        work = Path(tmp)
        for name in ("go.mod", "go.sum"):
            shutil.copy(pinned / name, work / name)
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        downloaded = subprocess.run(
            ["go", "mod", "download", "-json", module],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        source = Path(json.loads(downloaded.stdout)["Dir"]) / directory
        staged = work / "files"
        staged.mkdir()
        for path in files:
            shutil.copy(source / path.name, staged / path.name)
        # Moved into place whole: worktrees share .cache, and a half-copied cache never shows.
        try:
            staged.rename(cache)
        except OSError:
            if not all(path.is_file() for path in files):  # not another process's copy
                raise
    return files
