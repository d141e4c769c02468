"""Hand-encoded rtnetlink requests for attach's hot path: the RTM_NEWLINK "set link" (move +
rename + MTU + MAC + GSO/GRO sizes), RTM_GETLINK (index by name; the sizes), RTM_NEWADDR and
RTM_NEWROUTE.

pyroute2 0.9 lacks IFLA_GSO_IPV4_MAX_SIZE / IFLA_GRO_IPV4_MAX_SIZE (it decodes them as UNKNOWN,
without the value), and the move must carry everything in one request. The address, route and
lookup requests are here for speed: through pyroute2 each costs ~1.5 ms of Python (asyncio,
full message decoding) against ~0.1 ms here, and an NRI hook makes several per NIC. They send
what pyroute2's `addr("add")` / `route("add")` send (IFA_LOCAL + IFA_ADDRESS; RTPROT_STATIC,
RTN_UNICAST, RTA_TABLE), with NLM_F_CREATE|NLM_F_EXCL, and EEXIST counts as success.
Attribute numbers are the positions in the `enum`s of linux/if_link.h, if_addr.h, rtnetlink.h.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
from dataclasses import dataclass

from knd.netns.plan import Route

NETLINK_ROUTE = 0
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_GETADDR = 22
RTM_GETROUTE = 26
RT_TABLE_MAIN = 254
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RTA_TABLE = 15
RTPROT_STATIC = 4
RTN_UNICAST = 1

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_NEW_IFINDEX = 49
IFLA_GSO_MAX_SIZE = 41
IFLA_GRO_MAX_SIZE = 58
IFLA_GSO_IPV4_MAX_SIZE = 63
IFLA_GRO_IPV4_MAX_SIZE = 64
IFLA_PERM_ADDRESS = 54
IFLA_PARENT_DEV_NAME = 56
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
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
    new_ifindex: int | None = None,
    alias: str | None = None,
    up: bool | None = None,
    u32: dict[int, int] | None = None,
) -> bytes:
    """One RTM_NEWLINK request (NLM_F_REQUEST|NLM_F_ACK) for an existing link.

    With `netns_fd`, `new_ifindex` is the ifindex the link must have in the target netns: the
    kernel refuses the move with EBUSY, before changing anything, if that one is taken."""
    flags = change = 0
    if up is not None:
        change = IFF_UP
        flags = IFF_UP if up else 0
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)
    if netns_fd is not None:
        body += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
        if new_ifindex is not None:
            body += _attr(IFLA_NEW_IFINDEX, struct.pack("=i", new_ifindex))
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


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def encode_getlink(index: int, *, seq: int, ifname: str | None = None) -> bytes:
    """One RTM_GETLINK request for the link `index`, or (index 0) the link named `ifname`."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0)
    if ifname is not None:
        body += _attr(IFLA_IFNAME, ifname.encode() + b"\0")
    return _message(RTM_GETLINK, NLM_F_REQUEST, seq, body)


def _ip(text: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(text)
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.packed


def encode_newaddr(index: int, cidr: str, *, seq: int) -> bytes:
    """RTM_NEWADDR (create, exclusive) of `cidr` on `index`, scope global."""
    iface = ipaddress.ip_interface(cidr)
    family, packed = _ip(str(iface.ip))
    body = struct.pack("=BBBBI", family, iface.network.prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
    return _message(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, body)


def encode_newroute(index: int, route: Route, *, seq: int) -> bytes:
    """RTM_NEWROUTE (create, exclusive) of a unicast route through `index`."""
    net = ipaddress.ip_network(route.destination, strict=False)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    table8 = route.table if route.table < 256 else 0  # RT_TABLE_UNSPEC: RTA_TABLE says
    body = struct.pack(
        "=BBBBBBBBI",
        family,
        net.prefixlen,
        0,  # src_len
        0,  # tos
        table8,
        RTPROT_STATIC,
        route.scope,
        RTN_UNICAST,
        0,  # flags
    )
    if net.prefixlen:
        body += _attr(RTA_DST, net.network_address.packed)
    body += _attr(RTA_OIF, struct.pack("=I", index))
    if route.gateway:
        body += _attr(RTA_GATEWAY, _ip(route.gateway)[1])
    if route.source:
        body += _attr(RTA_PREFSRC, _ip(route.source)[1])
    body += _attr(RTA_TABLE, struct.pack("=I", route.table))
    return _message(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, body)


@dataclass(frozen=True, slots=True)
class LinkFacts:
    """What an RTM_NEWLINK answer says about one link (the parts attach and detach use)."""

    index: int
    name: str
    mac: str | None
    sizes: tuple[tuple[int, int], ...] = ()  # (SIZE_ATTRS number, value)
    #: The permanent (burned-in) MAC; None when the device has none (all zeros: veth, dummy).
    perm_mac: str | None = None
    #: The parent device's name (`0000:8a:00.0` for a PCI NIC; Linux >= 5.16), else None.
    parent_dev: str | None = None
    mtu: int | None = None
    up: bool = False
    alias: str | None = None


def _mac_text(payload: bytes) -> str | None:
    if not payload or not any(payload):
        return None
    return payload.hex(":")


def _facts(data: bytes, offset: int, length: int) -> LinkFacts:
    """Decode the RTM_NEWLINK message at `offset` (`length` bytes)."""
    return link_facts(data[offset + 16 : offset + length])


def link_facts(payload: bytes) -> LinkFacts:
    """Decode one RTM_NEWLINK payload (ifinfomsg + attributes, after the nlmsghdr)."""
    index, flags = struct.unpack_from("=iI", payload, 4)
    name, mac, perm, parent, sizes = "", None, None, None, []
    mtu: int | None = None
    alias: str | None = None
    pos = 16  # ifinfomsg
    end = len(payload)
    while pos + 4 <= end:
        alen, atype = struct.unpack_from("=HH", payload, pos)
        if alen < 4:
            break
        value = payload[pos + 4 : pos + alen]
        atype &= 0x3FFF
        if atype == IFLA_IFNAME:
            name = value.split(b"\0", 1)[0].decode("ascii", "replace")
        elif atype == IFLA_ADDRESS and value:
            mac = value.hex(":")
        elif atype == IFLA_PERM_ADDRESS:
            perm = _mac_text(value)
        elif atype == IFLA_PARENT_DEV_NAME:
            parent = value.split(b"\0", 1)[0].decode("ascii", "replace") or None
        elif atype == IFLA_MTU and len(value) >= 4:
            (mtu,) = struct.unpack_from("=I", value)
        elif atype == IFLA_IFALIAS:
            alias = value.split(b"\0", 1)[0].decode("utf-8", "replace") or None
        elif atype in SIZE_ATTRS and len(value) >= 4:
            sizes.append((atype, struct.unpack_from("=I", value)[0]))
        pos += (alen + 3) & ~3
    return LinkFacts(
        int(index), name, mac, tuple(sorted(sizes)), perm, parent, mtu, bool(flags & IFF_UP), alias
    )


def link_name(payload: bytes) -> str:
    """Only the IFLA_IFNAME of one RTM_NEWLINK payload ("" if absent): the kernel puts it
    first, so this stops after one attribute where `link_facts` walks them all."""
    pos = 16
    end = len(payload)
    while pos + 4 <= end:
        alen, atype = struct.unpack_from("=HH", payload, pos)
        if alen < 4:
            break
        if atype & 0x3FFF == IFLA_IFNAME:
            return payload[pos + 4 : pos + alen].split(b"\0", 1)[0].decode("ascii", "replace")
        pos += (alen + 3) & ~3
    return ""


def decode_link(data: bytes, seq: int) -> tuple[bool, LinkFacts | None]:
    """(answered, facts) for the RTM_GETLINK `seq`: (False, None) if its answer is not in
    `data`, (True, None) for "no such device". Raises OSError for any other error."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            break
        if mseq == seq and kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + 16)
            if -code == errno.ENODEV:
                return True, None
            raise OSError(-code, os.strerror(-code))
        if mseq == seq and kind == RTM_NEWLINK:
            return True, _facts(data, offset, length)
        offset += (length + 3) & ~3
    return False, None


class LinkSocket:
    """A NETLINK_ROUTE socket for set-link requests (in the netns it was created in)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.sock.settimeout(ACK_TIMEOUT)

    def _transact(self, message: bytes, seq: int, *, exists_ok: bool = False) -> None:
        """Send one request and wait for its ack; OSError(errno) on failure."""
        self.sock.send(message)
        while True:
            code = decode_ack(self.sock.recv(65536), seq)
            if code == 0 or (exists_ok and code == errno.EEXIST):
                return
            if code > 0:
                raise OSError(code, os.strerror(code))
            if code == -1:
                continue
            raise OSError(errno.EPROTO, "bad netlink ack")  # pragma: no cover

    def setlink(self, index: int, **kwargs: object) -> None:
        """Send one set-link request and wait for its ack; OSError(errno) on failure."""
        seq = next(_seq) & 0x7FFFFFFF
        self._transact(encode_setlink(index, seq=seq, **kwargs), seq)  # type: ignore[arg-type]

    def add_address(self, index: int, cidr: str) -> None:
        """Add an address (scope global); EEXIST is success."""
        seq = next(_seq) & 0x7FFFFFFF
        self._transact(encode_newaddr(index, cidr, seq=seq), seq, exists_ok=True)

    def add_route(self, index: int, route: Route) -> None:
        """Add a unicast route through `index`; EEXIST is success."""
        seq = next(_seq) & 0x7FFFFFFF
        self._transact(encode_newroute(index, route, seq=seq), seq, exists_ok=True)

    def link(self, index: int = 0, ifname: str | None = None) -> LinkFacts | None:
        """The link `index`, or the one named `ifname`, in this socket's netns; None if none."""
        seq = next(_seq) & 0x7FFFFFFF
        self.sock.send(encode_getlink(index, seq=seq, ifname=ifname))
        while True:
            answered, facts = decode_link(self.sock.recv(65536), seq)
            if answered:
                return facts

    def links(self) -> list[LinkFacts]:
        """Every link of this socket's netns (one RTM_GETLINK dump)."""
        seq = next(_seq) & 0x7FFFFFFF
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
        self.sock.send(_message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        out: list[LinkFacts] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, offset)
                if length < 16 or offset + length > len(data):
                    break
                if mseq == seq:
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + 16)
                        raise OSError(-code, os.strerror(-code))
                    if kind == RTM_NEWLINK:
                        out.append(_facts(data, offset, length))
                offset += (length + 3) & ~3

    def request_all(self, kind: int, flags: int, body: bytes, want: int) -> list[bytes]:
        """Send one request (a dump with NLM_F_DUMP); the payloads (after nlmsghdr) of its
        `want` answers. An NLMSG_ERROR answer is raised as OSError."""
        seq = next(_seq) & 0x7FFFFFFF
        self.sock.send(_message(kind, NLM_F_REQUEST | flags, seq, body))
        out: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, offset)
                if length < 16 or offset + length > len(data):
                    break
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + 16)
                        if code == 0:
                            return out
                        raise OSError(-code, os.strerror(-code))
                    if mtype == want:
                        out.append(data[offset + 16 : offset + length])
                        if not flags & NLM_F_DUMP:
                            return out
                offset += (length + 3) & ~3

    def has_default_route(self, index: int) -> bool:
        """Whether an IPv4 or IPv6 default route of the main table leaves through `index`.

        One route dump of both families (AF_UNSPEC) that the kernel filters itself
        (NETLINK_GET_STRICT_CHK: table main, RTA_OIF = index), so the answer is a handful of
        routes however big the table is. Opens its own socket (strict checking stays off on
        this one)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            sock.bind((0, 0))
            sock.settimeout(ACK_TIMEOUT)
            strict = LinkSocket.__new__(LinkSocket)
            strict.sock = sock
            body = struct.pack(
                "=BBBBBBBBI", socket.AF_UNSPEC, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0
            ) + _attr(RTA_OIF, struct.pack("=I", index))
            for msg in strict.request_all(RTM_GETROUTE, NLM_F_DUMP, body, RTM_NEWROUTE):
                family, dst_len, table, rtype = msg[0], msg[1], msg[4], msg[7]
                if (
                    family in (socket.AF_INET, socket.AF_INET6)
                    and dst_len == 0
                    and table == RT_TABLE_MAIN
                    and rtype == RTN_UNICAST
                ):
                    return True
            return False
        finally:
            sock.close()

    def addresses(self, index: int) -> set[str]:
        """The IP addresses (without prefix length) on link `index` (one address dump)."""
        out: set[str] = set()
        body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
        for msg in self.request_all(RTM_GETADDR, NLM_F_DUMP, body, RTM_NEWADDR):
            family, _plen, _flags, _scope, ifindex = struct.unpack_from("=BBBBI", msg, 0)
            if ifindex != index:
                continue
            found: dict[int, bytes] = {}
            pos = 8
            while pos + 4 <= len(msg):
                alen, atype = struct.unpack_from("=HH", msg, pos)
                if alen < 4:
                    break
                found[atype & 0x3FFF] = msg[pos + 4 : pos + alen]
                pos += (alen + 3) & ~3
            raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
            if raw and family in (socket.AF_INET, socket.AF_INET6):
                out.add(str(ipaddress.ip_address(raw)))
        return out

    def index_of(self, ifname: str) -> int | None:
        """The ifindex of the link named `ifname` in this socket's netns, None if none."""
        facts = self.link(ifname=ifname)
        return facts.index if facts is not None else None

    def sizes(self, index: int) -> dict[int, int]:
        """The GSO/GRO size attributes the kernel reports for `index` (IFLA number → value);
        OSError(ENODEV) if there is no such link."""
        facts = self.link(index)
        if facts is None:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return dict(facts.sizes)

    def close(self) -> None:
        self.sock.close()
