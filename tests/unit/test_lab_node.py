"""The lab's pieces that need no root: the lab node's sysfs fixture as discovery sees it,
manifest loading, and bench/png.py."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import pytest

from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import discover
from knd.inventory.filter import AdminFilter
from knd.lab import lab as labmod
from knd.lab.sysfs_fixture import GPU_NODE_ROOTS, build_lab_node
from tests.fixtures import pciids as test_ids

pytestmark = pytest.mark.unit
NAMES = [f"klab{i}" for i in range(8)]


def test_lab_node_publishes_eight_aligned_nics_through_the_lab_filter(tmp_path: Path) -> None:
    build_lab_node(tmp_path, NAMES)
    found = discover(SysfsRoot(tmp_path), test_ids.database(), None)
    kept, dropped, _ = AdminFilter(labmod.LAB_FILTER, "dra.net").apply(found.devices)
    assert not dropped
    by_if = {d.attributes["dra.net/ifName"]: d.attributes for d in kept}
    assert sorted(by_if) == NAMES
    for i, (root, _bus, numa) in enumerate(GPU_NODE_ROOTS):
        assert by_if[NAMES[i]]["resource.kubernetes.io/pcieRoot"] == root
        assert by_if[NAMES[i]]["resource.kubernetes.io/numaNode"] == numa


def test_lab_node_wants_eight_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8 NICs"):
        build_lab_node(tmp_path, NAMES[:3])


def test_manifests_are_applied_in_dependency_order(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(
        "kind: Pod\nmetadata: {name: p}\n---\nkind: ResourceClaim\nmetadata: {name: c}\n"
        "---\nkind: DeviceClass\nmetadata: {name: d}\n---\nkind: ResourceClaimTemplate\n"
        "metadata: {name: t}\n"
    )
    kinds = [d["kind"] for d in labmod.load_manifests([f])]
    assert kinds == ["DeviceClass", "ResourceClaimTemplate", "ResourceClaim", "Pod"]
    f.write_text("kind: Deployment\nmetadata: {name: x}\n")
    with pytest.raises(labmod.LabError, match="Deployment"):
        labmod.load_manifests([f])


def test_png_writer_makes_a_valid_rgb_png(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from png import Canvas

    c = Canvas(10, 4)
    c.rect(0, 0, 1, 1, (255, 0, 0))
    c.save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (10, 4)
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
    assert len(raw) == 4 * (1 + 30) and raw[1:4] == b"\xff\x00\x00"
