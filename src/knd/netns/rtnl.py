"""Thin helpers over pyroute2 for the executor: handles bound to a netns, errno tests, and
rule/neighbour requests built from plan entries (addresses and routes go through the raw
requests of knd.netns.rawlink). No subprocesses.

A pod-side handle is an `IPRoute` over a NETLINK_ROUTE socket created by a `NetnsWorker`
inside the pod netns: the socket stays bound to that netns, so requests made through it from
any thread act there. pyroute2's own `netns=` option forks a helper per socket; this does not.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from knd.netns.nsfd import NetnsWorker
from knd.netns.plan import Neighbor, Rule

NETLINK_ROUTE = 0
NUD_PERMANENT = 0x80
AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def errno_of(exc: BaseException) -> int | None:
    """The errno carried by a pyroute2 NetlinkError or an OSError, else None."""
    if isinstance(exc, NetlinkError):
        return int(exc.code)
    if isinstance(exc, OSError):
        return exc.errno
    return None


def is_exists(exc: BaseException) -> bool:
    return errno_of(exc) == errno.EEXIST


def is_missing(exc: BaseException) -> bool:
    return errno_of(exc) in (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)


def iproute_in(worker: NetnsWorker) -> Any:
    """An IPRoute whose socket lives in the worker's netns."""
    sock = worker.call(_netlink_socket)
    return IPRoute(use_socket=sock)


def link_index(ipr: Any, name: str) -> int | None:
    """ifindex of `name` through `ipr`, or None if absent."""
    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as exc:
        if is_missing(exc):
            return None
        raise


def link_info(ipr: Any, index: int) -> Any | None:
    try:
        return ipr.link("get", index=index)[0]
    except NetlinkError as exc:
        if is_missing(exc):
            return None
        raise


def rule_spec(rule: Rule) -> dict[str, Any]:
    spec: dict[str, Any] = {"family": AF[rule.family], "table": rule.table, "action": "to_tbl"}
    if rule.priority is not None:
        spec["priority"] = rule.priority
    for key, value in (("src", rule.source), ("dst", rule.destination)):
        if value:
            net = ipaddress.ip_network(value, strict=False)
            spec[key] = str(net.network_address)
            spec[f"{key}_len"] = net.prefixlen
    return spec


def add_rule(ipr: Any, rule: Rule) -> bool:
    """Add a rule; True if added, False if it already existed."""
    try:
        ipr.rule("add", **rule_spec(rule))
    except NetlinkError as exc:
        if is_exists(exc):
            return False
        raise
    return True


def del_rule(ipr: Any, rule: Rule) -> None:
    try:
        ipr.rule("del", **rule_spec(rule))
    except NetlinkError as exc:
        if not is_missing(exc):
            raise


def add_neighbor(ipr: Any, index: int, neigh: Neighbor) -> None:
    """Add a permanent neighbour; EEXIST is success."""
    fam = ipaddress.ip_address(neigh.destination).version
    try:
        ipr.neigh(
            "add",
            dst=neigh.destination,
            lladdr=neigh.hardware_addr,
            ifindex=index,
            state=NUD_PERMANENT,
            family=AF[fam],
        )
    except NetlinkError as exc:
        if not is_exists(exc):
            raise
