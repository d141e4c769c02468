"""Sub-interfaces (root): several pods share one host NIC through macvlan children created in
their netns, with node-local IPAM from `ipRanges`; the parent never moves; children go with
their pod; ipvlan (absent from this kernel) fails cleanly with a message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knd.api.check import finalize
from knd.api.config import decode
from knd.driver.ipam import LocalIpam
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.errors import AttachError
from knd.netns.plan import AttachPlan

from .conftest import Lab, Nic, addrs, ipj, link, link_absent

pytestmark = pytest.mark.netns


def _plan(
    builder: NetnsPlanBuilder, nic: Nic, claim_uid: str, pod_uid: str, cfg: dict[str, Any]
) -> AttachPlan:
    raw = builder.build(
        nic.name, pod_uid, {"metadata": {"uid": claim_uid}}, "nic", finalize(decode(cfg))
    )
    return AttachPlan.from_json(json.dumps(raw))


SHARED = {
    "interface": {"name": "net1"},
    "subInterface": {
        "type": "macvlan",
        "ipRanges": [{"subnet": "10.77.0.0/24", "start": "10.77.0.10"}],
    },
    "routes": [{"destination": "198.51.100.0/24", "gateway": "10.77.0.1"}],
}


def test_two_pods_share_one_nic_through_macvlan_children(lab: Lab, tmp_path: Path) -> None:
    nic = lab.nic()
    before = link(None, nic.name)
    builder = NetnsPlanBuilder(ipam=LocalIpam(tmp_path / "ipam.db"))
    pods = [lab.netns() for _ in range(2)]
    plans = [_plan(builder, nic, f"claim-{i}", f"pod-{i}", SHARED) for i in range(2)]
    assert plans[0].pod is not None and plans[0].pod.addresses == ("10.77.0.10/24",)
    assert plans[1].pod is not None and plans[1].pod.addresses == ("10.77.0.11/24",)
    for plan, (ns, path) in zip(plans, pods, strict=True):
        [result] = attach([plan], path)
        child = link(ns, "net1")
        assert child["linkinfo"]["info_kind"] == "macvlan"
        assert child["linkinfo"]["info_data"]["mode"] == "bridge"
        assert "UP" in child["flags"]
        assert addrs(ns, "net1") == set(plan.pod.addresses if plan.pod else ())
        assert any(r.get("dst") == "198.51.100.0/24" for r in ipj(ns, "route", "show"))
        assert result.hardware_address == child["address"] != before["address"]
    # the parent never moved and kept its identity
    after = link(None, nic.name)
    assert (after["ifindex"], after["address"], after["mtu"]) == (
        before["ifindex"],
        before["address"],
        before["mtu"],
    )
    # re-applying is harmless (EEXIST everywhere)
    attach([plans[0]], pods[0][1])
    # detach removes the child, never the parent
    [out] = detach([plans[0]], pods[0][1])
    assert out.outcome == "removed"
    assert link_absent(pods[0][0], "net1")
    assert not link_absent(None, nic.name)
    assert not link_absent(pods[1][0], "net1")


def test_children_go_with_their_pod(lab: Lab, tmp_path: Path) -> None:
    nic = lab.nic()
    builder = NetnsPlanBuilder(ipam=LocalIpam(tmp_path / "ipam.db"))
    ns, path = lab.netns()
    plan = _plan(builder, nic, "claim-x", "pod-x", SHARED)
    attach([plan], path)
    from pyroute2 import netns as pyns

    pyns.remove(ns)
    lab.namespaces.remove(ns)
    # the kernel destroyed the child with the netns; macvlan children on the parent: none
    kids = [lk for lk in ipj(None, "-d", "link", "show") if lk.get("link") == nic.name]
    assert kids == []
    [out] = detach([plan], None)
    assert out.outcome == "removed" and out.home  # the parent never left: nothing to retry
    assert not link_absent(None, nic.name)


def test_ipvlan_absent_from_the_kernel_fails_cleanly(lab: Lab, tmp_path: Path) -> None:
    nic = lab.nic()
    builder = NetnsPlanBuilder(ipam=LocalIpam(tmp_path / "ipam.db"))
    ns, path = lab.netns()
    cfg = {
        "interface": {"name": "net1", "addresses": ["10.78.0.5/24"]},
        "subInterface": {"type": "ipvlan", "mode": "l3"},
    }
    plan = _plan(builder, nic, "claim-i", "pod-i", cfg)
    try:
        attach([plan], path)
    except AttachError as exc:
        assert exc.step == "child"
        assert "no ipvlan support" in str(exc)
    else:  # a kernel with ipvlan: it must then work
        assert link(ns, "net1")["linkinfo"]["info_kind"] == "ipvlan"
        return
    assert link_absent(ns, "net1")
    assert not link_absent(None, nic.name)
