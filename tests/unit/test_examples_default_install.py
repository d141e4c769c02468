"""Every example claim selects devices a default install publishes, and allocates.

The "cluster" here: a GPU node (the `gpu-node` sysfs fixture: 8 RoCE NICs and a gVNIC, 8 GPUs
on 8 PCIe roots) seen live through a netlink snapshot that also holds a veth, a dummy and one
NIC with a TC eBPF filter; discovery, then DraNet's default admin filter (veths dropped), then
the slices; the chart's DeviceClasses plus the GPU driver's. Each example's claims and templates
go through the scheduler emulator. A selector that only a veth matched would fail here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from knd.host.netlink import Link, Snapshot
from knd.host.sysfs import SysfsRoot, list_netdevs
from knd.inventory.discover import discover
from knd.inventory.filter import DEFAULT_FILTER, AdminFilter
from knd.inventory.slices import assign, slice_object
from knd.lab.allocator import Allocator
from knd.lab.gpu_slices import gpu_device_class, gpu_resource_slice
from knd.lab.manifests import render_chart
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import gpu_node_gpus, write_tree

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
NODE = "gpu-node-1"
EXAMPLES = sorted(
    p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("deviceclass-")
)


def _link(index: int, name: str, kind: str | None, **kw: Any) -> Link:
    base: dict[str, Any] = dict(operstate="up", mtu=1500, mac=f"02:00:00:00:02:{index:02x}")
    base.update(alias=None, arphrd=1)
    base.update(kw)
    return Link(index=index, name=name, kind=kind, **base)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Allocator, list[str]]:
    root = write_tree("gpu-node", tmp_path_factory.mktemp("sys"))
    sysfs = SysfsRoot(root)
    names = [n for n in list_netdevs(sysfs) if n != "lo"]
    links = [_link(2 + i, n, None) for i, n in enumerate(names)]
    links[-1] = _link(2 + len(names) - 1, names[-1], None, tc_filter_names=("cil_from_netdev",))
    links += [_link(50, "veth0a1b2c", "veth"), _link(51, "dummy0", "dummy")]
    found = discover(sysfs, test_ids.database(), Snapshot.of(links, []))
    published, dropped, _ = AdminFilter(DEFAULT_FILTER).apply(found.devices)
    assert [d.name for d in dropped] == ["veth0a1b2c"]  # the default filter is in force
    planned = assign(published)
    slices = [slice_object(NODE, "dra.net", p, 1, len(planned)) for p in planned]
    slices.append(gpu_resource_slice(NODE, gpu_node_gpus()))
    classes = {d["metadata"]["name"]: d for d in render_chart() if d["kind"] == "DeviceClass"}
    classes["gpu.nvidia.com"] = gpu_device_class()
    return Allocator(slices, classes, NODE), [d.name for d in published]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_allocates_on_a_default_install(
    cluster: tuple[Allocator, list[str]], path: Path
) -> None:
    allocator, published = cluster
    claims = [
        d
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] in ("ResourceClaim", "ResourceClaimTemplate")
    ]
    if path.parent.name == "examples":
        assert claims, f"{path.name}: no claim"
    for doc in claims:
        spec = doc["spec"]["spec"] if doc["kind"] == "ResourceClaimTemplate" else doc["spec"]
        allocation, _ = allocator.allocate(spec)
        for result in allocation["devices"]["results"]:
            if result["driver"] == "dra.net":
                assert result["device"] in published
