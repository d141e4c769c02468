"""Interface counters over raw netlink: one RTM_GETLINK, its IFLA_STATS64 decoded (no pyroute2).

`LinkStatsReader(netns_fd)` holds a NETLINK_ROUTE socket created once inside the netns behind
`netns_fd` (one `NetnsWorker` call when the reader is built; a socket keeps the netns it was
made in, so every later read runs on the caller's thread: no thread and no subprocess per
read). `read(ifname)` sends one RTM_GETLINK by name (knd.netns.rawlink's request) and decodes
the kernel's `struct rtnl_link_stats64` answer, with the link's operstate and carrier (device
health of an attached NIC reads them); None when there is no such link in that netns.
Cost: one request/answer, ~50 µs. Bounded: one receive of at most 64 KiB per answer, attribute
lengths checked against the message.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from dataclasses import dataclass

from knd.netns.nsfd import NetnsWorker
from knd.netns.rawlink import IFLA_IFNAME, NLMSG_ERROR, RTM_NEWLINK, encode_getlink

IFLA_OPERSTATE = 16  # u8, IF_OPER_* (linux/if.h)
IFLA_STATS64 = 23
IFLA_CARRIER = 33  # u8
#: IF_OPER_* as sysfs writes them in `operstate`.
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
READ_TIMEOUT = 1.0  # seconds: a scrape never hangs on a lost answer
_RECV_MAX = 65536
#: The first eight u64 of `struct rtnl_link_stats64` (linux/if_link.h), in order.
_STATS64_HEAD = struct.Struct("=8Q")

_seq = itertools.count(1)


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters of one interface since it was created (they survive netns moves)."""

    ifname: str
    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int
    operstate: str | None = None  # sysfs's word for IFLA_OPERSTATE; None when not sent
    carrier: bool | None = None  # IFLA_CARRIER; None when not sent


def decode_stats(data: bytes, seq: int) -> tuple[bool, LinkStats | None]:
    """(answered, stats) for the RTM_GETLINK `seq` in `data`: (False, None) if its answer is
    not there, (True, None) for "no such device" or an answer without IFLA_STATS64. OSError for
    any other netlink error."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if mseq == seq and kind == NLMSG_ERROR and length >= 20:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            if -code in (errno.ENODEV, 0):
                return True, None
            raise OSError(-code, os.strerror(-code))
        if mseq == seq and kind == RTM_NEWLINK:
            name, counters = "", None
            oper: str | None = None
            carrier: bool | None = None
            pos, end = offset + 32, offset + length  # nlmsghdr + ifinfomsg
            while pos + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4 or pos + alen > end:
                    break
                atype &= 0x3FFF
                if atype == IFLA_IFNAME:
                    raw = data[pos + 4 : pos + alen].split(b"\0", 1)[0]
                    name = raw.decode("ascii", "replace")
                elif atype == IFLA_STATS64 and alen - 4 >= _STATS64_HEAD.size:
                    counters = _STATS64_HEAD.unpack_from(data, pos + 4)
                elif atype == IFLA_OPERSTATE and alen >= 5:
                    code = data[pos + 4]
                    oper = OPERSTATES[code] if code < len(OPERSTATES) else "unknown"
                elif atype == IFLA_CARRIER and alen >= 5:
                    carrier = data[pos + 4] != 0
                pos += (alen + 3) & ~3
            if counters is None:
                return True, None
            rx_p, tx_p, rx_b, tx_b, rx_e, tx_e, rx_d, tx_d = counters
            return True, LinkStats(
                name, rx_p, tx_p, rx_b, tx_b, rx_e, tx_e, rx_d, tx_d, oper, carrier
            )
        offset += (length + 3) & ~3
    return False, None


def _make_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    sock.bind((0, 0))
    return sock


class LinkStatsReader:
    """Reads interface counters inside one netns (see the module docstring). Not thread-safe:
    one reader per caller thread, or a lock around `read`."""

    def __init__(self, netns_fd: int) -> None:
        """Raises NetnsOpenError if the netns cannot be entered."""
        with NetnsWorker(netns_fd, name="knd-stats") as worker:
            self.sock = worker.call(_make_socket)
        self.sock.settimeout(READ_TIMEOUT)

    def read(self, ifname: str) -> LinkStats | None:
        """The counters of `ifname` in the reader's netns; None if there is no such link.
        OSError on a netlink error or timeout."""
        seq = next(_seq) & 0x7FFFFFFF
        self.sock.send(encode_getlink(0, seq=seq, ifname=ifname))
        while True:
            answered, stats = decode_stats(self.sock.recv(_RECV_MAX), seq)
            if answered:
                return stats

    def close(self) -> None:
        self.sock.close()
