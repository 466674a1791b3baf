"""``python -m bandsy_dev.image [--import]``: the operator's image from ``Dockerfile`` (make image).

There is no registry and no Docker engine (SPEC §8.1). Debian's buildah builds the Dockerfile
unchanged, with chroot isolation, on a local stand-in for ``python:3.11-slim``: Debian 12's Python
3.11 bootstrapped with debootstrap from this machine's own Debian mirror, with a venv at
``/usr/local`` so that ``python`` and ``python -m pip`` are where the Dockerfile expects them. The
result is an OCI archive of ``localhost/bandsy/operator:dev``, which the local node's containerd
imports. Everything (buildah's storage, the base, the archive, logs) stays in ``.cache/images``;
a build whose inputs did not change is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path

from .kube import REPO_ROOT
from .node import running_node_importer
from .packages import IMAGE_TOOLS, ensure_packages

IMAGE = "localhost/bandsy/operator:dev"
BASE_IMAGE = "localhost/bandsy/python-base:3.11"
# The Dockerfile's `ARG PYTHON_IMAGE=python:3.11-slim`: the only thing this build changes.
BASE_ARG = "PYTHON_IMAGE"

SUITE = "bookworm"  # Debian 12: Python 3.11, the minor version of python:3.11-slim
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "netbase", "tzdata")
# dpkg drops documentation, man pages and translations as it installs (what the slim images do).
DPKG_SLIM = (
    "path-exclude /usr/share/doc/*",
    "path-include /usr/share/doc/*/copyright",
    "path-exclude /usr/share/man/*",
    "path-exclude /usr/share/groff/*",
    "path-exclude /usr/share/info/*",
    "path-exclude /usr/share/lintian/*",
    "path-exclude /usr/share/locale/*",
    "path-include /usr/share/locale/locale.alias",
)
# Bump when the base's recipe changes in a way the constants above do not show.
BASE_RECIPE_VERSION = 1
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# The hosts pip reaches during the build (the Dockerfile uses the default index).
INDEX_HOSTS = ("pypi.org", "files.pythonhosted.org")
SYSTEM_CONTAINERS_DIR = Path("/var/lib/containers")
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def cache_dir() -> Path:
    # Resolved: .cache may be a symlink, and overlay mounts want real paths.
    return (REPO_ROOT / ".cache").resolve() / "images"


def archive_path() -> Path:
    """Where the OCI archive of ``IMAGE`` is written."""
    return cache_dir() / "operator-dev.oci.tar"


def _log(message: str) -> None:
    print(f"image: {message}", file=sys.stderr, flush=True)


def _run(
    args: Sequence[str],
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a command; its output goes to ``log`` (shown in part when it fails) or is returned."""
    if log is None:
        captured = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if captured.returncode != 0:
            raise SystemExit(
                f"image: {' '.join(args)} failed ({captured.returncode}):\n{captured.stderr}"
            )
        return captured.stdout
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        logged = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if logged.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise SystemExit(f"image: {args[0]} failed ({logged.returncode}), see {log}:\n{tail}")
    return ""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --- buildah, with its storage in .cache/images -----------------------------------------------


def _buildah_env() -> dict[str, str]:
    """buildah's environment: storage in .cache/images (never /var/lib/containers)."""
    cache = cache_dir()
    conf = cache / "storage.conf"
    text = (
        "[storage]\n"
        'driver = "overlay"\n'
        f'graphroot = "{cache / "storage"}"\n'
        f'runroot = "{cache / "runroot"}"\n'
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    tmp = cache / "tmp"  # big temporary files (layer diffs, archives) stay here too
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "TMPDIR": str(tmp)}


def buildah(*args: str, log: Path | None = None) -> str:
    return _run(["buildah", *args], log=log, env=_buildah_env())


def _image_id(name: str) -> str | None:
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name],
        env=_buildah_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build at a time per cache (worktrees may share .cache), leaving no system state.

    containers/image keeps root's blob-info cache in /var/lib/containers/cache whatever the
    storage configuration says (no setting moves it); it only speeds up registry transfers, so
    it goes again when this build created it.
    """
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        system_dir_existed = SYSTEM_CONTAINERS_DIR.exists()
        try:
            yield
        finally:
            if not system_dir_existed:
                shutil.rmtree(SYSTEM_CONTAINERS_DIR, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- the base: a stand-in for python:3.11-slim -------------------------------------------------


def _mounts_under(path: Path) -> list[Path]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == path or point.is_relative_to(path):
            points.append(point)
    return points


def _unmount_under(path: Path) -> None:
    """Unmount whatever is left below ``path`` (debootstrap's /proc and /sys when it fails)."""
    for point in sorted(_mounts_under(path), key=lambda p: len(p.parts), reverse=True):
        if subprocess.run(["umount", str(point)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], check=False)


def host_mirrors() -> tuple[str, str]:
    """The host's own Debian mirrors (main archive, security), from its apt sources."""
    codename = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                codename = line.partition("=")[2].strip().strip('"')
    entries: list[tuple[list[str], list[str]]] = []  # (URIs, suites)
    sources = Path("/etc/apt/sources.list.d")
    for file in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", file.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                entries.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    lists = [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]
    for file in (f for f in lists if f.is_file()):
        for line in file.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb":
                entries.append(([words[1]], [words[2]]))
    main, security = DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR
    if codename:
        for uris, suites in reversed(entries):
            if uris and codename in suites:
                main = uris[0]
            if uris and f"{codename}-security" in suites:
                security = uris[0]
    return main.rstrip("/"), security.rstrip("/")


def _base_recipe() -> str:
    recipe = (BASE_RECIPE_VERSION, SUITE, BASE_PACKAGES, DPKG_SLIM, host_mirrors())
    return hashlib.sha256(repr(recipe).encode()).hexdigest()


def _base_state() -> Path:
    return cache_dir() / "python-base-3.11.json"


def base_ca_bundle() -> Path:
    """A copy of the base's CA bundle: what pip inside the build trusts."""
    return cache_dir() / "python-base-3.11.ca-certificates.crt"


def _slim(root: Path) -> None:
    for path in [
        *(root / "var/lib/apt/lists").glob("*"),
        *(root / "var/cache/apt").glob("*.bin"),
        *(root / "var/cache/apt/archives").glob("*.deb"),
        *(root / "usr/share/man").glob("*"),
        *(root / "usr/share/info").glob("*"),
        root / "etc/resolv.conf",
        root / "etc/hostname",
    ]:
        _remove(path)
    for log in (root / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            log.write_bytes(b"")
    for entry in (root / "usr/share/locale").glob("*"):
        if entry.name != "locale.alias":
            _remove(entry)
    doc = root / "usr/share/doc"
    for path in sorted(doc.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path.name != "copyright":
            path.unlink()
    # debootstrap's device nodes: every runtime mounts its own /dev (python:3.11-slim's is empty).
    for entry in (root / "dev").iterdir():
        _remove(entry)


def _bootstrap_rootfs(root: Path, logs: Path) -> str:
    """debootstrap minbase + Python 3.11 and a venv at /usr/local; returns Python's version."""
    main, security = host_mirrors()
    try:
        _run(["debootstrap", "--variant=minbase", SUITE, str(root), main], log=logs / "base.log")
    finally:
        _unmount_under(root)  # debootstrap mounts /proc and /sys in the target
    (root / "etc/apt/sources.list").write_text(
        f"deb {main} {SUITE} main\n"
        f"deb {main} {SUITE}-updates main\n"
        f"deb {security} {SUITE}-security main\n"
    )
    (root / "etc/dpkg/dpkg.cfg.d/slim").write_text("\n".join(DPKG_SLIM) + "\n")
    (root / "etc/apt/apt.conf.d/99norecommends").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
    )
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    apt = "apt-get update -q && apt-get -qy upgrade && apt-get install -qy " + " ".join(
        BASE_PACKAGES
    )
    _run(["mount", "-t", "proc", "proc", str(root / "proc")])
    try:
        env = {**CHROOT_ENV, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["chroot", str(root), "sh", "-c", apt], log=logs / "base.log", env=env)
    finally:
        _unmount_under(root)
    # /usr/local/bin/python, and a pip that may uninstall itself, as in the official image.
    _run(["chroot", str(root), "/usr/bin/python3", "-m", "venv", "/usr/local"], env=CHROOT_ENV)
    version = _run(
        [
            "chroot",
            str(root),
            "/usr/local/bin/python",
            "-c",
            "import platform as p;print(p.python_version())",
        ],
        env=CHROOT_ENV,
    ).strip()
    _slim(root)
    return version


def _build_base() -> str:
    """``BASE_IMAGE`` in buildah's storage, built once per recipe; returns its image id."""
    state = _base_state()
    recipe = _base_recipe()
    if state.exists() and base_ca_bundle().exists():
        known = json.loads(state.read_text())
        image_id = _image_id(BASE_IMAGE)
        if known.get("recipe") == recipe and image_id and known.get("image") == image_id:
            return image_id
    started = time.monotonic()
    _log(f"building the base {BASE_IMAGE} (once; debootstrap {SUITE} from {host_mirrors()[0]})")
    logs = cache_dir() / "logs"
    (logs / "base.log").unlink(missing_ok=True)
    work = cache_dir() / "base-work"
    _unmount_under(work)
    shutil.rmtree(work, ignore_errors=True)
    root = work / "rootfs"
    root.mkdir(parents=True)
    container = ""
    try:
        version = _bootstrap_rootfs(root, logs)
        shutil.copyfile(root / CA_BUNDLE.lstrip("/"), base_ca_bundle())
        tarball = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(tarball), "."])
        shutil.rmtree(root)
        packages = " ".join(BASE_PACKAGES)
        container = buildah("from", "--quiet", "scratch").strip()
        buildah("add", "--quiet", container, str(tarball), "/")  # a local tar: owners kept
        buildah(
            "config",
            *("--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"),
            *("--env", "LANG=C.UTF-8"),
            *("--env", f"PYTHON_VERSION={version}"),
            *("--cmd", '["python3"]'),
            *("--created-by", f"debootstrap --variant=minbase {SUITE}; apt-get install {packages}"),
            container,
        )
        buildah("commit", "--quiet", "--rm", "--identity-label=false", container, BASE_IMAGE)
        container = ""
    finally:
        if container:
            subprocess.run(["buildah", "rm", container], env=_buildah_env(), check=False)
        _unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    image_id = _image_id(BASE_IMAGE)
    if image_id is None:
        raise SystemExit(f"image: {BASE_IMAGE} is missing right after its commit")
    state.write_text(json.dumps({"recipe": recipe, "image": image_id, "python": version}) + "\n")
    _log(f"base {BASE_IMAGE} (Python {version}) built in {time.monotonic() - started:.1f} s")
    return image_id


# --- the operator's image ----------------------------------------------------------------------


def context_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every file that can reach the builder, plus the Dockerfile and .dockerignore.

    A superset of the build context, read from .dockerignore itself: the allowlist's ``!`` lines
    name the roots, and only the ``**/name`` exclusions are applied. Missing a changed file would
    ship a stale image; hashing one too many only rebuilds once more.
    """
    roots: list[str] = []
    never: list[str] = []
    for raw in (root / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line.startswith("!"):
            roots.append(line[1:].strip("/"))
        elif line.startswith("**/"):
            never.append(line[3:])
    files = [root / "Dockerfile", root / ".dockerignore"]
    for top in roots:
        path = root / top
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in candidates:
            parts = file.relative_to(root).parts
            if file.is_file() and not any(fnmatch(p, pat) for p in parts for pat in never):
                files.append(file)
    return files


def inputs_digest(base_id: str, root: Path = REPO_ROOT) -> str:
    """What the image is made of: the base, the build's arguments and the context's files."""
    digest = hashlib.sha256(f"{IMAGE}\0{base_id}\0{' '.join(_bud_flags())}\0".encode())
    for file in context_files(root):
        digest.update(f"{file.relative_to(root)}\0{file.stat().st_mode & 0o111}\0".encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _bud_flags() -> list[str]:
    # --no-cache: buildah 1.28 reuses a cached `RUN --mount=type=bind,from=build` layer after the
    # build stage changed (containers/buildah#4522), which would ship the old code; the content
    # hash above is the cache instead. --layers only gives each instruction its history entry, as
    # docker does. --identity-label=false: no io.buildah.version label, the config docker writes.
    return [
        "--isolation=chroot",
        "--network=host",
        "--pull=never",
        "--layers",
        "--no-cache",
        "--force-rm",
        "--format=oci",
        "--identity-label=false",
        f"--build-arg={BASE_ARG}={BASE_IMAGE}",
    ]


def _certificate_rejected(host: str, cafile: str) -> bool:
    """Whether ``host:443``'s certificate fails to verify against ``cafile`` (not reachable:
    False, the build will tell)."""
    context = ssl.create_default_context(cafile=cafile)
    try:
        with (
            socket.create_connection((host, 443), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return False
    except ssl.SSLCertVerificationError:
        return True
    except OSError:
        return False


def host_ca_mount() -> list[str]:
    """The build's extra volume, when pip inside it would not trust the package index.

    Detected, not assumed: when the index's certificate, as this machine receives it, is rejected
    by the base's own CA bundle but accepted by the host's, TLS is intercepted by a CA that only
    the host trusts (a corporate or sandbox proxy). Then the host's bundle is bind-mounted over the
    base's for every RUN; a mount is not committed, so the image keeps Debian's bundle.
    """
    base_bundle = str(base_ca_bundle())
    for host in INDEX_HOSTS:
        if _certificate_rejected(host, base_bundle) and not _certificate_rejected(host, CA_BUNDLE):
            _log(f"{host}'s certificate needs the host's CA bundle: mounting {CA_BUNDLE}")
            return ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    return []


def build_operator_image() -> Path:
    """Build ``IMAGE`` from the Dockerfile (unless nothing that goes into it changed) and return
    its OCI archive."""
    with _locked():
        if os.geteuid() != 0:
            raise SystemExit("image: building the base needs root (debootstrap, chroot, mounts)")
        ensure_packages(IMAGE_TOOLS)
        # Builds are serialised and the storage is ours: a container here is an interrupted one's.
        buildah("rm", "--all")
        base_id = _build_base()
        archive = archive_path()
        stamp = archive.with_suffix(".inputs")
        digest = inputs_digest(base_id)
        if archive.exists() and stamp.exists() and stamp.read_text().strip() == digest:
            _log(f"{IMAGE} is up to date: {archive}")
            return archive
        started = time.monotonic()
        log = cache_dir() / "logs" / "build.log"
        log.unlink(missing_ok=True)
        buildah(
            "bud",
            *_bud_flags(),
            *host_ca_mount(),
            *("--tag", IMAGE, "--file", str(REPO_ROOT / "Dockerfile"), str(REPO_ROOT)),
            log=log,
        )
        built = time.monotonic()
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        buildah("push", "--quiet", IMAGE, f"oci-archive:{partial}:{IMAGE}")
        partial.replace(archive)
        stamp.write_text(digest + "\n")
        buildah("rmi", "--prune")  # the previous build's image and this one's build stage
        size = archive.stat().st_size / 1e6
        _log(
            f"{IMAGE} built in {built - started:.1f} s, archived in {time.monotonic() - built:.1f}"
            f" s: {archive} ({size:.1f} MB)"
        )
        return archive


# --- the local node --------------------------------------------------------------------------


def import_into_local_node(archive: Path, state: Path = REPO_ROOT / ".local") -> None:
    """Hand the archive to the containerd of the node ``make cluster-up`` runs."""
    importer = running_node_importer(state)
    if importer is None:
        raise SystemExit(f"image: no local node runs from {state} (make cluster-up as root)")
    for reference in importer(archive):
        print(f"imported {reference} into the local node")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bandsy_dev.image", description=__doc__)
    parser.add_argument(
        "--import",
        dest="import_",
        action="store_true",
        help=f"import {IMAGE} into the local node's containerd after building it",
    )
    args = parser.parse_args(argv)
    archive = build_operator_image()
    if args.import_:
        import_into_local_node(archive)
    print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
