"""Sub-interfaces on a real kernel (this machine's own kernel has no ipvlan): a macvlan or an
ipvlan on a virtio NIC (one at a time: a NIC takes only one kind) is published as a device of
its own, moves into a pod with its configuration, carries traffic to a peer NIC across the qemu
hub, and comes back on detach."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from knd.api import attributes as attr
from knd.host.netlink import LiveNetlink
from knd.inventory.scanner import Inventory
from knd.netns.attach import attach
from knd.netns.detach import detach

from .conftest import Namespaces, PlanFn, VNic, ipj, sh

MODES = {"macvlan": "bridge", "ipvlan": "l2"}


@pytest.fixture(params=sorted(MODES))
def sub(request: pytest.FixtureRequest, vnics: list[VNic]) -> Iterator[tuple[str, VNic]]:
    """(kind, lower NIC): `kvsub0` of that kind on the node-0 NIC, which is up."""
    kind: str = request.param
    nic = next(n for n in vnics if n.numa == 0)
    sh("ip", "link", "set", nic.ifname, "up")
    sh("ip", "link", "add", "link", nic.ifname, "name", "kvsub0", "type", kind, "mode", MODES[kind])
    try:
        yield kind, nic
    finally:
        with contextlib.suppress(AssertionError):
            sh("ip", "link", "del", "kvsub0")
        sh("ip", "link", "set", nic.ifname, "down")


def test_sub_interface_published_attached_with_traffic(
    sub: tuple[str, VNic], vnics: list[VNic], netns: Namespaces, plan: PlanFn
) -> None:
    kind, lower = sub
    published = {d.name: d.attributes for d in Inventory(netlink=LiveNetlink()).scan().published}
    assert published["kvsub0"][attr.TYPE] == kind
    assert published["kvsub0"][attr.VIRTUAL] is True
    assert lower.device in published  # the lower NIC stays published too

    peer_nic = next(n for n in vnics if n.mac != lower.mac)
    pod, pod_path = netns()
    _peer, peer_path = netns()
    peer_plan = plan(peer_nic, {"interface": {"name": "eth9", "addresses": ["192.0.2.20/24"]}})
    attach([peer_plan], peer_path)

    p = plan("kvsub0", {"interface": {"name": "net1", "addresses": ["192.0.2.11/24"]}})
    attach([p], pod_path)
    (net1,) = [lk for lk in ipj(pod, "-d", "link") if lk["ifname"] != "lo"]
    assert (net1["ifname"], net1["linkinfo"]["info_kind"]) == ("net1", kind)
    done = subprocess.run(
        ["ip", "netns", "exec", pod, "busybox", "ping", "-c", "1", "-W", "5", "192.0.2.20"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    (back,) = detach([p], pod_path)
    assert (back.outcome, back.errors) == ("returned", ())
    assert ipj(None, "-d", "link", "show", "dev", "kvsub0")[0]["linkinfo"]["info_kind"] == kind
    detach([peer_plan], peer_path)
