"""Identity and uplink refusal with real links: a device is never found by its name alone, and
a device that now carries the default route or a node address is refused at prepare and at
attach. Default routes are only ever added inside a throwaway netns (never the test host's)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from knd.api.config import decode
from knd.driver.errors import ClaimError
from knd.driver.netns_plans import DeviceLocation, NetnsPlanBuilder
from knd.host.rtnl import in_netns
from knd.netns.attach import attach
from knd.netns.builder import build_plan
from knd.netns.capture import capture_host_state
from knd.netns.errors import AttachError
from knd.netns.plan import AttachPlan

from .conftest import Lab, addrs, link_absent, sh, unique
from .helpers import plan_for


def _uplink_netns(lab: Lab) -> tuple[str, str, str]:
    """A netns with a veth `a` (10.9.0.2/24, up) whose peer is in the same netns."""
    ns, _ = lab.netns()
    a, b = unique("ka"), unique("kb")
    sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
    sh("ip", "-n", ns, "addr", "add", "10.9.0.2/24", "dev", a)
    sh("ip", "-n", ns, "link", "set", a, "up")
    sh("ip", "-n", ns, "link", "set", b, "up")
    return ns, a, b


def _plan_in(ns: str, ifname: str) -> AttachPlan:
    state = in_netns(ns, lambda: capture_host_state(ifname))
    return build_plan(ifname, "uid-1", decode({"interface": {"name": "net1"}}), state)


@pytest.mark.parametrize(
    "default_route",
    [("-4", "default", "via", "10.9.0.1"), ("-6", "default", "via", "fd09::1")],
    ids=["ipv4", "ipv6"],
)
def test_attach_refuses_a_device_that_now_carries_the_default_route(
    lab: Lab, default_route: tuple[str, ...]
) -> None:
    ns, a, _ = _uplink_netns(lab)
    plan = _plan_in(ns, a)  # prepared while it was an ordinary NIC
    family, *route = default_route
    if family == "-6":  # a v6 default route needs its gateway on the link (no DAD wait)
        sh("ip", "-n", ns, "addr", "add", "fd09::2/64", "dev", a, "nodad")
    sh("ip", family, "-n", ns, "route", "add", *route, "dev", a)
    _, pod_path = lab.netns()
    host_fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        with pytest.raises(AttachError) as err:
            in_netns(ns, lambda: attach([plan], pod_path, host_netns_fd=host_fd))
    finally:
        os.close(host_fd)
    assert err.value.step == "lookup"
    assert "default route" in str(err.value) and a in str(err.value)
    assert not link_absent(ns, a), "the uplink left its netns"


class _Locator:
    def __init__(self, ifname: str) -> None:
        self.ifname = ifname

    def locate(self, device: str) -> DeviceLocation:
        return DeviceLocation(device, self.ifname, None)


def test_prepare_refuses_a_device_that_carries_the_default_route(lab: Lab) -> None:
    ns, a, _ = _uplink_netns(lab)
    sh("ip", "-n", ns, "route", "add", "default", "via", "10.9.0.1", "dev", a)
    builder = NetnsPlanBuilder(locator=_Locator(a))  # type: ignore[arg-type]

    def build() -> Any:
        return builder.build(a, "uid-1", {}, "nic", decode({}))

    with pytest.raises(ClaimError) as err:
        in_netns(ns, build)
    assert "default route" in str(err.value) and a in str(err.value)


def test_prepare_and_attach_refuse_a_device_holding_a_node_address(lab: Lab) -> None:
    nic = lab.nic()
    sh("ip", "addr", "add", "10.77.3.1/24", "dev", nic.name)
    builder = NetnsPlanBuilder(
        locator=_Locator(nic.name),  # type: ignore[arg-type]
        node_addresses=lambda: {"10.77.3.1", "192.0.2.10"},
    )
    with pytest.raises(ClaimError) as err:
        builder.build(nic.name, "uid-1", {}, "nic", decode({}))
    assert "10.77.3.1" in str(err.value) and "192.0.2.10" not in str(err.value)
    plan = plan_for(nic, {"interface": {"name": "net1"}})
    _, pod_path = lab.netns()
    with pytest.raises(AttachError) as aerr:
        attach([plan], pod_path, node_addresses=frozenset({"10.77.3.1"}))
    assert aerr.value.step == "lookup" and "10.77.3.1" in str(aerr.value)
    assert addrs(None, nic.name) == {"10.77.3.1/24"}  # untouched, still in the host


def test_a_device_is_never_found_by_its_name_alone(lab: Lab) -> None:
    """After prepare, the NIC is renamed and another NIC takes its name (what a reboot or a
    udev rule can do): attach refuses rather than moving the other NIC."""
    nic, other = lab.nic(), lab.nic()
    plan = plan_for(nic, {"interface": {"name": "net1"}})
    moved_aside = unique("kx")
    sh("ip", "link", "set", nic.name, "down")
    sh("ip", "link", "set", nic.name, "name", moved_aside)
    lab.links.append(moved_aside)
    sh("ip", "link", "set", other.name, "down")
    sh("ip", "link", "set", other.name, "name", nic.name)
    _, pod_path = lab.netns()
    with pytest.raises(AttachError) as err:
        attach([plan], pod_path)
    assert err.value.step == "lookup"
    assert not link_absent(None, nic.name), "the NIC that took the name was moved"
