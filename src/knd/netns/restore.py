"""Give an interface back to the host and restore its captured host state.

Used by detach (StopPodSandbox) and by the attach rollback. Restores, in this order: name,
MTU, MAC (one set-link), GSO/GRO sizes, ethtool features and private flags the pod changed
(they stay with the device across netns moves), alias, admin state, addresses, routes (only
when the link is up: the kernel drops routes of a down link), rules, permanent neighbours.
Every addition treats EEXIST as success, so restoring twice is harmless. Errors do not stop
the remaining steps: they are returned as "step: message" strings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from knd.netns.ethtool_apply import apply_features
from knd.netns.plan import SIZE_FIELDS, HostSide
from knd.netns.privflags import apply_private_flags
from knd.netns.rawlink import SIZE_ATTRS, LinkFacts, LinkSocket
from knd.netns.rtnl import add_neighbor, add_rule

#: Returns a pyroute2 IPRoute in the host netns, opened on first use by the caller's session.
IprSource = Callable[[], Any]


def find_host_link(ipr: IprSource, lsock: LinkSocket, host: HostSide) -> int | None:
    """Find the interface in the host: by original name (one raw request), then by ifindex,
    then by (permanent) MAC — the kernel may have returned it from a deleted netns under
    another name (`devN`); those searches dump every link through pyroute2."""
    index = lsock.index_of(host.name)
    if index is not None:
        return index
    macs = {m for m in (host.perm_mac, host.mac) if m}
    by_index = None
    for link in ipr().link("dump"):
        perm = str(link.get("IFLA_PERM_ADDRESS") or "").lower()
        mac = str(link.get("address") or "").lower()
        if host.perm_mac and perm == host.perm_mac:
            return int(link["index"])
        if link["index"] == host.ifindex and mac in macs:
            by_index = int(link["index"])
    return by_index


def mac_change(current: LinkFacts | None, wanted: str | None) -> str | None:
    """`wanted` when the link's MAC differs from it, else None: a link that cannot set its MAC
    (ipvlan shares its lower device's) refuses any IFLA_ADDRESS with EOPNOTSUPP, even an
    unchanged one, and the whole request with it."""
    if wanted is None or (current is not None and (current.mac or "").lower() == wanted.lower()):
        return None
    return wanted


def restore_host(ipr: IprSource, lsock: LinkSocket, host: HostSide, index: int) -> list[str]:
    """Restore name/MTU/MAC/sizes/ethtool/alias/admin state/addresses/routes/rules/neighbours
    of `index`."""
    errors: list[str] = []

    def attempt(step: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            errors.append(f"{step}: {exc}")

    info = lsock.link(index)
    if info is not None and info.name != host.name:
        attempt("rename", lambda: lsock.setlink(index, up=False))
        attempt("rename", lambda: lsock.setlink(index, ifname=host.name))
    mac = mac_change(lsock.link(index), host.mac)
    attempt("link", lambda: lsock.setlink(index, mtu=host.mtu, mac=mac))
    sizes = {
        kind: value
        for kind, name in zip(SIZE_ATTRS, SIZE_FIELDS, strict=True)
        if (value := getattr(host, name)) is not None
    }
    if sizes:
        attempt("sizes", lambda: lsock.setlink(index, u32=sizes))
    if host.features or host.private_flags:
        current = lsock.link(index)
        ifname = current.name if current is not None else host.name
        if host.features:
            attempt("ethtool", apply_features, ifname, host.features)
        if host.private_flags:
            attempt("private-flags", apply_private_flags, ifname, host.private_flags)
    if host.alias:
        attempt("alias", lambda: lsock.setlink(index, alias=host.alias))
    for cidr in host.addresses:
        attempt("address", lsock.add_address, index, cidr)
    if host.up:
        attempt("up", lambda: lsock.setlink(index, up=True))
        for route in sorted(host.routes, key=lambda r: 0 if r.scope == 253 else 1):
            attempt("route", lsock.add_route, index, route)
    for rule in host.rules:
        attempt("rule", lambda r=rule: add_rule(ipr(), r))
    for neigh in host.neighbors:
        attempt("neighbor", lambda n=neigh: add_neighbor(ipr(), index, n))
    return errors
