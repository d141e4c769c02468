"""Bonds, bridges and VLANs on a real kernel (this machine's own kernel has none of them).

A bond or a bridge is published (it is a netdev) but the kernel keeps it in its netns
(NETIF_F_NETNS_LOCAL): attach fails at the `move` step with the device untouched in the host,
which is what docs/plumbing.md says. A VLAN moves like any netdev and comes back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from knd.api import attributes as attr
from knd.host.netlink import LiveNetlink
from knd.inventory.scanner import Inventory
from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.errors import AttachError

from .conftest import Namespaces, PlanFn, VNic, ipj, sh


@pytest.fixture
def links(vnics: list[VNic]) -> Iterator[VNic]:
    nic = next(n for n in vnics if n.numa == 0)
    sh("ip", "link", "set", nic.ifname, "up")  # a VLAN cannot be up on a down lower device
    sh("ip", "link", "add", "kvbond0", "type", "bond")
    sh("ip", "link", "add", "kvbr0", "type", "bridge")
    sh("ip", "link", "add", "link", nic.ifname, "name", "kvvl0", "type", "vlan", "id", "10")
    try:
        yield nic
    finally:
        for name in ("kvbond0", "kvbr0", "kvvl0"):
            with contextlib.suppress(AssertionError):
                sh("ip", "link", "del", name)
        sh("ip", "link", "set", nic.ifname, "down")


def test_bond_and_bridge_refused_by_the_kernel_vlan_moves(
    links: VNic, netns: Namespaces, plan: PlanFn
) -> None:
    published = {d.name: d.attributes for d in Inventory(netlink=LiveNetlink()).scan().published}
    assert (published["kvbond0"][attr.TYPE], published["kvbr0"][attr.TYPE]) == ("bond", "bridge")
    assert published["kvvl0"][attr.TYPE] == "vlan"

    config = {"interface": {"name": "net1", "addresses": ["192.0.2.11/24"]}}
    for name in ("kvbond0", "kvbr0"):
        pod, path = netns()
        with pytest.raises(AttachError) as err:
            attach([plan(name, config)], path)
        assert (err.value.step, err.value.rollback_errors) == ("move", []), name
        assert ipj(None, "link", "show", "dev", name)[0]["ifname"] == name
        assert [lk["ifname"] for lk in ipj(pod, "link")] == ["lo"]

    p = plan("kvvl0", config)
    pod, path = netns()
    attach([p], path)
    net1 = ipj(pod, "-d", "link", "show", "dev", "net1")[0]
    assert net1["linkinfo"]["info_data"]["id"] == 10
    (back,) = detach([p], path)
    assert (back.outcome, back.errors) == ("returned", ())
    assert ipj(None, "-d", "link", "show", "dev", "kvvl0")[0]["linkinfo"]["info_kind"] == "vlan"
