"""A hand-encoded RTM_NEWLINK "set link" request: move + rename + MTU + MAC + GSO/GRO sizes,
and the RTM_GETLINK that reads those sizes back.

pyroute2 0.9 lacks IFLA_GSO_IPV4_MAX_SIZE / IFLA_GRO_IPV4_MAX_SIZE (it decodes them as UNKNOWN,
without the value), and the move must carry everything in one request, so this module encodes
those messages itself. Attribute numbers are the positions in `enum` IFLA_* of
linux/if_link.h.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_GSO_MAX_SIZE = 41
IFLA_GRO_MAX_SIZE = 58
IFLA_GSO_IPV4_MAX_SIZE = 63
IFLA_GRO_IPV4_MAX_SIZE = 64
IFF_UP = 0x1
#: The four BIG TCP size attributes (the kernel omits the IPv4 ones before Linux 6.3).
SIZE_ATTRS = (IFLA_GSO_MAX_SIZE, IFLA_GRO_MAX_SIZE, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE)
ACK_TIMEOUT = 2.0  # seconds: never hang an NRI hook on a lost ack

_seq = itertools.count(1)


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def encode_setlink(
    index: int,
    *,
    seq: int,
    ifname: str | None = None,
    mtu: int | None = None,
    mac: str | None = None,
    netns_fd: int | None = None,
    alias: str | None = None,
    up: bool | None = None,
    u32: dict[int, int] | None = None,
) -> bytes:
    """One RTM_NEWLINK request (NLM_F_REQUEST|NLM_F_ACK) for an existing link."""
    flags = change = 0
    if up is not None:
        change = IFF_UP
        flags = IFF_UP if up else 0
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)
    if netns_fd is not None:
        body += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
    if ifname is not None:
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
    if mtu is not None:
        body += _attr(IFLA_MTU, struct.pack("=I", mtu))
    if mac is not None:
        body += _attr(IFLA_ADDRESS, mac_bytes(mac))
    if alias is not None:
        body += _attr(IFLA_IFALIAS, alias.encode())
    for kind, value in sorted((u32 or {}).items()):
        body += _attr(kind, struct.pack("=I", value))
    header = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return header + body


def decode_ack(data: bytes, seq: int) -> int:
    """The errno of the NLMSG_ERROR answering `seq` (0 = success); -1 if not found."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        if kind == NLMSG_ERROR and mseq == seq:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            return -int(code)
        offset += (length + 3) & ~3
    return -1


def encode_getlink(index: int, *, seq: int) -> bytes:
    """One RTM_GETLINK request for the link `index` (no dump)."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    return struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body


def decode_sizes(data: bytes, seq: int) -> dict[int, int] | None:
    """The SIZE_ATTRS values in the RTM_NEWLINK answering `seq`; None if it is not in `data`.
    Raises OSError for an NLMSG_ERROR answer."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if mseq == seq and kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            raise OSError(-code, os.strerror(-code))
        if mseq == seq and kind == RTM_NEWLINK:
            out: dict[int, int] = {}
            pos = offset + 16 + 16  # nlmsghdr + ifinfomsg
            while pos + 4 <= offset + length:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                atype &= 0x3FFF
                if atype in SIZE_ATTRS and alen >= 8:
                    (out[atype],) = struct.unpack_from("=I", data, pos + 4)
                pos += (alen + 3) & ~3
            return out
        offset += (length + 3) & ~3
    return None


class LinkSocket:
    """A NETLINK_ROUTE socket for set-link requests (in the netns it was created in)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.sock.settimeout(ACK_TIMEOUT)

    def setlink(self, index: int, **kwargs: object) -> None:
        """Send one set-link request and wait for its ack; OSError(errno) on failure."""
        seq = next(_seq) & 0x7FFFFFFF
        self.sock.send(encode_setlink(index, seq=seq, **kwargs))  # type: ignore[arg-type]
        while True:
            code = decode_ack(self.sock.recv(65536), seq)
            if code == 0:
                return
            if code > 0:
                raise OSError(code, os.strerror(code))
            if code == -1:
                continue
            raise OSError(errno.EPROTO, "bad netlink ack")  # pragma: no cover

    def sizes(self, index: int) -> dict[int, int]:
        """The GSO/GRO size attributes the kernel reports for `index` (IFLA number → value)."""
        seq = next(_seq) & 0x7FFFFFFF
        self.sock.send(encode_getlink(index, seq=seq))
        while True:
            found = decode_sizes(self.sock.recv(65536), seq)
            if found is not None:
                return found

    def close(self) -> None:
        self.sock.close()
