"""DHCPv4 message encoding/decoding (pure)."""

from __future__ import annotations

import socket
import struct

import pytest

from knd.netns import dhcp
from knd.netns.errors import DhcpError

pytestmark = pytest.mark.unit


def test_discover_layout() -> None:
    msg = dhcp.encode_request(dhcp.DISCOVER, 0x01020304, "02:00:00:00:00:01")
    assert msg[:4] == b"\x01\x01\x06\x00"  # BOOTREQUEST, Ethernet, hlen 6, hops 0
    assert msg[4:8] == b"\x01\x02\x03\x04"
    assert msg[10:12] == b"\x80\x00"  # broadcast flag
    assert msg[28:34] == bytes.fromhex("020000000001")
    assert msg[236:240] == dhcp.MAGIC
    opts = dhcp.parse_options(msg[240:])
    assert opts[dhcp.OPT_MSG_TYPE] == b"\x01"
    assert set(opts[dhcp.OPT_PARAMS]) >= {1, 3, 121}


def test_classless_routes_rfc3442_examples() -> None:
    # 0/0 via 10.0.0.1; 10.0.0.0/8 via 10.0.0.2; 192.168.1.0/24 via 10.0.0.3; 10.17.0.0/16
    data = bytes.fromhex("00 0a000001 08 0a 0a000002 18 c0a801 0a000003 10 0a11 0a000004")
    assert dhcp.decode_classless_routes(data) == (
        ("0.0.0.0/0", "10.0.0.1"),
        ("10.0.0.0/8", "10.0.0.2"),
        ("192.168.1.0/24", "10.0.0.3"),
        ("10.17.0.0/16", "10.0.0.4"),
    )
    with pytest.raises(DhcpError):
        dhcp.decode_classless_routes(bytes.fromhex("21 0a"))
    with pytest.raises(DhcpError):
        dhcp.decode_classless_routes(bytes.fromhex("18 c0a8"))


def _reply(xid: int, mtype: int, opts: bytes) -> bytes:
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        2,
        1,
        6,
        0,
        xid,
        0,
        0,
        b"\0" * 4,
        socket.inet_aton("10.1.2.3"),
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 16,
        b"",
        b"",
    )
    return head + dhcp.MAGIC + bytes([53, 1, mtype]) + opts + b"\xff"


def test_decode_ack_to_lease() -> None:
    opts = bytes([1, 4, 255, 255, 254, 0, 3, 4, 10, 1, 0, 1, 54, 4, 10, 1, 0, 1])
    opts += bytes([51, 4, 0, 0, 14, 16])
    reply = dhcp.decode_reply(_reply(7, dhcp.ACK, opts), 7)
    assert reply is not None
    mtype, yiaddr, parsed = reply
    assert (mtype, yiaddr) == (dhcp.ACK, "10.1.2.3")
    lease = dhcp.lease_from(yiaddr, parsed)
    assert lease.address == "10.1.2.3/23"
    assert lease.router == "10.1.0.1"
    assert lease.server == "10.1.0.1"
    assert lease.lease_time == 3600
    assert lease.routes == ()
    assert dhcp.decode_reply(_reply(7, dhcp.ACK, b""), 8) is None  # another xid
    with pytest.raises(DhcpError):
        dhcp.parse_options(bytes([1, 4, 255]))
