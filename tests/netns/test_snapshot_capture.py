"""Host capture from one netlink snapshot (knd.netns.snapshot) and ethtool features over the
ioctl (knd.netns.ethtool_read), checked against iproute2 and ethtool read-backs; one snapshot
serves every device of a prepare call."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from knd.api.config import decode
from knd.driver.netns_plans import DeviceLocation, NetnsPlanBuilder
from knd.netns import capture, ethtool_read
from knd.netns.ethtool_read import feature_values
from knd.netns.snapshot import HostSnapshot

from .conftest import Lab, addrs, ipj, link, sh
from .helpers import drop_rule, give_host_state


def test_snapshot_host_side_matches_iproute2(lab: Lab) -> None:
    nic = lab.nic()
    n = 120 + secrets.randbelow(30)
    give_host_state(nic, n)
    sh("ip", "link", "set", nic.name, "alias", "storage uplink 2", "mtu", "1480")
    try:
        host = HostSnapshot.take().host_side(nic.name)
        facts = link(None, nic.name)
        assert (host.name, host.ifindex, host.mtu, host.mac) == (
            nic.name, facts["ifindex"], 1480, facts["address"]
        )  # fmt: skip
        assert host.up and host.alias == "storage uplink 2"
        assert set(host.addresses) == addrs(None, nic.name)
        table = 100 + n
        assert any(
            r.table == table and r.destination == f"10.{n + 100}.0.0/24"
            and r.gateway == f"10.{n}.0.254"
            for r in host.routes
        )  # fmt: skip
        assert [(r.table, r.priority, r.source) for r in host.rules] == [
            (table, 1000 + n, f"10.{n}.0.0/24")
        ]
        assert [(x.destination, x.hardware_addr) for x in host.neighbors] == [
            (f"10.{n}.0.9", "02:00:00:00:09:09")
        ]
        kernel_routes = [
            r for r in ipj(None, "route", "show", "table", "all")
            if r.get("dev") == nic.name and r.get("table") not in ("local",)
            and r.get("type", "unicast") == "unicast" and ":" not in r.get("dst", "")
        ]  # fmt: skip
        assert len([r for r in host.routes if ":" not in r.destination]) == len(kernel_routes)
        assert host.gso_max_size and host.gro_max_size
    finally:
        drop_rule(n)


@pytest.mark.skipif(shutil.which("ethtool") is None, reason="ethtool (the CLI) is not installed")
def test_ethtool_features_over_ioctl_match_ethtool_k(lab: Lab) -> None:
    nic = lab.nic()
    sh("ethtool", "-K", nic.name, "gro", "off")
    shown = {}
    for line in sh("ethtool", "-k", nic.name).splitlines()[1:]:
        name, _, rest = line.strip().partition(":")
        if rest.strip():
            shown[name] = rest.split()[0] == "on"
    got = dict((t.name, t.enable) for t in feature_values(nic.name))
    assert got["rx-gro"] is False
    common = set(got) & set(shown)
    assert len(common) > 20
    assert {k: got[k] for k in common} == {k: shown[k] for k in common}


@pytest.mark.skipif(shutil.which("ethtool") is None, reason="ethtool (the CLI) is not installed")
def test_ethtool_feature_names_remembered_values_read_per_call(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's feature-name table is read once per process; values are read every call,
    and a remembered table whose block count the kernel does not confirm is read again."""
    nic = lab.nic()
    monkeypatch.setattr(ethtool_read, "_tables", {})
    first = feature_values(nic.name)  # reads the names
    assert None in ethtool_read._tables
    table = ethtool_read._tables[None]
    names_read: list[str] = []
    real_read = ethtool_read._read_names

    def counting(s: object, ifname: str) -> tuple[str, ...]:
        names_read.append(ifname)
        return real_read(s, ifname)  # type: ignore[arg-type]

    monkeypatch.setattr(ethtool_read, "_read_names", counting)
    assert feature_values(nic.name) == first and names_read == []
    gro = dict((t.name, t.enable) for t in first)["rx-gro"]
    sh("ethtool", "-K", nic.name, "gro", "off" if gro else "on")
    toggled = dict((t.name, t.enable) for t in feature_values(nic.name))
    assert toggled["rx-gro"] is (not gro) and names_read == []
    # a table the kernel does not confirm (another block count) is replaced by a fresh read
    stale = ethtool_read._table_of((*table.names, *[f"x{i}" for i in range(40)]))
    monkeypatch.setattr(ethtool_read, "_tables", {None: stale})
    assert dict((t.name, t.enable) for t in feature_values(nic.name)) == toggled
    assert names_read == [nic.name] and ethtool_read._tables[None] == table


def test_one_snapshot_per_prepare_call(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    nics = [lab.nic() for _ in range(3)]
    taken: list[int] = []
    real = HostSnapshot.take

    def counting(lsock: object = None) -> HostSnapshot:
        taken.append(1)
        return real()

    monkeypatch.setattr(HostSnapshot, "take", staticmethod(counting))

    class Locator:
        def locate(self, device: str) -> DeviceLocation:
            return DeviceLocation(device, device, None)

    builder = NetnsPlanBuilder(locator=Locator())  # type: ignore[arg-type]
    cfg = decode({})
    with builder.batch():
        plans = [builder.build(nic.name, "uid", {}, "nic", cfg) for nic in nics]
    assert len(taken) == 1
    assert [p["host"]["name"] for p in plans] == [nic.name for nic in nics]
    builder.build(nics[0].name, "uid", {}, "nic", cfg)  # outside a batch: its own snapshot
    assert len(taken) == 2


def test_rdma_device_found_once_whichever_locator(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A soft-RoCE device layered on the NIC (fixture sysfs: its GID table names the NIC) ends
    up in the plan whether the sysfs locator found it or capture had to look; with the sysfs
    locator over the same root, capture does not read the GID tables again (nor when the
    locator found none)."""
    nic = lab.nic()
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "net" / nic.name).mkdir(parents=True)
    ndevs = sysfs / "class" / "infiniband" / "rxe0" / "ports" / "1" / "gid_attrs" / "ndevs"
    ndevs.mkdir(parents=True)
    (ndevs / "0").write_text(nic.name + "\n")
    looked: list[str] = []
    real = capture.rdma_link_of

    def counting(ifname: str, sysfs_root: str = "/sys") -> str | None:
        looked.append(ifname)
        return real(ifname, sysfs_root)

    monkeypatch.setattr(capture, "rdma_link_of", counting)
    cfg = decode({})
    by_sysfs = NetnsPlanBuilder(sysfs_root=str(sysfs), dev_root=str(tmp_path / "dev"))
    assert by_sysfs.build(nic.name, "uid", {}, "nic", cfg)["rdma"]["link"] == "rxe0"
    plain = lab.nic()  # no RDMA device: the locator found none, capture does not look again
    (sysfs / "class" / "net" / plain.name).mkdir()
    assert by_sysfs.build(plain.name, "uid", {}, "nic", cfg).get("rdma") is None
    assert looked == []

    class Locator:  # knows the interface, not its RDMA device
        def locate(self, device: str) -> DeviceLocation:
            return DeviceLocation(device, device, None)

    other = NetnsPlanBuilder(
        locator=Locator(),  # type: ignore[arg-type]
        sysfs_root=str(sysfs),
        dev_root=str(tmp_path / "dev"),
    )
    assert other.build(nic.name, "uid", {}, "nic", cfg)["rdma"]["link"] == "rxe0"
    assert looked == [nic.name]
