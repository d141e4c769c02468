"""Transactional attach: a failure at any step of any device puts every device of the pod back
in the host with its original name, MTU, MAC, addresses and routes; the error names the device
and the step. Also: bad input reaching this layer fails cleanly."""

from __future__ import annotations

import dataclasses

import pytest

from knd.netns.attach import attach
from knd.netns.errors import AttachError, PlanError
from knd.netns.plan import AttachPlan, RdmaPlan, Route, Toggle
from knd.netns.steps import STEPS, AttachStep
from tests.step_faults import FailAt, InjectedFailureError, StepLog

from .conftest import Lab, Nic, addrs, ipj, link, routes, sh
from .helpers import drop_rule, give_host_state, plan_for

pytestmark = pytest.mark.netns

CONFIG = {
    "interface": {
        "name": "net{n}",
        "addresses": ["10.{n}.1.2/24"],
        "mtu": 1400,
        "hardwareAddr": "02:00:00:00:00:{n}",
        "arpIgnore": 1,
    },
    "routes": [{"destination": "10.{n}.9.0/24", "gateway": "10.{n}.1.1"}],
    "rules": [{"priority": 500, "source": "10.{n}.1.0/24", "table": 100}],
    "neighbors": [{"destination": "10.{n}.1.77", "hardwareAddr": "02:00:00:00:77:77"}],
    "ethtool": {"features": {"tso": False}},  # veth has TSO on: the rollback must restore it
}


def _config(n: int) -> dict[str, object]:
    import json

    return json.loads(json.dumps(CONFIG).replace("{n}", str(n)))  # type: ignore[no-any-return]


def _snapshot(nic: Nic) -> tuple[object, ...]:
    data = link(None, nic.name)
    rts = sorted(
        (r.get("dst"), r.get("gateway"), str(r.get("table", "main")))
        for r in routes(None, nic.name)
        if r.get("table") != "local"
    )
    features = sorted(sh("ethtool", "-k", nic.name).splitlines()[1:])
    return (
        data["mtu"],
        data["address"],
        "UP" in data["flags"],
        addrs(None, nic.name),
        rts,
        features,
    )


def _pod_links(pod: str) -> set[str]:
    return {x["ifname"] for x in ipj(pod, "link")} - {"lo"}


@pytest.mark.parametrize("step", [s for s in STEPS if s is not AttachStep.RDMA])
def test_failure_at_every_step_rolls_back_every_device(lab: Lab, step: AttachStep) -> None:
    nics = [lab.nic(), lab.nic()]
    for i, nic in enumerate(nics):
        give_host_state(nic, 50 + i)
    try:
        before = [_snapshot(n) for n in nics]
        plans = [plan_for(n, _config(60 + i)) for i, n in enumerate(nics)]
        pod, path = lab.netns()
        with pytest.raises(AttachError) as info:
            attach(plans, path, observer=FailAt(step, nics[1].name))
        assert info.value.device == nics[1].name
        assert info.value.step == step
        assert isinstance(info.value.cause, InjectedFailureError)
        assert info.value.rollback_errors == []
        assert _pod_links(pod) == set()
        assert [_snapshot(n) for n in nics] == before
        rules = {(r.get("priority"), r.get("table")) for r in ipj(pod, "rule")}
        assert (500, "100") not in rules  # rules added in the pod were removed too
    finally:
        drop_rule(50)
        drop_rule(51)


def test_failure_on_first_device_leaves_second_untouched(lab: Lab) -> None:
    nics = [lab.nic(), lab.nic()]
    plans = [plan_for(n, _config(70 + i)) for i, n in enumerate(nics)]
    before = [_snapshot(n) for n in nics]
    pod, path = lab.netns()
    with pytest.raises(AttachError) as info:
        attach(plans, path, observer=FailAt(AttachStep.UP, nics[0].name))
    assert info.value.step == "up"
    assert [_snapshot(n) for n in nics] == before
    assert _pod_links(pod) == set()


def test_the_observer_sees_every_step_of_every_device_in_order(lab: Lab) -> None:
    """A NIC without an RDMA device goes through STEPS but `rdma`, one device after the other;
    watching changes nothing."""
    nics = [lab.nic(), lab.nic()]
    plans = [plan_for(n, _config(80 + i)) for i, n in enumerate(nics)]
    pod, path = lab.netns()
    steps = StepLog()
    attached = attach(plans, path, observer=steps)
    assert [a.device for a in attached] == [n.name for n in nics]
    assert steps.seen == [(n.name, s) for n in nics for s in STEPS if s is not AttachStep.RDMA]
    assert _pod_links(pod) == {"net80", "net81"}


def test_rdma_unavailable_fails_the_device_cleanly(lab: Lab) -> None:
    """This kernel has no RDMA: a plan asking to move an RDMA link fails at step rdma with a
    reported RdmaUnavailableError cause, and the netdev is rolled back. With a real RDMA device
    (soft-RoCE on a Debian kernel, whose move the kernel refuses): tests/vm/test_rdma.py."""
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"addresses": ["10.8.0.2/24"]}})
    plan = dataclasses.replace(plan, rdma=RdmaPlan(link="mlx5_0", move_link=True))
    before = _snapshot(nic)
    pod, path = lab.netns()
    with pytest.raises(AttachError) as info:
        attach([plan], path)
    assert info.value.step == "rdma"
    assert "RDMA netlink unavailable" in str(info.value)
    assert _snapshot(nic) == before
    assert _pod_links(pod) == set()


def test_unknown_ethtool_feature_in_plan_rolls_back(lab: Lab) -> None:
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"addresses": ["10.9.0.2/24"]}})
    assert plan.pod is not None
    bad = dataclasses.replace(
        plan, pod=dataclasses.replace(plan.pod, features=(Toggle("no-such-feature", False),))
    )
    before = _snapshot(nic)
    _pod, path = lab.netns()
    with pytest.raises(AttachError) as info:
        attach([bad], path)
    assert info.value.step == "ethtool"
    assert "no-such-feature" in str(info.value)
    assert _snapshot(nic) == before


def test_unreachable_gateway_rolls_back(lab: Lab) -> None:
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"addresses": ["10.10.0.2/24"]}})
    assert plan.pod is not None
    bad = dataclasses.replace(
        plan,
        pod=dataclasses.replace(plan.pod, routes=(Route("10.99.0.0/16", gateway="172.31.255.1"),)),
    )
    before = _snapshot(nic)
    pod, path = lab.netns()
    with pytest.raises(AttachError) as info:
        attach([bad], path)
    assert info.value.step == "route"
    assert _snapshot(nic) == before
    assert _pod_links(pod) == set()


def test_hand_edited_plan_is_rejected_before_touching_anything(lab: Lab) -> None:
    nic = lab.nic()
    text = plan_for(nic, {"interface": {"name": "net1"}}).to_json()
    for edit in (
        text.replace('"name":"net1"', '"name":"../../etc"'),
        text.replace('"name":"net1"', '"name":"net1","evil":1'),
        text.replace('"mtu":1500', '"mtu":"1500"'),
        text.replace('"version":1', '"version":99'),
        text.replace('"name":"net1"', '"name":"eth0 x"'),
    ):
        assert edit != text
        with pytest.raises(PlanError):
            AttachPlan.from_json(edit)
    # a plan object edited in memory is re-checked by attach itself
    plan = AttachPlan.from_json(text)
    assert plan.pod is not None
    bad = dataclasses.replace(plan, pod=dataclasses.replace(plan.pod, mac="zz:zz"))
    _, path = lab.netns()
    with pytest.raises(PlanError):
        attach([bad], path)
    assert link(None, nic.name)["ifname"] == nic.name


def test_unknown_private_flag_in_plan_rolls_back(lab: Lab) -> None:
    """veth has no private flags (ethtool --show-priv-flags agrees): a plan carrying one fails
    at step ethtool, rolled back."""
    from knd.netns.privflags import flag_names

    nic = lab.nic()
    assert flag_names(nic.name) == ()
    plan = plan_for(nic, {"interface": {"addresses": ["10.11.0.2/24"]}})
    assert plan.pod is not None
    bad = dataclasses.replace(
        plan, pod=dataclasses.replace(plan.pod, private_flags=(Toggle("fancy-mode", True),))
    )
    before = _snapshot(nic)
    _pod, path = lab.netns()
    with pytest.raises(AttachError) as info:
        attach([bad], path)
    assert info.value.step == "ethtool"
    assert "fancy-mode" in str(info.value)
    assert _snapshot(nic) == before


def test_name_clash_in_pod_fails_at_move_and_leaves_pod_interface_alone(lab: Lab) -> None:
    """The pod already has an interface with the wanted name (e.g. from CNI): the move fails,
    the NIC goes back, and the pod's own interface is neither taken nor changed."""
    from .conftest import sh

    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"name": "eth0", "addresses": ["10.12.0.2/24"]}})
    pod, path = lab.netns()
    sh("ip", "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "cni0")
    sh("ip", "-n", pod, "addr", "add", "10.244.0.5/24", "dev", "eth0")
    before = _snapshot(nic)
    with pytest.raises(AttachError) as info:
        attach([plan], path)
    assert info.value.step == "move"
    assert _snapshot(nic) == before
    assert addrs(pod, "eth0") == {"10.244.0.5/24"}
    # host NIC gone (e.g. unplugged) + same-named CNI interface in the pod: not adopted
    sh("ip", "link", "del", nic.name)
    with pytest.raises(AttachError) as info:
        attach([plan], path)
    assert info.value.step == "lookup"
    assert addrs(pod, "eth0") == {"10.244.0.5/24"}
