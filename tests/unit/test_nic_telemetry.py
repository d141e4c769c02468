"""Per-pod NIC telemetry without privileges: the stats decoder, RDMA counters from a fixture
sysfs tree (hostile files included), the collector's series lifecycle, `knd top`'s rates."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from knd.cli.top_cmd import parse_sample, rates
from knd.driver.nic_telemetry import NicTelemetry, TrackedNic, nics_of
from knd.host.rdma_counters import read_rdma_counters
from knd.netns.linkstats import IFLA_CARRIER, IFLA_OPERSTATE, IFLA_STATS64, LinkStats, decode_stats
from knd.netns.plan import AttachPlan, HostSide, PodSide, RdmaPlan
from knd.netns.rawlink import IFLA_IFNAME, NLMSG_ERROR, RTM_NEWLINK


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n % 4)


def _newlink(seq: int, name: str, counters: tuple[int, ...]) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, 5, 0, 0)
    body += _attr(IFLA_IFNAME, name.encode() + b"\0")
    body += _attr(IFLA_STATS64, struct.pack("=24Q", *counters, *([0] * (24 - len(counters)))))
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, 0, seq, 0) + body


def test_decode_stats_reads_operstate_and_carrier_for_device_health() -> None:
    data = _newlink(5, "net1", (1, 2, 3, 4, 5, 6, 7, 8))
    extra = _attr(IFLA_OPERSTATE, bytes([3])) + _attr(IFLA_CARRIER, bytes([0]))
    length = struct.unpack_from("=I", data)[0] + len(extra)
    data = struct.pack("=I", length) + data[4:] + extra
    _, stats = decode_stats(data, 5)
    assert stats is not None
    assert (stats.operstate, stats.carrier) == ("lowerlayerdown", False)
    assert stats.rx_packets == 1 and stats.tx_dropped == 8


def test_decode_stats_reads_stats64_in_kernel_order() -> None:
    data = _newlink(9, "net1", (1, 2, 3, 4, 5, 6, 7, 8))
    assert decode_stats(data, 8) == (False, None)  # another request's answer
    assert decode_stats(data, 9) == (True, LinkStats("net1", 1, 2, 3, 4, 5, 6, 7, 8))
    enodev = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 3, 0) + struct.pack("=i", -errno.ENODEV)
    assert decode_stats(enodev + b"\0" * 16, 3) == (True, None)
    eperm = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 4, 0) + struct.pack("=i", -errno.EPERM)
    with pytest.raises(PermissionError):
        decode_stats(eperm + b"\0" * 16, 4)
    # A truncated or lying message is not read past its end.
    assert decode_stats(data[:40], 9) == (False, None)
    bad = bytearray(data)
    struct.pack_into("=H", bad, 32, 60000)  # first attribute claims to run past the message
    assert decode_stats(bytes(bad), 9) == (True, None)


def _rdma_tree(root: Path) -> None:
    port = root / "class" / "infiniband" / "mlx5_0" / "ports" / "1" / "counters"
    port.mkdir(parents=True)
    (port / "port_rcv_data").write_text("250\n")  # 4-octet words
    (port / "port_xmit_data").write_text("100\n")
    (port / "port_rcv_packets").write_text("7\n")
    (port / "port_xmit_packets").write_text("not a number\n")
    (port / "port_rcv_errors").write_text("9" * 40)  # longer than any counter
    (port / "port_xmit_discards").symlink_to("/etc/hostname")  # never followed


def test_rdma_counters_are_bounded_and_confined(tmp_path: Path) -> None:
    _rdma_tree(tmp_path)
    got = {(c.port, c.kind, c.direction): c.value for c in read_rdma_counters("mlx5_0", tmp_path)}
    assert got == {("1", "bytes", "rx"): 1000, ("1", "bytes", "tx"): 400, ("1", "packets", "rx"): 7}
    assert read_rdma_counters("../../etc", tmp_path) == []
    assert read_rdma_counters("..", tmp_path) == []
    assert read_rdma_counters("absent", tmp_path) == []


class FakeReader:
    opened: list[int] = []
    closed = 0

    def __init__(self, fd: int) -> None:
        FakeReader.opened.append(fd)
        self.n = 0

    def read(self, ifname: str) -> LinkStats | None:
        self.n += 1
        return LinkStats(ifname, 10 * self.n, 20, 1000 * self.n, 2000, 0, 1, 2, 0)

    def close(self) -> None:
        FakeReader.closed += 1


def test_series_exist_only_while_the_pod_is_tracked(tmp_path: Path) -> None:
    _rdma_tree(tmp_path)
    telemetry = NicTelemetry(str(tmp_path), reader_factory=FakeReader)
    registry = CollectorRegistry()
    registry.register(telemetry)
    host = HostSide(name="ens1", ifindex=3, mac="02:00:00:00:00:01", mtu=1500, up=True)
    plans = [
        ("c1", AttachPlan("u1", "dev-a", host, PodSide(name="net1"), RdmaPlan("mlx5_0"))),
        ("c1", AttachPlan("u1", "dev-b", None, None, RdmaPlan("mlx5_1", move_link=True))),
    ]
    nics = nics_of(plans)
    assert nics == (TrackedNic("c1", "dev-a", "net1", "mlx5_0"),)  # a moved RDMA link: no host view
    telemetry.track("u1", "ns", "pod-1", "/proc/self/ns/net", nics)
    telemetry.track("u1", "ns", "pod-1", "/proc/self/ns/net", nics)  # idempotent
    text = generate_latest(registry).decode()
    assert len(FakeReader.opened) == 1
    line = (
        'knd_pod_nic_bytes_total{claim="c1",device="dev-a",direction="rx",interface="net1",'
        'namespace="ns",pod="pod-1"} 1000.0'
    )
    assert line in text
    assert (
        'knd_pod_rdma_bytes_total{claim="c1",device="dev-a",direction="rx",namespace="ns",'
        'pod="pod-1",port="1",rdma_device="mlx5_0"} 1000.0' in text
    )
    generate_latest(registry)
    assert len(FakeReader.opened) == 1  # the reader (held socket) is reused across scrapes
    telemetry.forget("u1")
    assert FakeReader.closed == 1
    text = generate_latest(registry).decode()
    assert "pod-1" not in text


def test_top_rates_between_two_samples() -> None:
    def sample(rx: int, tx: int, drops: int) -> str:
        lab = 'namespace="ns",pod="p",claim="c",device="d",interface="net1"'
        return "\n".join(
            [
                "# TYPE knd_pod_nic_bytes_total counter",
                f'knd_pod_nic_bytes_total{{{lab},direction="rx"}} {rx}',
                f'knd_pod_nic_bytes_total{{{lab},direction="tx"}} {tx}',
                "# TYPE knd_pod_nic_drops counter",
                f'knd_pod_nic_drops_total{{{lab},direction="rx"}} {drops}',
                "",
            ]
        )

    before, after = parse_sample(sample(1000, 500, 1)), parse_sample(sample(5000, 300, 4))
    (r,) = rates(before, after, 2.0)
    assert r.key == ("ns", "p", "c", "d", "net1")
    assert r.rx_bps == 2000.0
    assert r.tx_bps == 150.0  # the counter went backwards (NIC re-created): counted from zero
    assert r.drops == 3
    assert rates(before, {}, 1.0) == []
    with pytest.raises(ValueError, match="positive"):
        rates(before, after, 0)
