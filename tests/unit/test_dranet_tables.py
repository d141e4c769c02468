"""DraNet's table-driven unit tests for names, sysfs, inventory and the admin filter, restated
against knd's API (the cases are DraNet's; the code and wording are knd's), plus the inventory
fidelity rules DraNet gets right by construction: `class/net/bonding_masters` is not a device,
every netdev device carries `dra.net/sriov` and `dra.net/virtual`, and only directories under
`infiniband/` are RDMA devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knd.api.limits import truncate_list_string
from knd.api.names import interface_device_name, is_pci_address, pci_device_name
from knd.host import sysfs as hs
from knd.host.netlink import AF_INET, AF_INET6, DefaultRoute, Link, Snapshot
from knd.inventory.discover import discover
from knd.inventory.filter import AdminFilter
from knd.inventory.model import AttrValue, Device, Discovery
from knd.inventory.uplinks import uplinks
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import SysfsBuilder

pytestmark = pytest.mark.unit

# ---- names (DraNet pkg/names) -------------------------------------------------------------------

LONG_IFNAME = "very_long_interface_name_that_is_not_dns_compliant_at_all_and_exceeds_limits"


@pytest.mark.parametrize(
    ("ifname", "device"),
    [
        pytest.param("eth0", "eth0", id="already a DNS label"),
        pytest.param("my-device-1", "my-device-1", id="label with hyphens"),
        pytest.param("eth:0", "net-mv2gqorq", id="colon is encoded"),
        pytest.param("ETH0", "net-ivkeqma", id="upper case is encoded"),
        pytest.param("eth_int", "net-mv2gqx3jnz2a", id="underscore is encoded"),
        pytest.param("", "", id="empty stays empty"),
        pytest.param("a" * 63, "a" * 63, id="63 characters is still a label"),
        pytest.param(
            LONG_IFNAME,
            "net-ozsxe6k7nrxw4z27nfxhizlsmzqwgzk7nzqw2zk7orugc5c7nfzv63tporpwi3ttl5rw63lqnruwc3t"
            "ul5qxix3bnrwf6ylomrpwk6ddmvswi427nruw22luom",
            id="long name: prefix plus full base32",
        ),
    ],
)
def test_interface_device_name_table(ifname: str, device: str) -> None:
    assert interface_device_name(ifname) == device


def test_pci_device_name_table() -> None:
    assert pci_device_name("0000:8a:00.0") == "pci-0000-8a-00-0"


# ---- sysfs (DraNet pkg/inventory/sysfs.go) ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        pytest.param("0000:00:04.0", True, id="with domain"),
        # DraNet's parser also takes "00:04.0"; the kernel always writes the domain in sysfs
        # paths, and knd names devices only from full addresses (docs/dranet-migration.md).
        pytest.param("00:04.0", False, id="without domain"),
        pytest.param("not-a-pci-address", False, id="not an address"),
        pytest.param("", False, id="empty"),
        pytest.param("pci-0000:8c:00.0-device", False, id="embedded in a longer string"),
        pytest.param("0000:8c:00.0\n", False, id="trailing newline"),
    ],
)
def test_pci_address_parsing_table(text: str, ok: bool) -> None:
    assert is_pci_address(text) is ok


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(
            "devices/pci0000:00/0000:00:04.0/virtio1/net/eth0", "0000:00:04.0", id="virtio"
        ),
        pytest.param(
            "devices/pci0000:8c/0000:8c:00.0/0000:8d:00.0/0000:8e:02.0/0000:91:00.0/net/eth3",
            "0000:91:00.0",
            id="behind bridges: the nearest function wins",
        ),
        pytest.param("devices/virtual/net/lo", None, id="virtual: no address"),
        pytest.param("", None, id="empty path"),
    ],
)
def test_pci_address_from_device_path_table(
    tmp_path: Path, path: str, expected: str | None
) -> None:
    root = hs.SysfsRoot(tmp_path)
    assert hs.pci_address_of(root, tmp_path / path if path else tmp_path) == expected


def _nic_tree(tmp_path: Path) -> SysfsBuilder:
    b = SysfsBuilder(tmp_path)
    host = b.bridge("pci0000:00")
    b.pci(host, "0000:00:04.0", "15b3", "101d", driver="mlx5_core", sriov_total=4)
    b.netdev("eth0", pci="0000:00:04.0", mac="02:00:00:00:00:01")
    b.vf("0000:00:04.0", 0, "0000:00:04.1", "15b3", "101e", driver="mlx5_core")
    b.netdev("eth1", pci="0000:00:04.1", mac="02:00:00:00:00:02")
    return b


def _offline(tmp_path: Path) -> Discovery:
    return discover(hs.SysfsRoot(tmp_path), test_ids.database(), None)


@pytest.mark.parametrize(
    ("device", "is_vf"),
    [
        pytest.param("pci-0000-00-04-0", False, id="PF: no physfn link"),
        pytest.param("pci-0000-00-04-1", True, id="VF: physfn link"),
    ],
)
def test_sriov_vf_table(tmp_path: Path, device: str, is_vf: bool) -> None:
    _nic_tree(tmp_path)
    attrs = _offline(tmp_path).by_name()[device].attributes
    assert attrs.get("dra.net/isSriovVf", False) is is_vf


def _add_infiniband_entry(tmp_path: Path, kind: str) -> None:
    ib = tmp_path / "bus" / "pci" / "devices" / "0000:00:04.0" / "infiniband"
    if kind == "missing":
        return
    ib.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        (ib / "mlx5_0").write_text("not a device\n")
    elif kind == "link-to-file":
        (ib.parent / "stray").write_text("x\n")
        os.symlink("../stray", ib / "mlx5_0")
    elif kind == "empty-dir":
        (ib / "mlx5_0").mkdir()


@pytest.mark.parametrize(
    ("kind", "rdma"),
    [
        pytest.param("missing", False, id="no infiniband dir"),
        pytest.param("empty", False, id="empty infiniband dir"),
        pytest.param("file", False, id="a file is not an RDMA device"),
        pytest.param("link-to-file", False, id="a link to a file is not an RDMA device"),
        pytest.param("empty-dir", False, id="an empty directory is not an RDMA device"),
    ],
)
def test_rdma_device_of_a_function_table(tmp_path: Path, kind: str, rdma: bool) -> None:
    _nic_tree(tmp_path)
    _add_infiniband_entry(tmp_path, kind)
    attrs = _offline(tmp_path).by_name()["pci-0000-00-04-0"].attributes
    assert attrs["dra.net/rdma"] is rdma
    assert "dra.net/rdmaDevice" not in attrs


def test_rdma_device_found_and_first_of_several(tmp_path: Path) -> None:
    b = _nic_tree(tmp_path)
    b.rdma("0000:00:04.0", "mlx5_1")
    b.rdma("0000:00:04.0", "mlx5_0")
    # A stray file sorts first but is not a device.
    ib = tmp_path / "bus" / "pci" / "devices" / "0000:00:04.0" / "infiniband"
    (ib / "a_stray_file").write_text("x\n")
    attrs = _offline(tmp_path).by_name()["pci-0000-00-04-0"].attributes
    assert (attrs["dra.net/rdma"], attrs["dra.net/rdmaDevice"]) == (True, "mlx5_0")


def test_rdma_of_a_netdev_without_network_function_ignores_files(tmp_path: Path) -> None:
    """Live mode reads `class/net/<if>/device/infiniband/`: the same rule applies there."""
    b = SysfsBuilder(tmp_path)
    host = b.bridge("pci0000:00")
    # A non-network function (class 0x0200 absent) with a netdev: published by name.
    b.pci(host, "0000:00:05.0", "1ded", "107f", class_code="0x00ff00", driver="erdma")
    b.netdev("ens5", pci="0000:00:05.0")
    ib = tmp_path / "bus" / "pci" / "devices" / "0000:00:05.0" / "infiniband"
    ib.mkdir(parents=True)
    (ib / "erdma_0").write_text("x\n")
    snap = Snapshot.of(
        [
            Link(
                index=2,
                name="ens5",
                kind=None,
                operstate="up",
                mtu=1500,
                mac="02:00:00:00:00:05",
                alias=None,
                arphrd=1,
            )
        ],
        [],
    )
    d = discover(hs.SysfsRoot(tmp_path), test_ids.database(), snap).by_name()
    assert d["ens5"].attributes["dra.net/rdma"] is False


# ---- inventory (DraNet pkg/inventory/db.go) -----------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "published"),
    [
        pytest.param(None, False, id="unbound"),
        pytest.param("vfio-pci", False, id="vfio passthrough"),
        pytest.param("uio_pci_generic", False, id="uio generic"),
        pytest.param("igb_uio", False, id="dpdk uio"),
        pytest.param("pci-stub", False, id="pci stub"),
        pytest.param("gve", True, id="gve"),
        pytest.param("mlx5_core", True, id="mlx5"),
        pytest.param("virtio-pci", True, id="virtio"),
    ],
)
def test_allocatable_network_function_table(
    tmp_path: Path, driver: str | None, published: bool
) -> None:
    b = SysfsBuilder(tmp_path)
    b.pci(b.bridge("pci0000:00"), "0000:00:06.0", "1ae0", "0042", driver=driver)
    found = _offline(tmp_path)
    assert ("pci-0000-00-06-0" in found.by_name()) is published
    assert any(e.subject == "0000:00:06.0" for e in found.excluded) is not published


@pytest.mark.parametrize(
    ("items", "limit", "expected"),
    [
        pytest.param([], 64, "", id="empty input"),
        pytest.param(["10.0.0.1/24"], 64, "10.0.0.1/24", id="one fits"),
        pytest.param(["a" * 30, "b" * 33], 64, "a" * 30 + "," + "b" * 33, id="exactly at limit"),
        pytest.param(["a" * 30, "b" * 34], 64, "a" * 30, id="stops before the overflowing one"),
        # DraNet stops here and publishes nothing; knd skips the one element that can never fit
        # and keeps the rest (docs/dranet-migration.md).
        pytest.param(["a" * 65, "b"], 64, "b", id="first larger than the limit"),
        pytest.param(["a"], 0, "", id="non-positive limit"),
        pytest.param(
            [
                "2001:db8::1/64",
                "2001:db8::2/64",
                "2001:db8::3/64",
                "2001:db8::4/64",
                "2001:db8::5/64",
            ],
            64,
            "2001:db8::1/64,2001:db8::2/64,2001:db8::3/64,2001:db8::4/64",
            id="ipv6 stops at an element boundary",
        ),
    ],
)
def test_ip_list_truncation_table(items: list[str], limit: int, expected: str) -> None:
    assert truncate_list_string(items, limit) == expected


def _veth_tree(tmp_path: Path) -> SysfsBuilder:
    b = _nic_tree(tmp_path)
    b.netdev("veth0", mac="aa:bb:cc:dd:ee:01")
    b.netdev("bond0", mac="aa:bb:cc:dd:ee:02")
    # The bonding driver's control file: a regular file in class/net, not a netdev.
    (tmp_path / "class" / "net" / "bonding_masters").write_text("bond0\n")
    return b


def test_bonding_masters_is_not_a_device(tmp_path: Path) -> None:
    _veth_tree(tmp_path)
    found = _offline(tmp_path)
    names = sorted(found.by_name())
    assert names == ["bond0", "pci-0000-00-04-0", "pci-0000-00-04-1", "veth0"]
    assert all(e.subject != "bonding_masters" for e in found.excluded)


def test_a_directory_in_class_net_is_not_a_device_either(tmp_path: Path) -> None:
    _veth_tree(tmp_path)
    (tmp_path / "class" / "net" / "notalink").mkdir()
    assert "notalink" not in _offline(tmp_path).by_name()


def _sriov_virtual(dev: Device) -> tuple[AttrValue | None, AttrValue | None]:
    return dev.attributes.get("dra.net/sriov"), dev.attributes.get("dra.net/virtual")


def test_every_netdev_device_has_sriov_and_virtual_offline(tmp_path: Path) -> None:
    _veth_tree(tmp_path)
    d = _offline(tmp_path).by_name()
    assert _sriov_virtual(d["veth0"]) == (False, True)
    assert _sriov_virtual(d["bond0"]) == (False, True)
    assert _sriov_virtual(d["pci-0000-00-04-0"]) == (True, False)
    assert _sriov_virtual(d["pci-0000-00-04-1"]) == (False, False)


def test_every_netdev_device_has_sriov_and_virtual_live(tmp_path: Path) -> None:
    _veth_tree(tmp_path)

    def link(index: int, name: str, kind: str | None) -> Link:
        return Link(
            index=index,
            name=name,
            kind=kind,
            operstate="up",
            mtu=1500,
            mac=f"02:00:00:00:01:{index:02x}",
            alias=None,
            arphrd=1,
        )

    snap = Snapshot.of(
        [
            link(2, "eth0", None),
            link(3, "eth1", None),
            link(4, "veth0", "veth"),
            link(5, "bond0", "bond"),
            # In the host netns but missing from this sysfs (a race with deletion): still both.
            link(6, "dummy9", "dummy"),
        ],
        [],
    )
    d = discover(hs.SysfsRoot(tmp_path), test_ids.database(), snap).by_name()
    for name in d:
        assert None not in _sriov_virtual(d[name]), name
    assert _sriov_virtual(d["veth0"]) == (False, True)
    assert _sriov_virtual(d["dummy9"]) == (False, False)


# ---- admin filter (DraNet pkg/filter), in knd's selector form -----------------------------------


def _dev(device_name: str, **attrs: AttrValue) -> Device:
    return Device(device_name, {f"dra.net/{k}": v for k, v in attrs.items()})


NET_ETH0 = _dev("dev1", kind="network", name="eth0", type="veth", virtual=True)
RDMA_ETH1 = _dev("dev2", kind="rdma", name="eth1", type="veth", virtual=True)


@pytest.mark.parametrize(
    ("expression", "devices", "kept"),
    [
        pytest.param("", [_dev("dev1")], ["dev1"], id="no program keeps all"),
        pytest.param(
            'device.attributes["dra.net"].kind == "network"',
            [NET_ETH0, RDMA_ETH1],
            ["dev1"],
            id="by one attribute",
        ),
        pytest.param(
            'device.attributes["dra.net"].kind == "network" && '
            'device.attributes["dra.net"].name == "eth0"',
            [NET_ETH0, RDMA_ETH1],
            ["dev1"],
            id="by two attributes",
        ),
        pytest.param(
            'device.attributes["dra.net"].type != "veth"', [NET_ETH0, RDMA_ETH1], [], id="not veth"
        ),
        pytest.param(
            'device.attributes["dra.net"].virtual',
            [NET_ETH0, RDMA_ETH1],
            ["dev1", "dev2"],
            id="a bool attribute is a verdict",
        ),
        pytest.param('device.attributes["dra.net"].kind == "network"', [], [], id="no devices"),
        pytest.param(
            'device.attributes["dra.net"].kind == "network"',
            [_dev("dev1", kind="rdma"), _dev("dev2", kind="rdma")],
            [],
            id="all filtered out",
        ),
        pytest.param(
            "true", [_dev("dev1", kind="rdma"), _dev("dev2")], ["dev1", "dev2"], id="true keeps all"
        ),
    ],
)
def test_admin_filter_table(expression: str, devices: list[Device], kept: list[str]) -> None:
    got, dropped, _warnings = AdminFilter(expression).apply(devices)
    assert [d.name for d in got] == kept
    assert len(got) + len(dropped) == len(devices)


# ---- uplinks (DraNet pkg/inventory/net.go) ------------------------------------------------------


def _l(index: int, name: str, kind: str | None = None, **kw: object) -> Link:
    base: dict[str, object] = dict(operstate="up", mtu=1500, mac=None, alias=None, arphrd=1)
    base.update(kw)
    return Link(index=index, name=name, kind=kind, **base)  # type: ignore[arg-type]


_HOST = [_l(1, "lo", arphrd=772), _l(2, "eth0"), _l(3, "eth1"), _l(4, "eth2")]


def _v4(metric: int, *oifs: int) -> DefaultRoute:
    return DefaultRoute(AF_INET, metric, oifs)


def _v6(metric: int, *oifs: int) -> DefaultRoute:
    return DefaultRoute(AF_INET6, metric, oifs)


@pytest.mark.parametrize(
    ("routes", "excluded"),
    [
        pytest.param([], set(), id="no default route"),
        pytest.param([_v4(0, 2)], {2}, id="one ipv4 default route"),
        pytest.param([_v4(100, 2), _v4(50, 3)], {3}, id="lower metric wins (ipv4)"),
        pytest.param([_v6(100, 2), _v6(50, 3)], {3}, id="lower metric wins (ipv6)"),
        pytest.param([_v4(0, 2), _v6(0, 3)], {2, 3}, id="families are independent"),
        pytest.param([_v4(0, 2), _v6(0, 2)], {2}, id="one link for both families"),
        pytest.param([_v4(10, 2), _v4(10, 3)], {2, 3}, id="ECMP: equal metrics all count"),
        pytest.param([_v4(10, 2, 3)], {2, 3}, id="multipath: every next hop counts"),
        pytest.param([_v4(0, 4), _v4(100, 2)], {4}, id="point-to-point metric 0 beats gateway"),
    ],
)
def test_default_route_uplinks_table(routes: list[DefaultRoute], excluded: set[int]) -> None:
    """Route selection (main table, /0 only) is the netlink layer's; this is the choice among
    the default routes it reports."""
    assert set(uplinks(Snapshot.of(_HOST, routes))) == excluded


@pytest.mark.parametrize(
    ("links", "excluded"),
    [
        pytest.param([_l(2, "eth0")], {"eth0"}, id="the uplink alone"),
        pytest.param(
            [_l(2, "bond0", "bond"), _l(3, "eth0", master=2), _l(4, "eth1", master=2)],
            {"bond0", "eth0", "eth1"},
            id="ports of an uplink bond",
        ),
        pytest.param(
            [_l(2, "br0", "bridge"), _l(5, "bond0", "bond", master=2), _l(3, "eth0", master=5)],
            {"br0", "bond0", "eth0"},
            id="recursive: a bond port of an uplink bridge",
        ),
        pytest.param([_l(2, "eth0"), _l(3, "eth1")], {"eth0"}, id="another NIC stays"),
        pytest.param(
            [_l(2, "eth0"), _l(3, "mv0", "macvlan", parent=2)],
            {"eth0"},
            id="a macvlan child of the uplink stays allocatable",
        ),
        pytest.param(
            [_l(2, "eth0"), _l(3, "ipv0", "ipvlan", parent=2)],
            {"eth0"},
            id="an ipvlan child of the uplink stays allocatable",
        ),
        pytest.param(
            [_l(2, "vlan10", "vlan", parent=3), _l(3, "eth0")],
            {"vlan10", "eth0"},
            id="the lower device of an uplink VLAN",
        ),
    ],
)
def test_uplink_descendants_table(links: list[Link], excluded: set[str]) -> None:
    snap = Snapshot.of(links, [_v4(0, 2)])
    assert {snap.by_index[i].name for i in uplinks(snap)} == excluded
