"""knd.host readers over fixture trees (real kernel layout, relative symlinks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knd.host import pciids
from knd.host.sysfs import (
    SysfsRoot,
    list_pci_functions,
    list_rdma_devices,
    netdev_location,
    pcie_root,
    read_netdev,
    read_pci_function,
)
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import gpu_address, gpu_nic_address, write_tree

pytestmark = pytest.mark.unit


def test_fixture_links_are_relative_and_resolve(tmp_path: Path) -> None:
    root = write_tree("gpu-node", tmp_path / "sys")
    link = root / "bus" / "pci" / "devices" / gpu_nic_address(0)
    assert not os.readlink(link).startswith("/")
    real = Path(os.path.realpath(link)).relative_to(root.resolve())
    assert real.parts[:2] == ("devices", "pci0000:0d")
    assert real.name == gpu_nic_address(0)
    assert os.readlink(root / "class" / "net" / "eth1").startswith("../../devices/pci0000:0d/")


def test_pcie_root_follows_the_k8s_algorithm(tmp_path: Path) -> None:
    s = SysfsRoot(write_tree("gpu-node", tmp_path / "sys"))
    for i, rc in enumerate(["pci0000:0d", "pci0000:1d", "pci0000:2d", "pci0000:3d"]):
        assert pcie_root(s, gpu_nic_address(i)) == rc
        assert pcie_root(s, gpu_address(i)) == rc  # the GPU next to it: same root
    assert pcie_root(s, "0000:00:05.0") == "pci0000:00"
    assert pcie_root(s, "0000:ff:00.0") is None  # absent
    assert pcie_root(s, "not-a-bdf") is None
    assert pcie_root(s, "../../etc") is None


def test_pcie_root_requires_devices_pci_prefix(tmp_path: Path) -> None:
    s = SysfsRoot(tmp_path)
    (tmp_path / "devices" / "platform" / "0000:01:00.0").mkdir(parents=True)
    (tmp_path / "bus" / "pci" / "devices").mkdir(parents=True)
    os.symlink("../../../devices/platform/0000:01:00.0", tmp_path / "bus/pci/devices/0000:01:00.0")
    assert pcie_root(s, "0000:01:00.0") is None


def test_pci_function_facts(tmp_path: Path) -> None:
    s = SysfsRoot(write_tree("sriov", tmp_path / "sys"))
    pf = read_pci_function(s, "0000:5e:00.0")
    assert pf is not None
    assert (pf.vendor_id, pf.device_id, pf.driver) == ("8086", "1593", "ice")
    assert (pf.subsystem_vendor_id, pf.subsystem_device_id) == ("8086", "0002")
    assert (pf.sriov_totalvfs, pf.sriov_numvfs, pf.physfn) == (64, 64, None)
    assert pf.netdevs == ("ens1f0",) and pf.numa_node == 0 and pf.is_network
    vf = read_pci_function(s, "0000:5e:09.0")
    assert vf is not None and vf.physfn == "0000:5e:00.1" and vf.netdevs == ("ens1f1v0",)
    assert len([f for f in list_pci_functions(s) if f.is_network]) == 130


def test_virtio_netdev_is_found_below_the_function(tmp_path: Path) -> None:
    s = SysfsRoot(write_tree("virtio-vm", tmp_path / "sys"))
    fn = read_pci_function(s, "0000:00:04.0")
    assert fn is not None and fn.netdevs == ("eth0",) and fn.numa_node is None
    assert netdev_location(s, "eth0") == ("0000:00:04.0", False)
    assert netdev_location(s, "veth1234") == (None, True)
    assert netdev_location(s, "nope") is None
    nd = read_netdev(s, "eth0")
    assert nd is not None
    assert (nd.address, nd.mtu, nd.operstate, nd.arphrd, nd.ifalias) == (
        "52:54:00:12:34:56",
        1500,
        "up",
        1,
        "uplink",
    )
    unbound = read_pci_function(s, "0000:00:07.0")
    assert unbound is not None and unbound.driver is None
    vfio = read_pci_function(s, "0000:00:08.0")
    assert vfio is not None and vfio.driver == "vfio-pci"


def test_rdma_devices_and_uverbs(tmp_path: Path) -> None:
    s = SysfsRoot(write_tree("infiniband", tmp_path / "sys"))
    rdma = {r.name: r for r in list_rdma_devices(s)}
    assert rdma["mlx5_0"].pci_address == "0000:3b:00.0"
    assert rdma["mlx5_1"].pci_address == "0000:3b:00.1"
    assert rdma["mlx4_0"].pci_address == "0000:81:00.0"
    assert rdma["mlx5_0"].uverbs == ("uverbs0",)
    ib0 = read_netdev(s, "ib0")
    assert ib0 is not None and ib0.arphrd == 32 and ib0.rdma_devices == ("mlx5_0",)
    assert ib0.speed_mbps == 200000


def test_pci_ids_parse_and_lookup() -> None:
    db = test_ids.database()
    assert db.vendor("15B3") == "Mellanox Technologies"
    assert db.device("15b3", "1021") == "MT2910 Family [ConnectX-7]"
    assert db.subsystem("8086", "1593", "8086", "0002") == "Ethernet Network Adapter E810-L-2"
    assert db.device("15b3", "ffff") is None
    assert "02" not in db.vendors  # the class section is not parsed as vendors


def test_pci_ids_absent_database_is_empty(tmp_path: Path) -> None:
    db = pciids.load(tmp_path / "missing.ids")
    assert db.vendors == {} and db.vendor("15b3") is None


def test_gpu_node_gpus_align_with_nics_by_pcie_root(tmp_path: Path) -> None:
    from tests.fixtures.sysfs import gpu_node_gpus

    s = SysfsRoot(write_tree("gpu-node", tmp_path / "sys"))
    gpus = gpu_node_gpus()
    assert len(gpus) == 8 and {numa for _, _, numa in gpus} == {0, 1}
    for i, (bus_id, root, _numa) in enumerate(gpus):
        assert pcie_root(s, bus_id) == root == pcie_root(s, gpu_nic_address(i))
