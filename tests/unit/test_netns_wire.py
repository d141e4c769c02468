"""Golden bytes for the hand-encoded netlink messages (RDMA nldev, RTM_NEWLINK), derived by
hand from the kernel uapi constants; and the RDMA request/response path over a fake socket."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from knd.netns import rdma
from knd.netns.errors import NetnsError, NetnsOpenError, RdmaUnavailableError
from knd.netns.nsfd import check_netns_fd, open_netns
from knd.netns.plan import Route
from knd.netns.rawlink import (
    decode_ack,
    decode_link,
    encode_getlink,
    encode_newaddr,
    encode_newroute,
    encode_setlink,
)

pytestmark = pytest.mark.unit


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_rdma_sys_get_golden() -> None:
    # len=16 | type=(5<<10)|6=0x1406 | flags=REQUEST|ACK | seq=1 | pid=0
    assert rdma.encode_sys_get(1) == h("10000000 0614 0500 01000000 00000000")


def test_rdma_get_dump_golden() -> None:
    # type=(5<<10)|1=0x1401, flags=REQUEST|DUMP(0x300)
    assert rdma.encode_get_dump(2) == h("10000000 0114 0103 02000000 00000000")


def test_rdma_set_netns_golden() -> None:
    # type=(5<<10)|2=0x1402; DEV_INDEX(1)=3; NET_NS_FD(68=0x44)=9
    assert rdma.encode_set_netns(7, 3, 9) == h(
        "20000000 0214 0500 07000000 00000000 0800 0100 03000000 0800 4400 09000000"
    )


def test_rdma_decode_netns_mode() -> None:
    assert rdma.decode_netns_mode(h("0500 4200 00 000000")) == "exclusive"
    assert rdma.decode_netns_mode(h("0500 4200 01 000000")) == "shared"
    with pytest.raises(NetnsError):
        rdma.decode_netns_mode(h("0800 0100 03000000"))
    with pytest.raises(NetnsError):
        rdma.decode_attrs(h("ff00 4200 01"))


def test_rdma_decode_device() -> None:
    payload = h("0800 0100 05000000") + h("0b00 0200") + b"mlx5_0\0" + b"\0"
    assert rdma.decode_device(payload) == (5, "mlx5_0")


class FakeRdmaSocket:
    """Answers like the kernel: SYS_GET → mode; GET dump → two devices + DONE; SET → ack."""

    def __init__(self, mode: int = 0, set_errno: int = 0) -> None:
        self.mode = mode
        self.set_errno = set_errno
        self.sent: list[bytes] = []
        self.replies: list[bytes] = []

    def settimeout(self, _t: float) -> None:
        pass

    def close(self) -> None:
        pass

    def _msg(self, kind: int, flags: int, seq: int, payload: bytes) -> bytes:
        return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        _l, kind, _f, seq, _p = struct.unpack_from("=IHHII", data)
        if kind == rdma.nl_type(rdma.RDMA_NLDEV_CMD_SYS_GET):
            self.replies.append(
                self._msg(kind, 0, seq, h("0500 4200") + bytes([self.mode, 0, 0, 0]))
            )
            self.replies.append(self._msg(2, 0, seq, struct.pack("=i", 0) + data[:16]))
        elif kind == rdma.nl_type(rdma.RDMA_NLDEV_CMD_GET):
            devs = b""
            for idx, name in ((1, b"mlx5_0"), (2, b"mlx5_1")):
                p = struct.pack("=HHI", 8, 1, idx) + struct.pack("=HH", 4 + len(name) + 1, 2)
                p += name + b"\0" + b"\0" * (-(len(name) + 1) % 4)
                devs += self._msg(kind, rdma.NLM_F_MULTI, seq, p)
            self.replies.append(devs + self._msg(rdma.NLMSG_DONE, rdma.NLM_F_MULTI, seq, b"\0" * 4))
        else:
            self.replies.append(
                self._msg(2, 0, seq, struct.pack("=i", -self.set_errno) + data[:16])
            )
        return len(data)

    def recv(self, _n: int) -> bytes:
        return self.replies.pop(0)


def test_rdma_exchange_over_fake_socket() -> None:
    fake = FakeRdmaSocket(mode=0)
    factory = lambda: fake  # noqa: E731
    assert rdma.netns_mode(factory) == "exclusive"  # type: ignore[arg-type]
    assert rdma.device_index("mlx5_1", factory) == 2  # type: ignore[arg-type]
    rdma.move_device("mlx5_1", 42, factory)  # type: ignore[arg-type]
    _l, kind, _f, _s, _p = struct.unpack_from("=IHHII", fake.sent[-1])
    assert kind == rdma.nl_type(rdma.RDMA_NLDEV_CMD_SET)
    attrs = rdma.decode_attrs(fake.sent[-1][16:])
    assert attrs[rdma.RDMA_NLDEV_ATTR_DEV_INDEX] == struct.pack("=I", 2)
    assert attrs[rdma.RDMA_NLDEV_NET_NS_FD] == struct.pack("=I", 42)
    with pytest.raises(NetnsError):
        rdma.device_index("nope", factory)  # type: ignore[arg-type]
    failing = FakeRdmaSocket(set_errno=17)
    with pytest.raises(OSError) as info:
        rdma.move_device("mlx5_0", 3, lambda: failing)  # type: ignore[arg-type,return-value]
    assert info.value.errno == 17


def test_rdma_on_this_kernel_is_reported_not_a_crash() -> None:
    """Real kernel: without CONFIG_INFINIBAND the socket is refused → shared mode + reason."""
    mode, reason = rdma.netns_mode_or_shared()
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, rdma.NETLINK_RDMA).close()
        has_rdma = True
    except OSError:
        has_rdma = False
    if has_rdma:
        assert mode in ("shared", "exclusive")
    else:
        assert (mode, reason is not None) == ("shared", True)
        with pytest.raises(RdmaUnavailableError):
            rdma.netns_mode()


def test_setlink_golden() -> None:
    msg = encode_setlink(5, seq=1, ifname="eth99", mtu=4321, netns_fd=7)
    assert msg == h(
        "3c000000 1000 0500 01000000 00000000"  # nlmsghdr: RTM_NEWLINK, REQUEST|ACK
        "00 00 0000 05000000 00000000 00000000"  # ifinfomsg: index 5
        "0800 1c00 07000000"  # IFLA_NET_NS_FD (28) = 7
        "0a00 0300 6574683939 00 0000"  # IFLA_IFNAME (3) = "eth99\0" + pad
        "0800 0400 e1100000"  # IFLA_MTU (4) = 4321
    )
    pinned = encode_setlink(5, seq=1, netns_fd=7, new_ifindex=5)
    assert pinned[32:] == h(
        "0800 1c00 07000000"  # IFLA_NET_NS_FD (28) = 7
        "0800 3100 05000000"  # IFLA_NEW_IFINDEX (49) = 5
    )
    up = encode_setlink(2, seq=9, up=True, u32={63: 65536})
    assert up[16:32] == h("00 00 0000 02000000 01000000 01000000")
    assert up[32:] == h("0800 3f00 00000100")  # IFLA_GSO_IPV4_MAX_SIZE (63)


def test_getlink_golden_and_sizes_decode() -> None:
    assert encode_getlink(7, seq=3) == h(
        "20000000 1200 0100 03000000 00000000"  # nlmsghdr: RTM_GETLINK, REQUEST
        "00 00 0000 07000000 00000000 00000000"  # ifinfomsg: index 7
    )
    attrs = h("0900 0300 6574683000 000000")  # IFLA_IFNAME "eth0\0" + pad
    attrs += h("0800 2900 00000100")  # IFLA_GSO_MAX_SIZE (41) = 65536
    attrs += h("0800 3a00 00800000")  # IFLA_GRO_MAX_SIZE (58) = 32768
    attrs += h("0800 3f00 00000100")  # IFLA_GSO_IPV4_MAX_SIZE (63) = 65536
    attrs += h("0800 0400 dc050000")  # IFLA_MTU: not a size
    body = h("00 00 0000 07000000 00000000 00000000") + attrs
    answer = struct.pack("=IHHII", 16 + len(body), 16, 0, 3, 0) + body
    answered, facts = decode_link(answer, 3)
    assert answered and facts is not None
    assert (facts.index, facts.name, facts.mac) == (7, "eth0", None)
    assert dict(facts.sizes) == {41: 65536, 58: 32768, 63: 65536}
    assert decode_link(answer, 4) == (False, None)
    err = struct.pack("=IHHII", 36, 2, 0, 3, 0) + struct.pack("=i", -19) + b"\0" * 16
    assert decode_link(err, 3) == (True, None)  # no such device


def test_newaddr_golden() -> None:
    assert encode_newaddr(5, "10.1.2.3/24", seq=2) == h(
        "28000000 1400 0506 02000000 00000000"  # RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE
        "02 18 00 00 05000000"  # ifaddrmsg: AF_INET, /24, flags 0, scope global, index 5
        "0800 0200 0a010203"  # IFA_LOCAL 10.1.2.3
        "0800 0100 0a010203"  # IFA_ADDRESS 10.1.2.3
    )
    v6 = encode_newaddr(5, "2001:db8::1/64", seq=3)
    assert v6[16:24] == h("0a 40 00 00 05000000") and len(v6) == 16 + 8 + 20 + 20


def test_newroute_golden() -> None:
    msg = encode_newroute(5, Route("10.9.0.0/16", "10.1.2.1", table=1234), seq=4)
    assert msg == h(
        "3c000000 1800 0506 04000000 00000000"  # RTM_NEWROUTE, REQUEST|ACK|EXCL|CREATE
        "02 10 00 00 00 04 00 01 00000000"  # rtmsg: AF_INET /16, table UNSPEC (>255), static,
        # scope universe, unicast
        "0800 0100 0a090000"  # RTA_DST
        "0800 0400 05000000"  # RTA_OIF 5
        "0800 0500 0a010201"  # RTA_GATEWAY
        "0800 0f00 d2040000"  # RTA_TABLE 1234
    )
    default = encode_newroute(5, Route("0.0.0.0/0", "10.1.2.1", table=100), seq=5)
    assert default[16 + 4] == 100  # a table < 256 also goes in rtmsg.rtm_table
    assert h("0800 0100") not in default  # no RTA_DST for a default route


def test_getlink_by_name_and_index_decode() -> None:
    assert encode_getlink(0, seq=6, ifname="eth0")[32:] == h("0900 0300 6574683000 000000")
    mac = h("0a00 0100 020000000007 0000")  # IFLA_ADDRESS 02:00:00:00:00:07 + pad
    body = struct.pack("=BxHiII", 0, 1, 42, 0, 0) + mac
    answer = struct.pack("=IHHII", 16 + len(body), 16, 0, 6, 0) + body
    answered, facts = decode_link(answer, 6)
    assert answered and facts is not None
    assert (facts.index, facts.mac, facts.sizes) == (42, "02:00:00:00:00:07", ())
    perm = struct.pack("=IHHII", 36, 2, 0, 6, 0) + struct.pack("=i", -1) + b"\0" * 16
    with pytest.raises(OSError, match="not permitted"):
        decode_link(perm, 6)


def test_decode_ack() -> None:
    ok = struct.pack("=IHHII", 36, 2, 0, 4, 0) + struct.pack("=i", 0) + b"\0" * 16
    bad = struct.pack("=IHHII", 36, 2, 0, 5, 0) + struct.pack("=i", -17) + b"\0" * 16
    assert decode_ack(ok, 4) == 0
    assert decode_ack(bad, 5) == 17
    assert decode_ack(ok, 99) == -1


def test_a_netns_fd_is_checked_before_the_worker_starts(tmp_path: Path) -> None:
    """Attach starts the pod netns worker without waiting for it, so a path that is not a
    network namespace must fail before any host-side step: one ioctl on the fd."""

    plain = tmp_path / "not-a-netns"
    plain.write_text("x")
    fd = open_netns(str(plain))
    try:
        with pytest.raises(NetnsOpenError, match="not a namespace"):
            check_netns_fd(fd, str(plain))
    finally:
        os.close(fd)
    for path, ok in (("/proc/self/ns/net", True), ("/proc/self/ns/mnt", False)):
        fd = open_netns(path)
        try:
            if ok:
                check_netns_fd(fd, path)
            else:
                with pytest.raises(NetnsOpenError, match="not a network namespace"):
                    check_netns_fd(fd, path)
        finally:
            os.close(fd)
