"""Discovery on a real PCI topology: two root complexes on two NUMA nodes, virtio-net NICs."""

from __future__ import annotations

from knd.api import attributes as attr
from knd.host.netlink import LiveNetlink
from knd.inventory.scanner import Inventory

from .conftest import VNic


def test_virtio_nics_published_per_root_complex_and_numa_node(vnics: list[VNic]) -> None:
    result = Inventory(netlink=LiveNetlink()).scan()
    published = {d.name: d.attributes for d in result.published}
    for nic in vnics:
        assert nic.device in published, f"{nic.ifname} ({nic.bdf}) not published"
        a = published[nic.device]
        assert a[attr.STD_PCIE_ROOT] == nic.root
        assert a[attr.STD_NUMA_NODE] == nic.numa
        assert a[attr.NUMA_NODE] == nic.numa
        assert a[attr.STD_PCI_BUS_ID] == a[attr.PCI_ADDRESS] == nic.bdf
        assert a[attr.IF_NAME] == nic.ifname
        assert a[attr.MAC] == nic.mac
        assert a[attr.VIRTUAL] is False
        assert a[attr.TYPE] == "device"
        assert a[attr.PCI_VENDOR] == "Red Hat, Inc."  # virtio's vendor 0x1af4, from pci.ids
    assert len({published[n.device][attr.STD_PCIE_ROOT] for n in vnics}) == 2
    # The NICs' own PCI functions only: the root ports and expander bridges are not NICs.
    assert {n for n in published if n.startswith("pci-")} == {n.device for n in vnics}
