"""A test fabric: veth pairs whose peers sit on one bridge in a named netns (the lab's NICs).

Used by `knd.lab.node` (the lab node's 8 NICs) and its tests; never by the driver. Idempotent
building blocks over pyroute2, which is confined to `knd.host` and `knd.netns` (an import
contract in pyproject.toml): the lab names things, this module does the netlink.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from pyroute2 import IPRoute, NetlinkError, NetNS, netns


def netns_exists(name: str) -> bool:
    return name in netns.listnetns()


def ensure_bridge(fabric: str, bridge: str) -> None:
    """Create netns `fabric` with bridge `bridge` (and `lo`) up, unless they exist."""
    if not netns_exists(fabric):
        netns.create(fabric)
    with NetNS(fabric) as ns:
        if not ns.link_lookup(ifname=bridge):
            ns.link("add", ifname=bridge, kind="bridge")
        br = ns.link_lookup(ifname=bridge)[0]
        ns.link("set", index=br, state="up")
        lo = ns.link_lookup(ifname="lo")
        if lo:
            ns.link("set", index=lo[0], state="up")


def link_in(fabric: str, name: str) -> bool:
    """True when netns `fabric` has a link `name`."""
    with NetNS(fabric) as ns:
        return bool(ns.link_lookup(ifname=name))


def host_link(name: str) -> bool:
    """True when the host netns has a link `name`."""
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def add_veth_on_bridge(
    host: str, peer: str, mac: str, fabric: str, bridge: str, mtu: int = 1500
) -> None:
    """veth `host` (in the host netns, MAC `mac`, up) ↔ `peer` (in `fabric`, on `bridge`, up);
    a stale `peer` left in the host netns is deleted first."""
    with IPRoute() as ipr:
        for stale in ipr.link_lookup(ifname=peer):
            ipr.link("del", index=stale)
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer})
        idx = ipr.link_lookup(ifname=host)[0]
        ipr.link("set", index=idx, address=mac)
        ipr.link("set", index=idx, mtu=mtu, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=fabric)
    with NetNS(fabric) as ns:
        p = ns.link_lookup(ifname=peer)[0]
        br = ns.link_lookup(ifname=bridge)[0]
        ns.link("set", index=p, master=br, state="up")


def delete_host_links(names: Iterable[str]) -> None:
    """Delete each named host link that exists (one already gone is fine)."""
    with IPRoute() as ipr:
        for name in names:
            for idx in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=idx)
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        raise


def remove_netns(name: str) -> None:
    if netns_exists(name):
        netns.remove(name)
