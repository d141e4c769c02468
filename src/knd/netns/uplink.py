"""Refuse to move the node's own uplink: a device that carries the default route or one of the
node's addresses (checked at prepare and again at attach, because routes and addresses move).

Budget: two route dumps filtered by the kernel (main table, this device) and, when node
addresses are known, one address dump: well under 1 ms.
"""

from __future__ import annotations

from collections.abc import Collection

from knd.netns.rawlink import LinkSocket


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
