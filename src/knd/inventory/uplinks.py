"""Which links carry the node's default route, and everything hanging off them (never published).

Per address family, the main-table default routes with the lowest metric (ties and ECMP next hops
all kept) name the uplinks. Then, repeatedly: the lower device of an uplink VLAN/MACVLAN/IPVLAN,
and every link enslaved to an excluded link (bond/team ports, bridge ports, nested levels). VFs of
an uplink PF are excluded by the caller, which knows the PCI topology. Recomputed on every scan,
so a route change is reflected at the next rescan (DraNet computes this once at start).
"""

from __future__ import annotations

from knd.host.netlink import AF_INET, AF_INET6, Snapshot

_STACKED_KINDS = frozenset({"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap"})


def uplinks(snapshot: Snapshot) -> dict[int, str]:
    """Link index → exclusion reason."""
    reasons: dict[int, str] = {}
    for family, label in ((AF_INET, "ipv4"), (AF_INET6, "ipv6")):
        routes = [r for r in snapshot.default_routes if r.family == family]
        if not routes:
            continue
        best = min(r.metric for r in routes)
        for r in routes:
            if r.metric != best:
                continue
            for oif in r.oifs:
                reasons.setdefault(
                    oif, f"uplink: carries the {label} default route (metric {best})"
                )
    changed = True
    while changed:
        changed = False
        for link in snapshot.links:
            if link.index in reasons:
                if link.kind in _STACKED_KINDS and link.parent in snapshot.by_index:
                    parent = snapshot.by_index[link.parent]
                    if parent.index not in reasons:
                        reasons[parent.index] = f"uplink: lower device of uplink {link.name}"
                        changed = True
                continue
            if link.master is not None and link.master in reasons:
                master = snapshot.by_index[link.master].name
                reasons[link.index] = f"uplink: port of uplink {master}"
                changed = True
    return reasons
