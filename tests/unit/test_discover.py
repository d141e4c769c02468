"""Discovery over the five fixture trees: exact attributes per device and exclusion reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from knd.host.pciids import PciIds
from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import Options, discover
from knd.inventory.model import Discovery
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import GPU_NODE_ROOTS, gpu_nic_address, write_tree

pytestmark = pytest.mark.unit
SUBSYS_CX6 = "ConnectX-6 VPI adapter card, HDR IB (200Gb/s), single-port QSFP56"


_TREES: dict[str, Path] = {}


def scan(tmp_path: Path, tree: str, ids: PciIds | None = None, **opts: Any) -> Discovery:
    """Discover over a fixture tree (built once per test session; trees are read-only)."""
    if tree not in _TREES:
        _TREES[tree] = write_tree(tree, tmp_path / tree)
    return discover(SysfsRoot(_TREES[tree]), ids or test_ids.database(), None, Options(**opts))


def test_gpu_node_nic_exact_attributes(tmp_path: Path) -> None:
    found = scan(tmp_path, "gpu-node")
    devices = found.by_name()
    assert sorted(devices) == sorted(
        ["pci-0000-00-05-0"]
        + [f"pci-{gpu_nic_address(i).replace(':', '-').replace('.', '-')}" for i in range(8)]
    )
    assert devices["pci-0000-91-00-0"].attributes == {
        "dra.net/ifName": "eth5",
        "dra.net/pciAddress": "0000:91:00.0",
        "dra.net/mac": "02:00:00:00:8d:01",
        "dra.net/pciVendor": "Mellanox Technologies",
        "dra.net/pciDevice": "MT2910 Family [ConnectX-7]",
        "dra.net/pciSubsystem": "15b3:0041",
        "dra.net/numaNode": 1,
        "dra.net/mtu": 8896,
        "dra.net/encapsulation": "ether",
        "dra.net/state": "up",
        "dra.net/type": "device",
        "dra.net/sriov": False,
        "dra.net/virtual": False,
        "dra.net/rdma": True,
        "dra.net/rdmaDevice": "mlx5_4",
        "dra.net/linkSpeed": 400000,
        "resource.kubernetes.io/pcieRoot": "pci0000:8d",
        "resource.kubernetes.io/numaNode": 1,
        "resource.kubernetes.io/pciBusID": "0000:91:00.0",
    }
    assert found.excluded == [found.excluded[0]] and found.excluded[0].reason == "loopback"
    assert found.offline


def test_gpu_node_topology_pairs_and_numa(tmp_path: Path) -> None:
    devices = scan(tmp_path, "gpu-node").by_name()
    roots = set()
    for i, (rc, _bus, numa) in enumerate(GPU_NODE_ROOTS):
        name = "pci-" + gpu_nic_address(i).replace(":", "-").replace(".", "-")
        attrs = devices[name].attributes
        assert attrs["resource.kubernetes.io/pcieRoot"] == rc
        assert attrs["resource.kubernetes.io/numaNode"] == numa
        roots.add(rc)
    assert len(roots) == 8
    uplink = devices["pci-0000-00-05-0"].attributes
    assert uplink["dra.net/pciDevice"] == "Compute Engine Virtual Ethernet [gVNIC]"
    assert uplink["resource.kubernetes.io/pcieRoot"] == "pci0000:00"


def test_infiniband_ipoib_and_ib_only_and_standalone(tmp_path: Path) -> None:
    found = scan(tmp_path, "infiniband")
    d = found.by_name()
    assert sorted(d) == ["pci-0000-3b-00-0", "pci-0000-3b-00-1", "pci-0000-81-00-0"]
    ib0 = d["pci-0000-3b-00-0"].attributes
    assert ib0["dra.net/ifName"] == "ib0"
    assert ib0["dra.net/type"] == "ipoib"
    assert ib0["dra.net/encapsulation"] == "infiniband"
    assert ib0["dra.net/rdmaDevice"] == "mlx5_0"
    # the pci.ids name is 65 characters: cut to the 64-character string limit, with a warning
    assert ib0["dra.net/pciSubsystem"] == SUBSYS_CX6[:64]
    assert "pci-0000-3b-00-0: dra.net/pciSubsystem truncated to 64 characters" in found.warnings
    assert d["pci-0000-3b-00-1"].attributes == {
        "dra.net/pciAddress": "0000:3b:00.1",
        "dra.net/pciVendor": "Mellanox Technologies",
        "dra.net/pciDevice": "MT28908 Family [ConnectX-6]",
        "dra.net/pciSubsystem": SUBSYS_CX6[:64],
        "dra.net/numaNode": 0,
        "dra.net/sriov": False,
        "dra.net/virtual": False,
        "dra.net/rdma": True,
        "dra.net/rdmaDevice": "mlx5_1",
        "resource.kubernetes.io/pcieRoot": "pci0000:3a",
        "resource.kubernetes.io/numaNode": 0,
        "resource.kubernetes.io/pciBusID": "0000:3b:00.1",
    }
    standalone = d["pci-0000-81-00-0"].attributes  # class 0x0c0600: not a network function
    assert standalone["dra.net/rdmaDevice"] == "mlx4_0"
    assert standalone["resource.kubernetes.io/pcieRoot"] == "pci0000:80"
    assert "dra.net/ifName" not in standalone


def test_ipoib_excluded_when_not_moved(tmp_path: Path) -> None:
    found = scan(tmp_path, "infiniband", move_ib_interfaces=False)
    reasons = {e.subject: e.reason for e in found.excluded}
    assert reasons["ib0"] == "ipoib: IPoIB interfaces are not moved"
    # the function itself stays, as an IB-only device
    assert "dra.net/ifName" not in found.by_name()["pci-0000-3b-00-0"].attributes


def test_sriov_pf_and_vf_attributes(tmp_path: Path) -> None:
    found = scan(tmp_path, "sriov")
    d = found.by_name()
    assert len(d) == 130
    pf = d["pci-0000-5e-00-0"].attributes
    assert (pf["dra.net/sriov"], pf["dra.net/sriovVfs"]) == (True, 64)
    assert pf["dra.net/pciSubsystem"] == "Ethernet Network Adapter E810-L-2"
    assert "dra.net/isSriovVf" not in pf
    vf = d["pci-0000-5e-10-7"].attributes
    assert vf == {
        "dra.net/ifName": "ens1f1v63",
        "dra.net/pciAddress": "0000:5e:10.7",
        "dra.net/mac": "02:00:00:01:00:3f",
        "dra.net/pciVendor": "Intel Corporation",
        "dra.net/pciDevice": "Ethernet Adaptive Virtual Function",
        "dra.net/pciSubsystem": "8086:0000",
        "dra.net/numaNode": 0,
        "dra.net/mtu": 1500,
        "dra.net/encapsulation": "ether",
        "dra.net/state": "up",
        "dra.net/type": "device",
        "dra.net/sriov": False,
        "dra.net/isSriovVf": True,
        "dra.net/virtual": False,
        "dra.net/rdma": False,
        "resource.kubernetes.io/pcieRoot": "pci0000:5d",
        "resource.kubernetes.io/numaNode": 0,
        "resource.kubernetes.io/pciBusID": "0000:5e:10.7",
    }


def test_erdma_standalone_device(tmp_path: Path) -> None:
    d = scan(tmp_path, "erdma").by_name()
    assert sorted(d) == ["pci-0000-00-05-0", "pci-0000-00-06-0"]
    assert d["pci-0000-00-06-0"].attributes == {
        "dra.net/pciAddress": "0000:00:06.0",
        "dra.net/pciVendor": "Alibaba (China) Co., Ltd.",
        "dra.net/pciDevice": "Elastic RDMA Adapter",
        "dra.net/pciSubsystem": "1ded:0000",
        "dra.net/sriov": False,
        "dra.net/virtual": False,
        "dra.net/rdma": True,
        "dra.net/rdmaDevice": "erdma_0",
        "resource.kubernetes.io/pcieRoot": "pci0000:00",
        "resource.kubernetes.io/pciBusID": "0000:00:06.0",
    }
    assert d["pci-0000-00-05-0"].attributes["dra.net/rdma"] is False


def test_virtio_vm_exclusions_and_virtual_interfaces(tmp_path: Path) -> None:
    found = scan(tmp_path, "virtio-vm")
    assert [(e.subject, e.reason) for e in found.excluded] == [
        ("0000:00:07.0", "unbound: no kernel driver"),
        ("0000:00:08.0", "passthrough: bound to vfio-pci"),
        ("docker0", "name: on the built-in skip list"),
        ("lo", "loopback"),
    ]
    d = found.by_name()
    assert sorted(d) == ["pci-0000-00-04-0", "veth1234"]
    assert d["veth1234"].attributes == {
        "dra.net/ifName": "veth1234",
        "dra.net/mac": "aa:bb:cc:dd:ee:01",
        "dra.net/mtu": 1500,
        "dra.net/encapsulation": "ether",
        "dra.net/state": "up",
        "dra.net/sriov": False,
        "dra.net/virtual": True,
        "dra.net/rdma": False,
    }
    assert d["pci-0000-00-04-0"].attributes["dra.net/alias"] == "uplink"


def test_numeric_ids_without_pci_ids(tmp_path: Path) -> None:
    d = scan(tmp_path, "gpu-node", ids=PciIds()).by_name()
    attrs = d["pci-0000-11-00-0"].attributes
    assert (attrs["dra.net/pciVendor"], attrs["dra.net/pciDevice"]) == ("15b3", "1021")
    assert attrs["dra.net/pciSubsystem"] == "15b3:0041"


def test_every_device_is_within_api_limits(tmp_path: Path) -> None:
    from knd.api.limits import is_dns_label

    for tree in ("gpu-node", "infiniband", "sriov", "erdma", "virtio-vm"):
        for dev in scan(tmp_path, tree).devices:
            assert is_dns_label(dev.name)
            assert len(dev.attributes) <= 32
            assert all(len(v) <= 64 for v in dev.attributes.values() if isinstance(v, str))


def _add_soft_roce(root: Path, netdev: str, name: str = "rxe0") -> None:
    """A soft-RoCE device as rdma_rxe makes it: virtual (no PCI parent), its netdev named only
    by the default GID of its port (`ports/1/gid_attrs/ndevs/0`); an unset GID entry reads as
    nothing (the kernel answers EINVAL)."""
    dev = root / "devices/virtual/infiniband" / name
    (dev / "ports/1/gid_attrs/ndevs").mkdir(parents=True)
    (dev / "ports/1/gid_attrs/ndevs/0").write_text(netdev + "\n")
    (root / "class/infiniband").mkdir(parents=True, exist_ok=True)
    (root / "class/infiniband" / name).symlink_to(f"../../devices/virtual/infiniband/{name}")


def test_soft_roce_is_published_with_its_netdev(tmp_path: Path) -> None:
    from knd.driver.netns_plans import SysfsDeviceLocator
    from knd.netns.capture import rdma_link_of

    root = write_tree("virtio-vm", tmp_path / "vm")
    _add_soft_roce(root, "eth0")
    _add_soft_roce(root, "veth1234", "rxe1")
    found = discover(SysfsRoot(root), test_ids.database(), None, Options()).by_name()
    assert sorted(found) == ["pci-0000-00-04-0", "veth1234"]  # no device of its own
    nic = found["pci-0000-00-04-0"].attributes
    assert (nic["dra.net/rdma"], nic["dra.net/rdmaDevice"]) == (True, "rxe0")
    veth = found["veth1234"].attributes
    assert (veth["dra.net/rdma"], veth["dra.net/rdmaDevice"]) == (True, "rxe1")
    loc = SysfsDeviceLocator(root).locate("pci-0000-00-04-0")
    assert loc is not None and (loc.ifname, loc.rdma_device) == ("eth0", "rxe0")
    by_name = SysfsDeviceLocator(root).locate("veth1234")
    assert by_name is not None and by_name.rdma_device == "rxe1"
    assert rdma_link_of("eth0", str(root)) == "rxe0"
    assert rdma_link_of("docker0", str(root)) is None


def test_rdma_device_without_netdev_or_pci_stays_standalone(tmp_path: Path) -> None:
    root = write_tree("virtio-vm", tmp_path / "vm")
    _add_soft_roce(root, "gone0")  # its netdev is not on this host (or in a pod's netns)
    found = discover(SysfsRoot(root), test_ids.database(), None, Options()).by_name()
    assert found["rxe0"].attributes["dra.net/rdmaDevice"] == "rxe0"
