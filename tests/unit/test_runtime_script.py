"""Pure parts of scripts/runtime: the OCI image-layout writer and per-checkout network names."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "runtime"


def _load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("knd_runtime_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("knd_runtime_script", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_oci_layout_is_self_consistent(tmp_path: Path) -> None:
    rt = _load()
    out = tmp_path / "img.tar"
    rt.oci_image(
        "localhost/x/y:1", {"bin/tool": (b"#!x", 0o755)}, {"bin/sh": "tool"}, ["/bin/sh"], out
    )
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/x/y:1"

    def blob(digest: str) -> bytes:
        data = files["blobs/sha256/" + digest.removeprefix("sha256:")]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    manifest = json.loads(blob(entry["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    (layer_desc,) = manifest["layers"]
    layer = blob(layer_desc["digest"])
    assert config["rootfs"]["diff_ids"] == [layer_desc["digest"]]
    assert config["config"]["Entrypoint"] == ["/bin/sh"]
    lt = tmp_path / "layer.tar"
    lt.write_bytes(layer)
    with tarfile.open(lt) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/tool"].mode == 0o755 and members["bin/sh"].linkname == "tool"
    assert {"dev", "proc", "sys", "tmp"} <= set(members)


def test_network_names_fit_and_differ_per_version() -> None:
    rt = _load()
    net2, br2, sub2 = rt.network("2")
    net17, br17, sub17 = rt.network("1.7")
    assert len(br2) <= 15 and len(br17) <= 15  # IFNAMSIZ
    assert br2 != br17 and sub2 != sub17 and net2 != net17
