"""knd.netns.fabric, the lab's veth-on-bridge NICs (moved out of knd.lab so pyroute2 stays under
knd.host and knd.netns): build, find, and remove again, idempotently."""

from __future__ import annotations

from pyroute2 import NetNS

from knd.lab.node import LabNics, delete_nics, ensure_nics, missing_nics
from knd.netns import fabric

from .conftest import unique


def test_lab_nics_on_one_bridge_built_found_and_removed() -> None:
    nics = LabNics(prefix=unique("kf"), fabric=unique("knd-fab-"))
    try:
        created = ensure_nics(nics, only=[0, 1])
        assert created == nics.names[:2]
        assert ensure_nics(nics, only=[0, 1]) == []  # idempotent
        assert all(fabric.host_link(n) for n in nics.names[:2])
        assert missing_nics(nics) == list(range(2, 8))
        with NetNS(nics.fabric) as ns:
            (br,) = ns.link_lookup(ifname=nics.bridge)
            for i in (0, 1):
                (peer,) = ns.link_lookup(ifname=nics.peer(i))
                assert ns.get_links(peer)[0].get("master") == br
    finally:
        delete_nics(nics)
    assert not fabric.netns_exists(nics.fabric)
    assert not any(fabric.host_link(n) for n in nics.names[:2])
    delete_nics(nics)  # nothing left: still fine
