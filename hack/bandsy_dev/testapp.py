"""The test app's image (SPEC §8.1): ``$BANDSY_TEST_IMAGE:TAG`` for any tag a test or a person
wants to promote. One static binary (``hack/testapp``), built once per change of its sources
and cached; every tag is the same image, imported under that tag."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .images import TEST_IMAGE_REPOSITORY, build_image, retag_archive
from .kube import REPO_ROOT
from .procs import run

SOURCES = REPO_ROOT / "hack" / "testapp"
CACHE = REPO_ROOT / ".cache" / "testapp"
# Not root, as the operator's Deployments require (runAsNonRoot); a uid the kubelet can check.
USER = "65532:65532"


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCES.rglob("*")):
        if path.is_file() and path.suffix in (".go", ".mod", ".sum", ".sh"):
            digest.update(str(path.relative_to(SOURCES)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def binary() -> Path:
    """The test app, built from the current sources (reused while they do not change)."""
    output = CACHE / _sources_digest() / "testapp"
    if not output.exists():
        partial = output.with_name("testapp.partial")
        run(str(SOURCES / "build.sh"), str(partial))
        partial.rename(output)
    return output


def archive(tags: Sequence[str], workdir: Path) -> Path:
    """An OCI archive naming the test app's image once per tag."""
    if not tags:
        raise ValueError("name at least one tag")
    built = build_image(
        TEST_IMAGE_REPOSITORY,
        tags[0],
        files={"/testapp": binary()},
        entrypoint=["/testapp"],
        workdir=workdir,
        user=USER,
    )
    references = [f"{TEST_IMAGE_REPOSITORY}:{tag}" for tag in tags]
    return retag_archive(built, references, workdir / "testapp-tags.tar")


def tag_image(import_archive: Callable[[Path], list[str]], tags: Sequence[str]) -> list[str]:
    """Make ``$BANDSY_TEST_IMAGE:TAG`` available on the node for each tag; ``import_archive``
    imports an OCI archive into it (``Node.import_image``) and returns the references."""
    with tempfile.TemporaryDirectory(prefix="testapp-image-") as scratch:
        return import_archive(archive(tags, Path(scratch)))
