"""Live-mode discovery with a synthetic netlink snapshot over fixture trees: netlink attributes,
list truncation, uplink exclusion and its descendants (bond ports, VLAN lower devices, VFs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knd.api.names import interface_device_name
from knd.host.netlink import AF_INET, AF_INET6, DefaultRoute, Link, Snapshot
from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import discover
from knd.inventory.uplinks import uplinks
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit


def link(index: int, name: str, kind: str | None = None, **kw: object) -> Link:
    base: dict[str, object] = dict(
        operstate="up", mtu=1500, mac=f"02:00:00:00:00:{index:02x}", alias=None, arphrd=1
    )
    base.update(kw)
    return Link(index=index, name=name, kind=kind, **base)  # type: ignore[arg-type]


def test_uplinks_lowest_metric_ecmp_and_descendants() -> None:
    snap = Snapshot.of(
        [
            link(1, "lo", arphrd=772),
            link(2, "eth0"),
            link(3, "eth1"),
            link(4, "bond0", "bond"),
            link(5, "eth2", master=4),
            link(6, "eth3", master=4),
            link(7, "vlan10", "vlan", parent=8),
            link(8, "eth4"),
            link(9, "br0", "bridge"),
            link(10, "veth0", "veth", master=9),
            link(11, "eth5"),
        ],
        [
            DefaultRoute(AF_INET, 100, (2,)),
            DefaultRoute(AF_INET, 200, (11,)),  # higher metric: not an uplink
            DefaultRoute(AF_INET6, 1024, (4, 7)),  # ECMP over a bond and a VLAN
        ],
    )
    r = uplinks(snap)
    assert r == {
        2: "uplink: carries the ipv4 default route (metric 100)",
        4: "uplink: carries the ipv6 default route (metric 1024)",
        7: "uplink: carries the ipv6 default route (metric 1024)",
        5: "uplink: port of uplink bond0",
        6: "uplink: port of uplink bond0",
        8: "uplink: lower device of uplink vlan10",
    }


def test_live_attributes_truncation_and_uplink_vfs(tmp_path: Path) -> None:
    sysfs = SysfsRoot(write_tree("sriov", tmp_path / "sys"))
    v4 = tuple(f"10.0.{i}.1/24" for i in range(10))  # 10 x 11 chars: over 64 joined
    snap = Snapshot.of(
        [
            link(1, "lo", arphrd=772),
            link(2, "ens1f0", ipv4=("192.0.2.10/24",)),
            link(3, "ens1f1", ipv4=v4, ipv6=("2001:db8::1/64",), tc_filter_names=("cil_from",)),
            link(4, "kiv0", "veth", alias="pod side", operstate="lowerlayerdown"),
        ]
        + [link(100 + n, f"ens1f0v{n}") for n in range(64)]
        + [link(200 + n, f"ens1f1v{n}") for n in range(64)],
        [DefaultRoute(AF_INET, 0, (2,))],
    )
    found = discover(sysfs, test_ids.database(), snap)
    d = found.by_name()
    # the uplink PF and its 64 VFs are excluded; the other PF and its VFs are published
    assert "pci-0000-5e-00-0" not in d
    pf0_vfs = {f"pci-0000-5e-{1 + n // 8:02x}-{n % 8}" for n in range(64)}
    assert not pf0_vfs & set(d)
    reasons = {e.subject: (e.reason, e.device) for e in found.excluded}
    assert reasons["ens1f0"] == (
        "uplink: carries the ipv4 default route (metric 0)",
        "pci-0000-5e-00-0",
    )
    assert reasons["ens1f0v7"] == ("uplink: VF of uplink PF ens1f0", "pci-0000-5e-01-7")
    assert len(d) == 1 + 64 + 1
    pf1 = d["pci-0000-5e-00-1"].attributes
    assert pf1["dra.net/ipv4"] == ",".join(v4[:5])  # 5*11 + 4 commas = 59 ≤ 64 < 71
    assert pf1["dra.net/ipv6"] == "2001:db8::1/64"
    assert pf1["dra.net/tcFilterNames"] == "cil_from"
    assert pf1["dra.net/ebpf"] is True
    assert pf1["dra.net/type"] == "device"
    assert pf1["dra.net/mac"] == "02:00:00:00:00:03"  # netlink wins over sysfs in live mode
    assert d["kiv0"].attributes == {
        "dra.net/ifName": "kiv0",
        "dra.net/mac": "02:00:00:00:00:04",
        "dra.net/mtu": 1500,
        "dra.net/encapsulation": "ether",
        "dra.net/alias": "pod side",
        "dra.net/state": "lowerlayerdown",
        "dra.net/type": "veth",
        "dra.net/ebpf": False,
        # Always present on a netdev device; `virtual` is false when sysfs cannot tell (kiv0 is
        # not in this sysfs tree), as DraNet reports it.
        "dra.net/sriov": False,
        "dra.net/virtual": False,
        "dra.net/rdma": False,
    }


def test_non_dns_interface_names_are_encoded(tmp_path: Path) -> None:
    sysfs = SysfsRoot(tmp_path)
    snap = Snapshot.of([link(2, "mlx5_6", "macvlan"), link(3, "Eth_X", "veth")])
    d = discover(sysfs, test_ids.database(), snap).by_name()
    assert d["net-nvwhqnk7gy"].attributes["dra.net/ifName"] == "mlx5_6"
    assert interface_device_name("Eth_X") in d and interface_device_name("Eth_X").startswith("net-")
