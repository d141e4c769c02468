"""A physical-like NIC (virtio-net) outlives its pod's netns: the kernel hands it back to the
host under its pod-side name. Here knd must find it by identity and restore its name and host
state; on the machine's own kernel only veths exist, which die with their netns.

Covered: StopPodSandbox arriving after the netns is gone (detach with the netns unopenable) and
every attach fault point rolling a real NIC back. The hand-back with no StopPodSandbox at all,
noticed by knd's restorer through netlink events, and a fault at each restore step of it:
test_handback.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.errors import AttachError
from knd.netns.steps import STEPS, AttachStep
from tests.step_faults import FailAt

from .conftest import Namespaces, PlanFn, VNic, ipj, sh

CONFIG: dict[str, Any] = {
    "interface": {"name": "eth9", "addresses": ["192.0.2.30/24"], "mtu": 1400},
    "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
}


def _give_host_state(nic: VNic) -> None:
    sh("ip", "link", "set", nic.ifname, "up")
    sh("ip", "addr", "add", "10.77.0.1/24", "dev", nic.ifname)
    sh("ip", "route", "add", "10.177.0.0/24", "via", "10.77.0.254", "table", "177")
    sh("ip", "rule", "add", "from", "10.77.0.0/24", "table", "177", "prio", "1077")


def _clear_host_state(nic: VNic) -> None:
    subprocess_ok = [
        ("ip", "rule", "del", "prio", "1077"),
        ("ip", "addr", "flush", "dev", nic.ifname),
        ("ip", "route", "flush", "table", "177"),
        ("ip", "link", "set", nic.ifname, "down"),
    ]
    for cmd in subprocess_ok:
        with contextlib.suppress(AssertionError):
            sh(*cmd)


def _host_state(nic: VNic) -> tuple[object, ...]:
    link = ipj(None, "link", "show", "dev", nic.ifname)[0]
    addrs = {
        f"{a['local']}/{a['prefixlen']}"
        for a in ipj(None, "addr", "show", "dev", nic.ifname)[0]["addr_info"]
        if a["family"] == "inet"
    }
    routes = {(r["dst"], r.get("gateway")) for r in ipj(None, "route", "show", "table", "177")}
    rules = {(r.get("priority"), r.get("src")) for r in ipj(None, "rule", "show")}
    return (
        link["mtu"],
        link["address"],
        "UP" in link["flags"],
        addrs,
        routes,
        (1077, "10.77.0.0") in rules,
    )


@pytest.fixture
def nic(vnics: list[VNic]) -> Iterator[VNic]:
    n = next(v for v in vnics if v.numa == 1)
    _give_host_state(n)
    yield n
    _clear_host_state(n)


def _wait_for_link(name: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        found = [lk for lk in ipj(None, "link") if lk["ifname"] == name]
        if found or time.monotonic() > deadline:
            assert found, f"{name} did not come back to the host"
            link: dict[str, object] = found[0]
            return link
        time.sleep(0.2)


def test_netns_deleted_then_late_stop_restores_name_and_state(
    nic: VNic, netns: Namespaces, plan: PlanFn
) -> None:
    before = _host_state(nic)
    p = plan(nic, CONFIG)
    pod, path = netns()
    attach([p], path)
    assert ipj(pod, "link", "show", "dev", "eth9")[0]["mtu"] == 1400
    netns.cleanup()  # the pod's netns dies; no StopPodSandbox yet
    handed_back = _wait_for_link("eth9")  # the kernel's hand-back, under the pod-side name
    assert handed_back["address"] == nic.mac
    (back,) = detach([p], path)  # StopPodSandbox arrives late: the netns cannot be opened
    assert back.outcome == "restored" and not back.errors
    assert _host_state(nic) == before
    assert not [lk for lk in ipj(None, "link") if lk["ifname"] == "eth9"]


def test_every_attach_fault_point_rolls_a_real_nic_back(
    nic: VNic, netns: Namespaces, plan: PlanFn
) -> None:
    before = _host_state(nic)
    for step in STEPS:
        if step is AttachStep.RDMA:
            continue  # no RDMA device on this NIC: the step does not run (see test_rdma)
        p = plan(nic, {**CONFIG, "interface": {**CONFIG["interface"], "vrf": {"name": "red"}}})
        pod, path = netns()
        with pytest.raises(AttachError) as err:
            attach([p], path, observer=FailAt(step))
        assert err.value.step == step and not err.value.rollback_errors, step
        assert _host_state(nic) == before, step
        assert [lk["ifname"] for lk in ipj(pod, "link")] == ["lo"], step
        netns.cleanup()
