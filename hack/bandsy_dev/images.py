"""OCI images without a registry: built from a few files with umoci, imported into the node's
containerd with ctr (SPEC §8.1: pods use images that were imported, never pulled)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .procs import run

CONTAINERD_NAMESPACE = "k8s.io"  # the namespace the kubelet's CRI uses
# The pod sandbox image (hack/node/cmd/pause), imported whenever the node starts.
PAUSE_REPOSITORY, PAUSE_TAG = "localhost/bandsy/pause", "v1"
PAUSE_IMAGE = f"{PAUSE_REPOSITORY}:{PAUSE_TAG}"
# The test app's repository (SPEC §8.1: BANDSY_TEST_IMAGE); the image itself is built apart.
TEST_IMAGE_REPOSITORY = "localhost/bandsy/testapp"
REF_NAME = "org.opencontainers.image.ref.name"
# The kubelet never garbage-collects pinned images; imported ones could not be pulled back.
PINNED_LABEL = "io.cri-containerd.pinned=pinned"


def build_image(
    repository: str,
    tag: str,
    files: Mapping[str, Path | bytes],
    entrypoint: Sequence[str],
    workdir: Path,
    *,
    symlinks: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> Path:
    """An OCI archive (a tar of an OCI layout) holding one single-layer image ``repository:tag``
    made of ``files`` (path in the image -> host file, copied with its mode, or content) and
    ``symlinks`` (path in the image -> target). Its index names the image in full, so
    ``import_archive`` needs no name."""
    scratch = workdir / f"{repository.replace('/', '_')}_{tag}"
    shutil.rmtree(scratch, ignore_errors=True)
    layout, bundle = scratch / "layout", scratch / "bundle"
    image = f"{layout}:{tag}"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", image)
    run("umoci", "unpack", "--image", image, str(bundle))
    rootfs = bundle / "rootfs"
    for dest, source in files.items():
        target = rootfs / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
            target.chmod(0o644)
        else:
            shutil.copy2(source, target)
    for link, link_target in (symlinks or {}).items():
        path = rootfs / link.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(link_target)
    run("umoci", "repack", "--image", image, str(bundle))
    config = [f"--config.entrypoint={arg}" for arg in entrypoint]
    config += [f"--config.env={key}={value}" for key, value in (env or {}).items()]
    if user is not None:  # numeric: the kubelet can only check runAsNonRoot against a uid
        config.append(f"--config.user={user}")
    run("umoci", "config", "--image", image, *config)
    run("umoci", "gc", "--layout", str(layout))
    _name_fully(layout, f"{repository}:{tag}")
    archive = workdir / f"{scratch.name}.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(layout.iterdir()):
            tar.add(entry, arcname=entry.name)
    shutil.rmtree(scratch)
    return archive


def retag_archive(archive: Path, references: Sequence[str], output: Path) -> Path:
    """A copy of ``archive`` whose index names its (first) image once per reference: one
    import then makes every tag, from one set of blobs."""
    with tarfile.open(archive) as source, tarfile.open(output, "w") as target:
        for member in source.getmembers():
            if member.name.lstrip("./") == "index.json":
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        index_member = source.extractfile("index.json")
        assert index_member is not None
        index = json.load(index_member)
        first = index["manifests"][0]
        index["manifests"] = [
            {**first, "annotations": {**first.get("annotations", {}), REF_NAME: reference}}
            for reference in references
        ]
        data = json.dumps(index).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        target.addfile(info, io.BytesIO(data))
    return output


def _name_fully(layout: Path, reference: str) -> None:
    """umoci names the image by its tag alone; give the index the full reference."""
    index_file = layout / "index.json"
    index = json.loads(index_file.read_text())
    for manifest in index["manifests"]:
        manifest.setdefault("annotations", {})[REF_NAME] = reference
    index_file.write_text(json.dumps(index))


def archive_references(archive: Path) -> list[str]:
    """The image references an OCI archive's index names."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        if member is None:
            raise ValueError(f"{archive}: no index.json (not an OCI archive)")
        index = json.load(member)
    return [
        m["annotations"][REF_NAME]
        for m in index["manifests"]
        if REF_NAME in m.get("annotations", {})
    ]


def import_archive(ctr: Path, address: Path, archive: Path) -> list[str]:
    """Import an OCI archive whose index names its images fully (``localhost/x/y:tag``) into
    containerd at ``address``, for the kubelet; returns the references it holds."""
    references = archive_references(archive)
    if not references or any("/" not in ref or ":" not in ref for ref in references):
        raise ValueError(f"{archive}: every image must be named in full, found {references}")
    base = ["--address", str(address.resolve()), "--namespace", CONTAINERD_NAMESPACE]
    run(str(ctr), *base, "images", "import", "--label", PINNED_LABEL, str(archive))
    present = set(run(str(ctr), *base, "images", "list", "--quiet").stdout.split())
    missing = [ref for ref in references if ref not in present]
    if missing:
        raise RuntimeError(f"{archive}: containerd does not list {missing} after the import")
    return references
