"""One netlink snapshot of the host for a whole prepare: links, addresses, routes, rules and
permanent neighbours, each dumped once on a raw socket (the layer attach uses, knd.netns.rawlink)
and filtered per device in Python.

Why: capturing each device with its own pyroute2 dumps cost ~17 ms per device (the route table
dumped again per device, pyroute2's event loop per call); a snapshot costs about one dump of each
table per prepare, and a device's host side is then a filter over it.

`HostSnapshot.host_side(ifname)` records exactly what knd.netns.capture records: name, ifindex,
alias, MTU, MAC, permanent MAC, PCI address (parent device), admin state, global-scope
addresses, its unicast routes in every table but local (not IPv6 `proto kernel`, not to
fe80::/10), the rules pointing at those tables (not main/local/default), its permanent
neighbours and its GSO/GRO sizes.

Decoding is the cost that grows with the node, so it is done only where a reader looks: a link
is decoded when asked for by name (the dump is only scanned for names), routes other than
unicast routes outside the local table (local, broadcast, multicast: most of a host's table,
and never read here) are dropped on their header before any attribute is decoded, and
addresses are turned into text with `inet_ntop`. Budget: ~0.5-1 ms for the dumps on a small
node, then microseconds per device.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from knd.netns.errors import NetnsError
from knd.netns.plan import LOCAL_TABLE, MAIN_TABLE, SIZE_FIELDS, HostSide, Neighbor, Route, Rule
from knd.netns.rawlink import (
    NLM_F_DUMP,
    SIZE_ATTRS,
    LinkFacts,
    LinkSocket,
    link_facts,
    link_name,
)

RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
RTM_NEWRULE, RTM_GETRULE = 32, 34
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 7, 9, 15
FRA_DST, FRA_SRC, FRA_PRIORITY, FRA_TABLE = 1, 2, 6, 15
NDA_DST, NDA_LLADDR = 1, 2
RTN_UNICAST = 1
RTPROT_KERNEL = 2
NUD_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
RESERVED_TABLES = frozenset({0, 253, MAIN_TABLE, LOCAL_TABLE})
_FAMILY: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 6}
_PCI = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def _attrs(msg: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    pos = offset
    while pos + 4 <= len(msg):
        alen, atype = struct.unpack_from("=HH", msg, pos)
        if alen < 4:
            return
        yield atype & 0x3FFF, msg[pos + 4 : pos + alen]
        pos += (alen + 3) & ~3


def _ip(payload: bytes) -> str | None:
    """The text of a packed IPv4/IPv6 address, exactly as `str(ipaddress.ip_address())`
    writes it (inet_ntop for speed; ipaddress for the IPv4-embedded IPv6 forms, where glibc
    writes dotted quads)."""
    if len(payload) == 4:
        return socket.inet_ntop(socket.AF_INET, payload)
    if len(payload) == 16:
        text = socket.inet_ntop(socket.AF_INET6, payload)
        return str(ipaddress.IPv6Address(payload)) if "." in text else text
    return None


def _u32(payload: bytes) -> int:
    return int(struct.unpack_from("=I", payload)[0]) if len(payload) >= 4 else 0


@dataclass(frozen=True, slots=True)
class AddrMsg:
    index: int
    prefixlen: int
    scope: int
    address: str


@dataclass(frozen=True, slots=True)
class RouteMsg:
    family: int
    dst: str | None
    dst_len: int
    table: int
    proto: int
    scope: int
    rtype: int
    oif: int | None
    gateway: str | None
    prefsrc: str | None
    #: the interfaces of a multipath route's next hops (RTA_MULTIPATH)
    multipath_oifs: tuple[int, ...] = ()


def _nexthop_oifs(payload: bytes) -> tuple[int, ...]:
    out = []
    pos = 0
    while pos + 8 <= len(payload):
        length, _flags, _hops, ifindex = struct.unpack_from("=HBBi", payload, pos)
        if length < 8:
            break
        out.append(ifindex)
        pos += (length + 3) & ~3
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RuleMsg:
    family: int
    table: int
    priority: int
    src: str | None
    src_len: int
    dst: str | None
    dst_len: int


@dataclass(frozen=True, slots=True)
class NeighMsg:
    ifindex: int
    state: int
    dst: str | None
    lladdr: str | None


def _addresses(lsock: LinkSocket) -> list[AddrMsg]:
    out = []
    body = struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0)
    for msg in lsock.request_all(RTM_GETADDR, NLM_F_DUMP, body, RTM_NEWADDR):
        _fam, plen, _flags, scope, index = struct.unpack_from("=BBBBI", msg, 0)
        found = dict(_attrs(msg, 8))
        ip = _ip(found.get(IFA_LOCAL) or found.get(IFA_ADDRESS) or b"")
        if ip is not None:
            out.append(AddrMsg(index, plen, scope, ip))
    return out


def _routes(lsock: LinkSocket) -> list[RouteMsg]:
    out = []
    body = struct.pack("=BBBBBBBBI", socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
    for msg in lsock.request_all(RTM_GETROUTE, NLM_F_DUMP, body, RTM_NEWROUTE):
        fam, dst_len, _src_len, _tos, table8, proto, scope, rtype, _flags = struct.unpack_from(
            "=BBBBBBBBI", msg, 0
        )
        if rtype != RTN_UNICAST or table8 == LOCAL_TABLE:
            continue  # never read (see the module docstring); RTA_TABLE > 255 is not local
        found = dict(_attrs(msg, 12))
        table = _u32(found[RTA_TABLE]) if RTA_TABLE in found else table8
        if table == LOCAL_TABLE:
            continue
        out.append(
            RouteMsg(
                family=fam,
                dst=_ip(found.get(RTA_DST, b"")),
                dst_len=dst_len,
                table=table,
                proto=proto,
                scope=scope,
                rtype=rtype,
                oif=_u32(found[RTA_OIF]) if RTA_OIF in found else None,
                gateway=_ip(found.get(RTA_GATEWAY, b"")),
                prefsrc=_ip(found.get(RTA_PREFSRC, b"")),
                multipath_oifs=_nexthop_oifs(found.get(RTA_MULTIPATH, b"")),
            )
        )
    return out


def _rules(lsock: LinkSocket) -> list[RuleMsg]:
    out = []
    body = struct.pack("=BBBBBBBBI", socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
    for msg in lsock.request_all(RTM_GETRULE, NLM_F_DUMP, body, RTM_NEWRULE):
        fam, dst_len, src_len, _tos, table8, _r1, _r2, _action, _flags = struct.unpack_from(
            "=BBBBBBBBI", msg, 0
        )
        found = dict(_attrs(msg, 12))
        out.append(
            RuleMsg(
                family=fam,
                table=_u32(found[FRA_TABLE]) if FRA_TABLE in found else table8,
                priority=_u32(found[FRA_PRIORITY]) if FRA_PRIORITY in found else 0,
                src=_ip(found.get(FRA_SRC, b"")),
                src_len=src_len,
                dst=_ip(found.get(FRA_DST, b"")),
                dst_len=dst_len,
            )
        )
    return out


def _neighbors(lsock: LinkSocket) -> list[NeighMsg]:
    out = []
    body = struct.pack("=BxxxiHBB", socket.AF_UNSPEC, 0, 0, 0, 0)
    for msg in lsock.request_all(RTM_GETNEIGH, NLM_F_DUMP, body, RTM_NEWNEIGH):
        _fam, ifindex, state, _flags, _type = struct.unpack_from("=BxxxiHBB", msg, 0)
        if not state & NUD_PERMANENT:
            continue
        found = dict(_attrs(msg, 12))
        mac = found.get(NDA_LLADDR, b"")
        out.append(
            NeighMsg(
                ifindex,
                state,
                _ip(found.get(NDA_DST, b"")),
                ":".join(f"{b:02x}" for b in mac) if mac else None,
            )
        )
    return out


def _raw_links(lsock: LinkSocket) -> dict[str, bytes]:
    """Every link's RTM_NEWLINK payload by name (one dump; only the names decoded)."""
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)
    msgs = lsock.request_all(RTM_GETLINK, NLM_F_DUMP, body, RTM_NEWLINK)
    return {link_name(msg): msg for msg in msgs}


class HostSnapshot:
    """The host's links, addresses, routes, rules and permanent neighbours at one moment.

    `links` may be given decoded (a list) or as RTM_NEWLINK payloads by name, decoded on
    first use (what `take` does)."""

    def __init__(
        self,
        links: list[LinkFacts] | dict[str, bytes],
        addresses: list[AddrMsg],
        routes: list[RouteMsg],
        rules: list[RuleMsg],
        neighbors: list[NeighMsg],
    ) -> None:
        self.addresses = addresses
        self.routes = routes
        self.rules = rules
        self.neighbors = neighbors
        if isinstance(links, dict):
            self._raw = dict(links)
            self._by_name: dict[str, LinkFacts] = {}
        else:
            self._raw = {}
            self._by_name = {link.name: link for link in links}

    @classmethod
    def take(cls, lsock: LinkSocket | None = None) -> HostSnapshot:
        """Dump everything once (in the netns `lsock` was opened in). Raises OSError."""
        own = lsock is None
        sock = LinkSocket() if lsock is None else lsock
        try:
            return cls(
                _raw_links(sock), _addresses(sock), _routes(sock), _rules(sock), _neighbors(sock)
            )
        finally:
            if own:
                sock.close()

    @property
    def links(self) -> list[LinkFacts]:
        """Every link, decoded."""
        for name in list(self._raw):
            self.link(name)
        return list(self._by_name.values())

    def link(self, ifname: str) -> LinkFacts | None:
        found = self._by_name.get(ifname)
        if found is None:
            raw = self._raw.pop(ifname, None)
            if raw is not None:
                found = self._by_name[ifname] = link_facts(raw)
        return found

    def host_side(self, ifname: str) -> HostSide:
        """The HostSide of `ifname` (NetnsError if there is no such link)."""
        link = self.link(ifname)
        if link is None:
            raise NetnsError(f"host interface {ifname!r} not found")
        index = link.index
        routes = self._routes_of(index)
        names = dict(zip(SIZE_ATTRS, SIZE_FIELDS, strict=True))
        sizes = {names[kind]: value for kind, value in link.sizes}
        parent = (link.parent_dev or "").lower()
        return HostSide(
            name=link.name,
            ifindex=index,
            mac=(link.mac or "").lower(),
            mtu=link.mtu or 0,
            up=link.up,
            alias=link.alias,
            perm_mac=link.perm_mac,
            addresses=tuple(
                f"{a.address}/{a.prefixlen}"
                for a in self.addresses
                if a.index == index and a.scope == RT_SCOPE_UNIVERSE
            ),
            routes=routes,
            rules=self._rules_for({r.table for r in routes}),
            neighbors=tuple(
                Neighbor(destination=n.dst, hardware_addr=n.lladdr.lower())
                for n in self.neighbors
                if n.ifindex == index and n.dst and n.lladdr
            ),
            gso_max_size=sizes.get("gso_max_size"),
            gro_max_size=sizes.get("gro_max_size"),
            gso_ipv4_max_size=sizes.get("gso_ipv4_max_size"),
            gro_ipv4_max_size=sizes.get("gro_ipv4_max_size"),
            pci_address=parent if _PCI.match(parent) else None,
        )

    def _routes_of(self, index: int) -> tuple[Route, ...]:
        out: list[Route] = []
        for r in self.routes:
            fam = _FAMILY.get(r.family)
            if r.oif != index or fam is None or r.rtype != RTN_UNICAST or r.table == LOCAL_TABLE:
                continue
            if fam == 6 and (r.proto == RTPROT_KERNEL or (r.dst or "").lower().startswith("fe80:")):
                continue
            zero = "0.0.0.0" if fam == 4 else "::"  # noqa: S104 - a route destination
            route = Route(
                destination=f"{r.dst or zero}/{r.dst_len}",
                gateway=r.gateway,
                source=r.prefsrc,
                scope=r.scope,
                table=r.table,
            )
            if route not in out:
                out.append(route)
        return tuple(out)

    def _rules_for(self, tables: set[int]) -> tuple[Rule, ...]:
        wanted = tables - RESERVED_TABLES
        out: list[Rule] = []
        if not wanted:
            return ()
        for r in self.rules:
            fam = _FAMILY.get(r.family)
            if r.table not in wanted or fam is None:
                continue
            rule = Rule(
                table=r.table,
                priority=r.priority,
                source=f"{r.src}/{r.src_len}" if r.src else None,
                destination=f"{r.dst}/{r.dst_len}" if r.dst else None,
                family=fam,
            )
            if rule not in out:
                out.append(rule)
        return tuple(out)
