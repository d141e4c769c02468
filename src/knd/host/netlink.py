"""Read-only netlink snapshots of the host's links, addresses, default routes and TC filters.

`NetlinkSource` is the small interface the inventory depends on; `LiveNetlink` is the real one
(optionally inside a named network namespace), tests may pass any object with the same
`snapshot()`. One snapshot = five raw dumps (links, addresses, IPv4/IPv6 routes, qdiscs, via
`knd.host.rtnl`) plus, through pyroute2, one filter dump per ingress/egress hook of links that have
a `clsact`/`ingress` qdisc, plus two BPF_PROG_QUERY calls per link for TCX programs
(`knd.host.bpf`; none on kernels without TCX or without CAP_BPF).

Time budget: ≤ 20 ms for 256 links.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyroute2 import IPRoute

from knd.host.bpf import tcx_programs
from knd.host.rtnl import Rtnl, in_netns

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
    tcx_attached: bool = False
    tcx_program_names: tuple[str, ...] = ()


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
    """Anything that can take a snapshot (the real one is `LiveNetlink`)."""

    def snapshot(self) -> Snapshot: ...


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class LiveNetlink:
    """Snapshots of a namespace (the current one, or `netns` under /run/netns).

    Links, addresses, routes and qdiscs come from `knd.host.rtnl` (raw dumps, parsed sparingly);
    TC filter names from pyroute2, only for links that have a clsact/ingress qdisc.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def snapshot(self) -> Snapshot:
        try:
            with Rtnl(self.netns) as rtnl:
                return self._snapshot(rtnl)
        except Exception as exc:  # socket, kernel and pyroute2 errors: one domain error
            raise NetlinkError(f"netlink snapshot failed: {exc}") from exc

    def _snapshot(self, rtnl: Rtnl) -> Snapshot:
        v4: dict[int, list[str]] = {}
        v6: dict[int, list[str]] = {}
        for a in rtnl.addresses():
            if a.scope != RT_SCOPE_UNIVERSE:
                continue
            (v4 if a.family == AF_INET else v6).setdefault(a.index, []).append(
                f"{a.address}/{a.prefixlen}"
            )
        hooks: dict[int, tuple[int, ...]] = {}
        for index, kind in rtnl.qdisc_kinds():
            if kind == "clsact":
                hooks[index] = (TC_H_CLSACT_INGRESS, TC_H_CLSACT_EGRESS)
            elif kind == "ingress":
                hooks[index] = (TC_H_INGRESS,)
        filters = self._filter_names(hooks) if hooks else {}
        raw_links = rtnl.links()
        indexes = [raw.index for raw in raw_links]
        tcx = in_netns(self.netns, lambda: tcx_programs(indexes))
        links = [
            Link(
                index=raw.index,
                name=raw.name,
                kind=raw.kind,
                operstate=raw.operstate,
                mtu=raw.mtu,
                mac=raw.mac,
                alias=raw.alias,
                arphrd=raw.arphrd,
                master=raw.master,
                parent=raw.parent,
                ipv4=tuple(sorted(v4.get(raw.index, ()), key=_ip_key)),
                ipv6=tuple(sorted(v6.get(raw.index, ()), key=_ip_key)),
                tc_filter_names=filters.get(raw.index, ()),
                tcx_attached=raw.index in tcx,
                tcx_program_names=tcx.get(raw.index, ()),
            )
            for raw in raw_links
        ]
        routes = []
        for family in (AF_INET, AF_INET6):
            for r in rtnl.routes(family):
                if (
                    r.dst_len == 0
                    and r.rtype == RTN_UNICAST
                    and r.table == RT_TABLE_MAIN
                    and r.oifs
                ):
                    routes.append(DefaultRoute(family, r.metric, tuple(sorted(set(r.oifs)))))
        return Snapshot.of(links, routes)

    def _filter_names(self, hooks: dict[int, tuple[int, ...]]) -> dict[int, tuple[str, ...]]:
        out: dict[int, tuple[str, ...]] = {}
        ipr = IPRoute(netns=self.netns) if self.netns else IPRoute()
        with ipr:
            for index, parents in hooks.items():
                names: set[str] = set()
                for parent in parents:
                    for f in ipr.get_filters(index=index, parent=parent):
                        if _attr(f, "TCA_KIND") != "bpf":
                            continue
                        opts = _attr(f, "TCA_OPTIONS")
                        name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
                        if name:
                            names.add(str(name))
                if names:
                    out[index] = tuple(sorted(names))
        return out


def _ip_key(cidr: str) -> tuple[int, int]:
    iface = ipaddress.ip_interface(cidr)
    return int(iface.ip), iface.network.prefixlen


def default_gateway(ifname: str, family: int, netns: str | None = None) -> str:
    """The gateway of a main-table default route that leaves through `ifname` ('' when none).

    Two raw dumps (links, routes of `family`); several candidates: the lowest metric wins.
    Raises NetlinkError when a dump fails. Time budget: a few ms.
    """
    try:
        with Rtnl(netns) as rtnl:
            index = next((lk.index for lk in rtnl.links() if lk.name == ifname), None)
            if index is None:
                return ""
            best: tuple[int, str] | None = None
            for r in rtnl.routes(family):
                if r.dst_len != 0 or r.rtype != RTN_UNICAST or r.table != RT_TABLE_MAIN:
                    continue
                gateway = r.gateways.get(index, "")
                if gateway and (best is None or r.metric < best[0]):
                    best = (r.metric, gateway)
            return best[1] if best else ""
    except Exception as exc:
        raise NetlinkError(f"default route of {ifname}: {exc}") from exc
