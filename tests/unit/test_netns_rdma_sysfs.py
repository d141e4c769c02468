"""RDMA link and char devices found through a sysfs fixture tree (emulated: no RDMA here; the
real kernel's, with soft-RoCE: tests/vm/test_rdma.py); sysctl path validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from knd.netns.capture import rdma_char_devices, rdma_link_of
from knd.netns.errors import PlanError
from knd.netns.plan import CharDevice
from knd.netns.sysctl import global_path, interface_path

pytestmark = pytest.mark.unit


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_rdma_link_and_char_devices_from_sysfs(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    (sysfs / "class/net/ens1f0/device/infiniband/mlx5_0").mkdir(parents=True)
    _write(sysfs / "class/misc/rdma_cm/dev", "10:58\n")
    for cls, entry, ibdev, dev in (
        ("infiniband_verbs", "uverbs0", "mlx5_0", "231:192"),
        ("infiniband_verbs", "uverbs1", "mlx5_1", "231:193"),
        ("infiniband_mad", "umad0", "mlx5_0", "231:0"),
        ("infiniband_mad", "issm0", "mlx5_0", "231:64"),
    ):
        _write(sysfs / "class" / cls / entry / "ibdev", ibdev + "\n")
        _write(sysfs / "class" / cls / entry / "dev", dev + "\n")
    assert rdma_link_of("ens1f0", str(sysfs)) == "mlx5_0"
    assert rdma_link_of("eth0", str(sysfs)) is None
    got = rdma_char_devices("mlx5_0", str(sysfs), str(tmp_path / "dev"))
    assert got == (
        CharDevice("/dev/infiniband/rdma_cm", "c", 10, 58),
        CharDevice("/dev/infiniband/uverbs0", "c", 231, 192),
        CharDevice("/dev/infiniband/issm0", "c", 231, 64),
        CharDevice("/dev/infiniband/umad0", "c", 231, 0),
    )


def test_sysctl_paths_are_validated() -> None:
    assert interface_path("ipv4", "eth99", "arp_ignore") == (
        "/proc/sys/net/ipv4/conf/eth99/arp_ignore"
    )
    assert interface_path("ipv6", "net1", "forwarding").endswith("ipv6/conf/net1/forwarding")
    assert global_path("ipv4/tcp_l3mdev_accept") == "/proc/sys/net/ipv4/tcp_l3mdev_accept"
    for fam, name, key in (
        ("ipv4", "../all", "arp_ignore"),
        ("ipv4", "..", "arp_ignore"),
        ("ipv4", "eth0", "rp_filter"),
        ("ipv4", "a" * 16, "arp_ignore"),
        ("ipv4", "eth 0", "forwarding"),
    ):
        with pytest.raises(PlanError):
            interface_path(fam, name, key)
    with pytest.raises(PlanError):
        global_path("ipv4/ip_forward")
