"""The operator's image (make image, SPEC §8.1), run as the cluster runs it, without a cluster.

``build_operator_image`` builds it from the Dockerfile (minutes the first time, then the archive
is reused while its inputs are unchanged); umoci unpacks the archive into a runc bundle, and runc
runs it with a read-only root, every capability dropped, no new privileges and a tmpfs at /tmp,
as the image's own user 65532: what deploy/deployment.yaml asks of the kubelet.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bandsy_dev.image import IMAGE, base_ca_bundle, build_operator_image
from bandsy_dev.packages import ensure_packages

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = "usr/local/lib/python3.11/site-packages"
ENTRYPOINT = ["python", "-m", "bandsy_operator"]
RUNTIME_DEPENDENCIES = (
    "kopf",
    "pydantic",
    "asyncpg",
    "redis",
    "motor",
    "lightkube",
    "yaml",
    "boto3",
)


class Bundle:
    """An unpacked image and a private runc state directory."""

    def __init__(self, path: Path, state: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.state = state
        self.spec: dict[str, Any] = json.loads((path / "config.json").read_text())

    def run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        spec = json.loads(json.dumps(self.spec))
        process = spec["process"]
        process["args"] = args
        process["terminal"] = False
        process["noNewPrivileges"] = True
        process["capabilities"] = {
            key: [] for key in ("bounding", "effective", "inheritable", "permitted", "ambient")
        }
        # umoci takes HOME from /etc/passwd (/nonexistent for 65532); containerd keeps the image's.
        process["env"] = [e for e in process["env"] if not e.startswith("HOME=")] + ["HOME=/tmp"]
        spec["root"] = {"path": "rootfs", "readonly": True}
        spec["mounts"].append(
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=64m"],
            }
        )
        (self.path / "config.json").write_text(json.dumps(spec))
        name = f"bandsy-image-test-{uuid.uuid4().hex[:8]}"
        runc = ["runc", "--root", str(self.state)]
        try:
            return subprocess.run(
                [*runc, "run", "--bundle", str(self.path), name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            subprocess.run([*runc, "delete", "--force", name], capture_output=True, check=False)


def _mounts_under(path: Path) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [p for p in (line.split()[4] for line in lines) if p.startswith(str(path))]


@pytest.fixture(scope="module")
def archive() -> Path:
    return build_operator_image()


@pytest.fixture(scope="module")
def layout(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("image")
    path = work / "layout"
    path.mkdir()
    subprocess.run(["tar", "-C", str(path), "-xf", str(archive)], check=True)
    try:
        yield path
    finally:
        shutil.rmtree(work)


@pytest.fixture(scope="module")
def config(layout: Path) -> dict[str, Any]:
    """The image's OCI config, found through the name in index.json (what containerd imports)."""

    def blob(digest: str) -> dict[str, Any]:
        algorithm, _, hex_digest = digest.partition(":")
        data: dict[str, Any] = json.loads((layout / "blobs" / algorithm / hex_digest).read_text())
        return data

    index = json.loads((layout / "index.json").read_text())
    [manifest] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == IMAGE
    ]
    return blob(blob(manifest["digest"])["config"]["digest"])


@pytest.fixture(scope="module")
def bundle(layout: Path) -> Iterator[Bundle]:
    ensure_packages({"umoci": "umoci", "runc": "runc"})
    work = layout.parent
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{IMAGE}", str(work / "bundle")],
        check=True,
        capture_output=True,
    )
    unpacked = Bundle(work / "bundle", work / "runc-state")
    try:
        yield unpacked
    finally:
        listed = subprocess.run(
            ["runc", "--root", str(unpacked.state), "list", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        leftovers = listed.stdout.split()
        for name in leftovers:
            subprocess.run(["runc", "--root", str(unpacked.state), "delete", "--force", name])
        assert not leftovers, f"runc containers left behind: {leftovers}"
        assert not _mounts_under(work), "mounts left behind"


def test_config_runs_the_operator_as_65532_with_home_in_tmp(config: dict[str, Any]) -> None:
    image = config["config"]
    assert config["os"] == "linux"
    assert image["User"] == "65532:65532"
    assert image["Entrypoint"] == ENTRYPOINT
    assert image["WorkingDir"] == "/tmp"
    assert "HOME=/tmp" in image["Env"]
    assert "PYTHONDONTWRITEBYTECODE=1" in image["Env"]
    assert set(image["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    assert image["Labels"]["org.opencontainers.image.title"] == "bandsy-operator"
    # Only the Dockerfile's labels: nothing from the builder or the local base.
    assert all(key.startswith("org.opencontainers.image.") for key in image["Labels"])


def test_entrypoint_help_exits_0(config: dict[str, Any], bundle: Bundle) -> None:
    done = bundle.run([*config["config"]["Entrypoint"], "--help"])
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
    assert _mounts_under(bundle.path) == []


PROBE = """
import errno, importlib, importlib.util, json, os, sys
for name in ("bandsy_operator", *sys.argv[1:]):
    importlib.import_module(name)
try:
    open("/usr/local/probe", "w")
    root = "writable"
except OSError as e:
    root = errno.errorcode[e.errno]
with open("/tmp/probe", "w") as f:
    f.write("ok")
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
    "python": list(sys.version_info[:2]), "root": root,
    "capabilities": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1],
    "absent": [m for m in ("pip", "setuptools", "wheel") if importlib.util.find_spec(m) is None],
}))
"""


def test_dependencies_import_on_a_read_only_root_without_capabilities(bundle: Bundle) -> None:
    done = bundle.run(["python", "-c", PROBE, *RUNTIME_DEPENDENCIES])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "uid": 65532,
        "gid": 65532,
        "cwd": "/tmp",
        "python": [3, 11],
        "root": "EROFS",
        "capabilities": "0000000000000000",
        "absent": ["pip", "setuptools", "wheel"],
    }


def test_no_build_tools_and_the_current_sources(bundle: Bundle) -> None:
    rootfs = bundle.rootfs
    site = rootfs / SITE_PACKAGES
    tools = [p.name for p in site.iterdir() if p.name.split("-")[0] in ("pip", "setuptools")]
    assert tools == []
    assert sorted(p.name for p in (rootfs / "usr/local/bin").glob("pip*")) == []
    # The installed package is this checkout's code (no stale layer from an earlier build).
    sources = REPO_ROOT / "operator" / "bandsy_operator"
    for source in sources.rglob("*.py"):
        installed = site / "bandsy_operator" / source.relative_to(sources)
        assert installed.read_bytes() == source.read_bytes(), source
    # A CA bundle mounted for the build (a TLS-intercepting proxy) is not baked in.
    ca = rootfs / "etc/ssl/certs/ca-certificates.crt"
    assert ca.read_bytes() == base_ca_bundle().read_bytes()


def test_the_backup_jobs_tools_are_there(bundle: Bundle) -> None:
    """The backup Jobs (SPEC §11) run this image: pg_dump and pg_restore of the PostgreSQL the
    harness runs (the image's Debian is the host's), and the program, which reports a missing
    setting as its outcome."""
    for tool in ("pg_dump", "pg_restore"):
        done = bundle.run([tool, "--version"])
        assert done.returncode == 0, done.stderr
        assert "(PostgreSQL) 15." in done.stdout
    done = bundle.run(["python", "-m", "bandsy_operator.backup"])
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "verified": False,
        "error": "BackupError: BANDSY_SERVICE is not set",
    }
