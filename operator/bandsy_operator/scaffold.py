"""``bandsyctl init-service``: the starter files of a service repository.

The files are real ones in templates/service/ (package data), with ``__SERVICE__``,
``__IMAGE__``, ``__PLATFORM__`` and ``__REF__`` filled in; render() is pure, write() the effect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .naming import check_service_name

# Where the reusable workflow (.github/workflows/service-release.yaml) and bandsyctl come from.
DEFAULT_PLATFORM = "feinwaru/bandsy-operator@master"
# In the service repository -> in templates/service/ (no leading dots: a `.gitignore` there
# would be this repository's own).
FILES: Mapping[str, str] = {
    "bandsy.yaml": "bandsy.yaml",
    ".github/workflows/release.yaml": "release.yaml",
    ".gitignore": "gitignore",
    ".pre-commit-config.yaml": "pre-commit-config.yaml",
}
# spec.image.repository's pattern in the CRD (checked against it by tests/unit/test_scaffold.py).
IMAGE_REPOSITORY = re.compile(
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$"
)
_PLATFORM = re.compile(r"^(?P<repo>[A-Za-z0-9-]+/[A-Za-z0-9._-]+)@(?P<ref>[A-Za-z0-9._/-]+)$")
_PLACEHOLDER = re.compile(r"__[A-Z]+__")


class ScaffoldError(ValueError):
    """Bad input, or files that are there already; nothing was written."""


@dataclass(frozen=True)
class Platform:
    repo: str  # OWNER/NAME of this project on GitHub
    ref: str  # branch, tag or commit

    @classmethod
    def parse(cls, text: str) -> Platform:
        match = _PLATFORM.match(text)
        if match is None:
            raise ScaffoldError(f"{text!r}: expected OWNER/REPO@REF, e.g. {DEFAULT_PLATFORM}")
        return cls(match["repo"], match["ref"])

    def default_image(self, service: str) -> str:
        return f"ghcr.io/{self.repo.split('/')[0].lower()}/{service}"


def render(service: str, platform: Platform, image: str | None = None) -> dict[str, str]:
    """The starter files by path in the service repository."""
    check_service_name(service)
    image = image or platform.default_image(service)
    if not IMAGE_REPOSITORY.match(image):
        raise ScaffoldError(f"{image!r}: not an image repository without a tag")
    values = {
        "__SERVICE__": service,
        "__IMAGE__": image,
        "__PLATFORM__": platform.repo,
        "__REF__": platform.ref,
    }
    templates = resources.files(__package__).joinpath("templates", "service")
    files = {}
    for target, source in FILES.items():
        text = templates.joinpath(source).read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        leftover = _PLACEHOLDER.search(text)
        assert leftover is None, f"{source}: {leftover.group()} has no value"
        files[target] = text
    return files


def write(directory: Path, files: Mapping[str, str], force: bool = False) -> list[Path]:
    """Write ``files`` under ``directory``: all of them, or (a file there, no ``force``) none."""
    paths = {directory / relative: text for relative, text in files.items()}
    present = [str(path) for path in paths if path.exists()]
    if present and not force:
        raise ScaffoldError(f"already there (--force overwrites): {', '.join(present)}")
    for path, text in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(paths)
