"""Sharing a device between sub-interface claims, bounded by its published share count
(`--device-shares`, DRA consumable capacity): the ResourceSlice form, discovery and the attribute
budget, snapshots, the prepare-side limit (also under a race past the first check), the shareID
of status entries, and the flag."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubelet_claims import DRIVER, POOL, claim, opaque, ref

from knd.api import attributes as attr
from knd.api.config import NetworkConfig
from knd.driver.claim_api import KubeClaimApi
from knd.driver.prepare import PrepareEngine
from knd.driver.snapshots import DeviceSnapshots, merge
from knd.driver.status_writer import DeviceStatus, device_entry, with_share_ids
from knd.driver.store import StateStore
from knd.host import pciids
from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import Options, discover
from knd.inventory.model import Device
from knd.kubelet.types import ClaimRef
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.sysfs_fixture import build_gpu_node, build_infiniband

pytestmark = pytest.mark.unit

CHILD = {"subInterface": {"type": "macvlan"}, "interface": {"name": "net1"}}


class _ChildBuilder:
    def build(
        self, device_name: str, pod_uid: str, claim: Any, request: str, config: NetworkConfig
    ) -> dict[str, Any]:
        sub = config.sub_interface
        return {"device": device_name, "sub": None if sub is None else {"kind": sub.type}}


def _shared_claim(apiserver: ApiServerEmulator, name: str, device: str = "eth1") -> ClaimRef:
    obj = claim(name, [("nic", DRIVER, device)], configs=[opaque("FromClaim", CHILD)])
    for r in obj["status"]["allocation"]["devices"]["results"]:
        r["shareID"] = str(uuid.uuid4())
        r["consumedCapacity"] = {attr.SHARES: "1"}
    return ClaimRef(*ref(apiserver.put_claim(obj)))


def _engine(store: StateStore, kube_api: KubeClaimApi, shares: int) -> PrepareEngine:
    return PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=kube_api,
        events=kube_api,
        plan_builder=_ChildBuilder(),
        max_shares=shares,
    )


def test_a_shareable_device_in_resourceslice_form() -> None:
    plain = Device("eth1", {attr.IF_NAME: "eth1"})
    assert "allowMultipleAllocations" not in plain.wire() and "capacity" not in plain.wire()
    wire = Device("eth1", {attr.IF_NAME: "eth1"}, shares=4).wire()
    assert wire["allowMultipleAllocations"] is True
    assert wire["capacity"] == {
        "dra.net/shares": {
            "value": "4",
            "requestPolicy": {"default": "1", "validRange": {"min": "1", "step": "1"}},
        }
    }
    # One share: no step (the API requires min + step <= value).
    one = Device("eth1", {}, shares=1).wire()["capacity"]["dra.net/shares"]
    assert one == {"value": "1", "requestPolicy": {"default": "1", "validRange": {"min": "1"}}}


def test_discovery_marks_netdev_devices_shareable_within_the_budget(tmp_path: Path) -> None:
    no_ids = pciids.load(Path("/nonexistent/pci.ids"))
    build_infiniband(tmp_path / "ib")
    found = discover(SysfsRoot(tmp_path / "ib"), no_ids, None, Options(shares=3)).by_name()
    with_netdev = [d for d in found.values() if attr.IF_NAME in d.attributes]
    rdma_only = [d for d in found.values() if attr.IF_NAME not in d.attributes]
    assert with_netdev and rdma_only  # ib0's port has a netdev; mlx5_1 and mlx4_0 do not
    assert all(d.shares == 3 for d in with_netdev)
    assert all(d.shares == 0 for d in rdma_only)  # no netdev: no sub-interface parent
    off = discover(SysfsRoot(tmp_path / "ib"), no_ids, None, Options()).by_name()
    assert all(d.shares == 0 for d in off.values())
    # The capacity takes one of the 32 attribute+capacity slots: a device that had exactly 32
    # attributes loses its least valuable one when it becomes shareable.
    build_gpu_node(tmp_path / "gpu")

    def many(name: str, attrs: Any) -> dict[str, Any]:
        return {f"example.com/x{i}": i for i in range(40)}

    for shares in (0, 2):
        devs = discover(
            SysfsRoot(tmp_path / "gpu"), no_ids, None, Options(enrich=many, shares=shares)
        ).devices
        for d in devs:
            w = d.wire()
            assert len(w["attributes"]) + len(w.get("capacity", {})) <= 32, d.name
            if d.shares:
                assert len(w["attributes"]) == 31
                assert attr.IF_NAME in w["attributes"]  # valuable ones stay


def test_snapshots_keep_the_share_count(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    try:
        snaps = DeviceSnapshots(store)
        snaps.record("uid-1", [Device("eth1", {attr.IF_NAME: "eth1"}, shares=2)])
        raw = store.meta_with_prefix("snapshot/")
        assert len(raw) == 1
        from knd.driver.snapshots import _decode

        decoded = _decode(next(iter(raw.values())))
        assert decoded is not None and decoded.shares == 2
        # live without ifName (the netdev is in a pod) + snapshot: still shareable
        live = [Device("eth1", {attr.PCI_ADDRESS: "0000:11:00.0"})]
        merged = merge(live, [decoded])
        assert merged[0].shares == 2 and merged[0].attributes[attr.IF_NAME] == "eth1"
    finally:
        store.close()


def test_prepare_refuses_the_claim_past_the_share_count_and_admits_it_when_one_leaves(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    eng = _engine(store, kube_api, shares=2)
    a, b, c = (_shared_claim(apiserver, n) for n in ("share-a", "share-b", "share-c"))
    results = eng.prepare([a, b])
    assert results[a.uid].error == "" and results[b.uid].error == ""
    assert results[a.uid].devices[0].share_id  # the shareID goes back to the kubelet
    err = eng.prepare([c])[c.uid].error
    assert "already has sub-interfaces for 2 claims" in err and "--device-shares 2" in err
    assert "default/share-a" in err and "default/share-b" in err
    assert store.claim(c.uid) is None  # nothing stored for the refused claim
    assert eng.unprepare([a]) == {a.uid: ""}
    assert eng.prepare([c])[c.uid].error == ""
    # A claim on another device is not counted against eth1.
    other = _shared_claim(apiserver, "share-d", device="eth2")
    assert eng.prepare([other])[other.uid].error == ""


def test_without_a_share_count_sharing_is_unbounded_as_before(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    eng = _engine(store, kube_api, shares=0)
    refs = [_shared_claim(apiserver, f"free-{i}") for i in range(5)]
    assert all(r.error == "" for r in eng.prepare(refs).values())


def test_a_stale_sharer_does_not_hold_a_share(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    eng = _engine(store, kube_api, shares=1)
    a = _shared_claim(apiserver, "gone")
    assert eng.prepare([a])[a.uid].error == ""
    apiserver.delete_claim("default", "gone")  # deleted while knd was not looking
    b = _shared_claim(apiserver, "next")
    assert eng.prepare([b])[b.uid].error == ""
    assert store.claim(a.uid) is None  # released as stale


def test_the_count_is_checked_again_right_before_the_store_write(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    # Two prepares that both passed the first check (as two concurrent calls can): the second
    # store write is refused, so the share count holds even then.
    eng = _engine(store, kube_api, shares=1)
    a, b = _shared_claim(apiserver, "race-a"), _shared_claim(apiserver, "race-b")
    eng._check_owner = lambda *args, **kwargs: None  # type: ignore[method-assign]
    assert eng.prepare([a])[a.uid].error == ""
    err = eng.prepare([b])[b.uid].error
    assert "already has sub-interfaces for 1 claims" in err
    assert store.claim(b.uid) is None


def test_one_claim_with_two_shares_of_one_device_is_refused(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    eng = _engine(store, kube_api, shares=4)
    obj = claim(
        "twice",
        [("nic-a", DRIVER, "eth1"), ("nic-b", DRIVER, "eth1")],
        configs=[opaque("FromClaim", CHILD)],
    )
    for r in obj["status"]["allocation"]["devices"]["results"]:
        r["shareID"] = str(uuid.uuid4())
    r = ClaimRef(*ref(apiserver.put_claim(obj)))
    err = eng.prepare([r])[r.uid].error
    assert "allocated to this claim twice" in err


def test_status_entries_carry_the_devices_share_id() -> None:
    share = str(uuid.uuid4())
    result = [
        {"pool": POOL, "device": "eth1", "shareID": share},
        {"pool": POOL, "device": "eth2"},
    ]
    done = with_share_ids(
        [DeviceStatus(POOL, "eth1"), DeviceStatus(POOL, "eth2"), DeviceStatus(POOL, "eth3")],
        result,
    )
    assert [s.share_id for s in done] == [share, None, None]
    assert device_entry(DRIVER, done[0])["shareID"] == share
    assert "shareID" not in device_entry(DRIVER, done[1])


def test_the_device_shares_flag() -> None:
    import argparse

    from knd.driver.options import OptionsError, add_arguments, resolve

    def opts(*argv: str) -> Any:
        p = argparse.ArgumentParser()
        add_arguments(p)
        return resolve(p.parse_args(list(argv)), environ={"NODE_NAME": "n1"})

    assert opts().device_shares == 0
    assert opts("--device-shares", "8").device_shares == 8
    with pytest.raises(OptionsError, match=r"--device-shares must be 0\.\.4096, got -1"):
        opts("--device-shares", "-1")
    with pytest.raises(OptionsError, match="--device-shares"):
        opts("--device-shares", "100000")
