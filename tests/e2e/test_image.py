"""The OCI image `scripts/image build` writes, run by the project-local containerd through ctr.

Needs root, scripts/runtime installed, and the image built (`scripts/image build`, which .ci/run
does before the tests); skips with the reason printed otherwise. The archive is imported into
containerd's `k8s.io` namespace and run twice: `knd --version` (the entrypoint) and
`/dranet --help` (DraNet's path, which means `knd driver`).
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / ".local" / "image" / "knd-oci.tar"
REF = "localhost/knd:e2e"


def _ctr(runtime: dict[str, Any], *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [runtime["ctr"], "-a", runtime["socket"], "-n", "k8s.io", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"ctr {' '.join(args)}: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def image(runtime: dict[str, Any]) -> str:
    if not ARCHIVE.exists():
        reason = f"{ARCHIVE} not built: run `scripts/image build`"
        print(f"SKIP image: {reason}")
        pytest.skip(reason)
    _ctr(runtime, "images", "import", "--index-name", REF, str(ARCHIVE))
    return REF


def _run(runtime: dict[str, Any], image: str, name: str, *cmd: str) -> str:
    subprocess.run(
        [runtime["ctr"], "-a", runtime["socket"], "-n", "k8s.io", "containers", "rm", name],
        check=False,
        capture_output=True,
    )
    return _ctr(runtime, "run", "--rm", "--net-host", image, name, *cmd)


def test_entrypoint_knd_version(runtime: dict[str, Any], image: str) -> None:
    out = _run(runtime, image, "knd-image-version", "knd", "--version")
    assert out.strip().startswith("knd "), out


def test_dranet_path_is_knd_driver(runtime: dict[str, Any], image: str) -> None:
    out = _run(runtime, image, "knd-image-dranet", "/dranet", "--help")
    assert "--kubeconfig" in out, out
    assert "--bind-address" in out, out


def test_config_entrypoint_knd_cmd_driver() -> None:
    if not ARCHIVE.exists():
        pytest.skip(f"{ARCHIVE} not built: run `scripts/image build`")
    with tarfile.open(ARCHIVE) as tar:

        def blob(digest: str) -> Any:
            f = tar.extractfile("./blobs/sha256/" + digest.split(":", 1)[1])
            assert f is not None
            return json.loads(f.read(1 << 20))

        index = json.loads(tar.extractfile("./index.json").read(1 << 20))  # type: ignore[union-attr]
        manifest = blob(index["manifests"][0]["digest"])
        config = blob(manifest["config"]["digest"])["config"]
    assert config["Entrypoint"] == ["knd"]
    assert config["Cmd"] == ["driver"]
