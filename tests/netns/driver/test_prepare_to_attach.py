"""Prepare with the real plan builder → plan persisted → attach from the store → detach.

The kubelet side (PrepareEngine, SQLite store, API server emulator for claims) and the plumbing
(knd.netns) meet here: what NodePrepareResources persists is exactly what RunPodSandbox executes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from knd.api.names import interface_device_name
from knd.driver.claim_api import KubeClaimApi
from knd.driver.errors import ClaimError
from knd.driver.netns_plans import NetnsPlanBuilder, SysfsDeviceLocator
from knd.driver.prepare import PrepareEngine
from knd.driver.store import StateStore
from knd.kube.connection import connect_url
from knd.kubelet.types import ClaimRef
from knd.lab.apiserver import ApiServerEmulator
from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.plan import AttachPlan
from tests.netns.conftest import Lab, addrs, link, routes, sh

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "kubelet"))
from kubelet_claims import DRIVER, POOL, claim, opaque


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[PrepareEngine, ApiServerEmulator, StateStore]]:
    server = ApiServerEmulator().start()
    store = StateStore(tmp_path / "knd.db")
    api = KubeClaimApi(connect_url(server.url), component=DRIVER, host=POOL)
    eng = PrepareEngine(
        driver=DRIVER, store=store, reader=api, events=api, plan_builder=NetnsPlanBuilder()
    )
    try:
        yield eng, server, store
    finally:
        store.close()
        server.stop()


def test_prepared_plan_attaches_and_detach_restores(
    lab: Lab, engine: tuple[PrepareEngine, ApiServerEmulator, StateStore]
) -> None:
    eng, server, store = engine
    nic = lab.nic()
    sh("ip", "addr", "add", "192.0.2.77/24", "dev", nic.name)
    sh("ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", nic.name)
    device = interface_device_name(nic.name)
    params = {
        "interface": {"name": "eth99", "mtu": 1400},
        "routes": [{"destination": "203.0.113.0/24", "gateway": "192.0.2.254"}],
    }
    obj = claim("c1", [("nic", DRIVER, device)], configs=[opaque("FromClaim", params)])
    obj = server.put_claim(obj)
    meta = obj["metadata"]
    result = eng.prepare([ClaimRef(meta["namespace"], meta["uid"], meta["name"])])
    assert not result[meta["uid"]].error, result
    (record,) = store.plans_for_claim(meta["uid"])
    plan = AttachPlan.from_json(json.dumps(record.plan))
    assert plan.host is not None and plan.pod is not None
    assert plan.host.addresses == ("192.0.2.77/24",)
    assert plan.pod.name == "eth99" and plan.pod.mtu == 1400
    # Host routes are replicated beside the configured one; link-scope routes come first.
    dests = [r.destination for r in plan.pod.routes]
    assert dests[0] == "192.0.2.0/24"
    assert dests.index("203.0.113.0/24") < dests.index("198.51.100.0/24")

    pod_ns, pod_path = lab.netns()
    attach([plan], pod_path)
    assert link(pod_ns, "eth99")["mtu"] == 1400
    assert addrs(pod_ns, "eth99") == {"192.0.2.77/24"}
    assert {r["dst"] for r in routes(pod_ns, "eth99")} >= {"203.0.113.0/24", "198.51.100.0/24"}
    detach([plan], pod_path)
    assert addrs(None, nic.name) == {"192.0.2.77/24"}
    assert "198.51.100.0/24" in {r["dst"] for r in routes(None, nic.name)}


def test_unknown_device_and_vf_mtu_are_claim_errors(
    lab: Lab, tmp_path: Path, engine: tuple[PrepareEngine, ApiServerEmulator, StateStore]
) -> None:
    eng, server, store = engine
    obj = claim("c2", [("nic", DRIVER, "no-such-nic")])
    obj = server.put_claim(obj)
    meta = obj["metadata"]
    result = eng.prepare([ClaimRef(meta["namespace"], meta["uid"], meta["name"])])
    assert "device no-such-nic: not found on this node" in result[meta["uid"]].error
    assert store.plans_for_claim(meta["uid"]) == []

    # An SR-IOV VF whose PF has MTU 1500, asked for 9000 (fixture sysfs tree).
    root = tmp_path / "sys"
    vf = root / "bus" / "pci" / "devices" / "0000:3b:02.0"
    (vf / "net" / "ens1f0v0").mkdir(parents=True)
    pf_net = vf / "physfn" / "net" / "ens1f0"
    pf_net.mkdir(parents=True)
    (pf_net / "mtu").write_text("1500\n")
    builder = NetnsPlanBuilder(locator=SysfsDeviceLocator(root))
    from knd.api.config import decode

    with pytest.raises(ClaimError, match=r"interface\.mtu 9000 exceeds the MTU 1500"):
        builder.build("pci-0000-3b-02-0", "pod", {}, "nic", decode({"interface": {"mtu": 9000}}))


def test_locator_resolves_pci_and_rdma_only_devices(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    pf = root / "bus" / "pci" / "devices" / "0000:8a:00.0"
    (pf / "net" / "gpu0rdma0").mkdir(parents=True)
    (pf / "infiniband" / "mlx5_0").mkdir(parents=True)
    ib_only = root / "bus" / "pci" / "devices" / "0000:8b:00.0" / "infiniband" / "mlx5_1"
    ib_only.mkdir(parents=True)
    (root / "class" / "infiniband" / "erdma_0").mkdir(parents=True)
    loc = SysfsDeviceLocator(root)
    a = loc.locate("pci-0000-8a-00-0")
    assert a is not None and (a.ifname, a.rdma_device, a.pci_address) == (
        "gpu0rdma0",
        "mlx5_0",
        "0000:8a:00.0",
    )
    b = loc.locate("pci-0000-8b-00-0")
    assert b is not None and (b.ifname, b.rdma_device) == (None, "mlx5_1")
    c = loc.locate(interface_device_name("erdma_0"))
    assert c is not None and (c.ifname, c.rdma_device) == (None, "erdma_0")
    assert loc.locate("pci-0000-8c-00-0") is None
    assert loc.locate("../../etc") is None
    builder = NetnsPlanBuilder(locator=loc)
    from knd.api.config import decode

    with pytest.raises(ClaimError, match=r"RDMA-only.*interface\.name"):
        builder.build("pci-0000-8b-00-0", "pod", {}, "r", decode({"interface": {"name": "x"}}))
