"""Read-only netlink snapshots of the host's links, addresses, default routes and TC filters.

`NetlinkSource` is the small interface the inventory depends on; `PyrouteNetlink` is the real one
(pyroute2, optionally inside a named network namespace), tests may pass any object with the same
`snapshot()`. One snapshot = four dumps (links, addresses, main-table routes, qdiscs) plus one
filter dump per ingress/egress hook of links that have a `clsact`/`ingress` qdisc.

Time budget: ≤ 30 ms for 256 links (dominated by pyroute2 message parsing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyroute2 import IPRoute

AF_INET = 2
AF_INET6 = 10
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
TC_H_CLSACT_INGRESS = 0xFFFFFFF2
TC_H_CLSACT_EGRESS = 0xFFFFFFF3
TC_H_INGRESS = 0xFFFFFFF1


class NetlinkError(RuntimeError):
    """A netlink dump failed (the cause is chained)."""


@dataclass(frozen=True, slots=True)
class Link:
    """One link as netlink reports it in the namespace of the snapshot."""

    index: int
    name: str
    kind: str | None
    operstate: str
    mtu: int | None
    mac: str | None
    alias: str | None
    arphrd: int
    master: int | None = None
    parent: int | None = None
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    tc_filter_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    """A main-table default route: its family, metric and every output link (ECMP included)."""

    family: int
    metric: int
    oifs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    links: tuple[Link, ...] = ()
    default_routes: tuple[DefaultRoute, ...] = ()
    by_index: dict[int, Link] = field(default_factory=dict)

    @staticmethod
    def of(links: Iterable[Link], routes: Iterable[DefaultRoute] = ()) -> Snapshot:
        ls = tuple(links)
        return Snapshot(ls, tuple(routes), {link.index: link for link in ls})


class NetlinkSource(Protocol):
    """Anything that can take a snapshot (the real one is `PyrouteNetlink`)."""

    def snapshot(self) -> Snapshot: ...


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class PyrouteNetlink:
    """Snapshots through pyroute2's IPRoute; `netns` names a namespace under /run/netns."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _ipr(self) -> Any:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def snapshot(self) -> Snapshot:
        try:
            with self._ipr() as ipr:
                return self._snapshot(ipr)
        except Exception as exc:  # pyroute2 raises many types; one domain error for callers
            raise NetlinkError(f"netlink snapshot failed: {exc}") from exc

    def _snapshot(self, ipr: Any) -> Snapshot:
        v4: dict[int, list[str]] = {}
        v6: dict[int, list[str]] = {}
        for msg in ipr.get_addr():
            if msg["scope"] != RT_SCOPE_UNIVERSE:
                continue
            addr = _attr(msg, "IFA_ADDRESS")
            if not addr:
                continue
            cidr = f"{addr}/{msg['prefixlen']}"
            (v4 if msg["family"] == AF_INET else v6).setdefault(msg["index"], []).append(cidr)
        hooks = self._filter_hooks(ipr)
        links = []
        for msg in ipr.get_links():
            index = msg["index"]
            info = _attr(msg, "IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            operstate = _attr(msg, "IFLA_OPERSTATE") or "UNKNOWN"
            links.append(
                Link(
                    index=index,
                    name=_attr(msg, "IFLA_IFNAME"),
                    kind=kind,
                    operstate=str(operstate).lower(),
                    mtu=_attr(msg, "IFLA_MTU"),
                    mac=_attr(msg, "IFLA_ADDRESS"),
                    alias=_attr(msg, "IFLA_IFALIAS") or None,
                    arphrd=msg["ifi_type"],
                    master=_attr(msg, "IFLA_MASTER") or None,
                    parent=_attr(msg, "IFLA_LINK") or None,
                    ipv4=tuple(sorted(v4.get(index, ()), key=_ip_key)),
                    ipv6=tuple(sorted(v6.get(index, ()), key=_ip_key)),
                    tc_filter_names=self._filter_names(ipr, index, hooks.get(index, ())),
                )
            )
        return Snapshot.of(links, self._default_routes(ipr))

    @staticmethod
    def _filter_hooks(ipr: Any) -> dict[int, tuple[int, ...]]:
        hooks: dict[int, tuple[int, ...]] = {}
        for q in ipr.get_qdiscs():
            kind = _attr(q, "TCA_KIND")
            if kind == "clsact":
                hooks[q["index"]] = (TC_H_CLSACT_INGRESS, TC_H_CLSACT_EGRESS)
            elif kind == "ingress":
                hooks[q["index"]] = (TC_H_INGRESS,)
        return hooks

    @staticmethod
    def _filter_names(ipr: Any, index: int, parents: tuple[int, ...]) -> tuple[str, ...]:
        names: set[str] = set()
        for parent in parents:
            for f in ipr.get_filters(index=index, parent=parent):
                if _attr(f, "TCA_KIND") != "bpf":
                    continue
                opts = _attr(f, "TCA_OPTIONS")
                name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
                if name:
                    names.add(str(name))
        return tuple(sorted(names))

    @staticmethod
    def _default_routes(ipr: Any) -> list[DefaultRoute]:
        out = []
        for family in (AF_INET, AF_INET6):
            for r in ipr.get_routes(family=family, table=RT_TABLE_MAIN):
                if r["dst_len"] != 0 or r["type"] != RTN_UNICAST:
                    continue
                if (_attr(r, "RTA_TABLE") or RT_TABLE_MAIN) != RT_TABLE_MAIN:
                    continue
                oifs = []
                if _attr(r, "RTA_OIF"):
                    oifs.append(int(_attr(r, "RTA_OIF")))
                for hop in _attr(r, "RTA_MULTIPATH") or ():
                    oifs.append(int(hop["oif"]))
                if oifs:
                    metric = int(_attr(r, "RTA_PRIORITY") or 0)
                    out.append(DefaultRoute(family, metric, tuple(sorted(set(oifs)))))
        return out


def _ip_key(cidr: str) -> tuple[int, int]:
    iface = ipaddress.ip_interface(cidr)
    return int(iface.ip), iface.network.prefixlen
