"""Refuse to move the node's own uplink: a device that carries the default route or one of the
node's addresses (checked at prepare and again at attach, because routes and addresses move).

Budget: one route dump of both families filtered by the kernel (main table, this device)
and, when node addresses are known, one address dump: well under 1 ms.
"""

from __future__ import annotations

from collections.abc import Collection

from knd.netns.plan import MAIN_TABLE
from knd.netns.rawlink import LinkSocket
from knd.netns.snapshot import HostSnapshot


def uplink_problem(
    lsock: LinkSocket, index: int, ifname: str, node_addresses: Collection[str] = ()
) -> str | None:
    """Why link `index` must not leave the host (a sentence naming it), or None."""
    if lsock.has_default_route(index):
        return (
            f"interface {ifname} now carries the node's default route; knd never moves the "
            "node's uplink into a pod"
        )
    if node_addresses:
        held = sorted(lsock.addresses(index) & set(node_addresses))
        if held:
            return (
                f"interface {ifname} now holds the node's address(es) {', '.join(held)}; knd "
                "never moves the node's own interface into a pod"
            )
    return None


def uplink_problem_in(
    snapshot: HostSnapshot, index: int, ifname: str, node_addresses: Collection[str] = ()
) -> str | None:
    """`uplink_problem` answered from a host snapshot (prepare: no extra dumps)."""
    for r in snapshot.routes:
        through = r.oif == index or index in r.multipath_oifs
        if through and r.dst_len == 0 and r.table == MAIN_TABLE and r.rtype == 1:
            return (
                f"interface {ifname} carries the node's default route; knd never moves the "
                "node's uplink into a pod"
            )
    held = sorted({a.address for a in snapshot.addresses if a.index == index} & set(node_addresses))
    if held:
        return (
            f"interface {ifname} holds the node's address(es) {', '.join(held)}; knd never "
            "moves the node's own interface into a pod"
        )
    return None
