"""Device identity (permanent MAC, PCI address, else MAC and the names the kernel uses) and the
host state captured again after a node reboot, over scripted link tables."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from knd.api.config import decode
from knd.driver.reconcile import REBOOT_LOST_REASON, recapture_after_reboot
from knd.driver.restore_records import RestoreRecord, RestoreRecords
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.netns.builder import build_plan
from knd.netns.hoststate import HostState
from knd.netns.plan import AttachPlan, HostSide, Toggle
from knd.netns.rawlink import LinkFacts
from knd.netns.restore import match_link, same_device

PERM = "0c:42:a1:00:00:01"
PCI = "0000:8a:00.0"


def host(**kw: object) -> HostSide:
    base: dict[str, object] = {
        "name": "ens1",
        "ifindex": 7,
        "mac": "02:00:00:00:00:07",
        "mtu": 1500,
        "up": True,
    }
    base.update(kw)
    return HostSide(**base)  # type: ignore[arg-type]


def test_strong_identity_wins_over_name_and_mac() -> None:
    h = host(perm_mac=PERM)
    impostor = LinkFacts(7, "ens1", "02:00:00:00:00:07", perm_mac="0c:42:a1:00:00:02")
    real = LinkFacts(12, "renamed0", "0a:0b:0c:0d:0e:0f", perm_mac=PERM)
    assert not same_device(impostor, h)
    assert same_device(real, h)
    assert match_link([impostor, real], h) == 12


def test_pci_address_identifies_a_device_without_permanent_mac() -> None:
    h = host(pci_address=PCI)
    other = LinkFacts(7, "ens1", "02:00:00:00:00:07", parent_dev="0000:8a:00.1")
    mine = LinkFacts(9, "dev4", "02:00:00:00:00:99", parent_dev=PCI)
    assert match_link([other, mine], h) == 9


def test_weak_identity_needs_the_mac_and_a_known_name() -> None:
    h = host()
    # right MAC under an arbitrary name: not trusted (could be a macvlan or a bond member)
    assert match_link([LinkFacts(9, "something", "02:00:00:00:00:07")], h) is None
    # the kernel's names for a NIC handed back from a destroyed netns
    assert match_link([LinkFacts(9, "dev12", "02:00:00:00:00:07")], h) == 9
    assert (
        match_link([LinkFacts(9, "net1", "02:00:00:00:00:aa")], h, "net1", "02:00:00:00:00:aa") == 9
    )
    # the captured name with another MAC: another device
    assert match_link([LinkFacts(7, "ens1", "02:00:00:00:00:08")], h) is None


def _stored(tmp_path: Path, h: HostSide) -> tuple[StateStore, RestoreRecords, AttachPlan]:
    store = StateStore(tmp_path / "state.db", boot_id="boot-1")
    records = RestoreRecords(tmp_path / "records")
    plan = build_plan("dev-a", "pod-1", decode({"interface": {"name": "net1"}}), HostState(host=h))
    row = PlanRecord("c-1", "node", "dev-a", "nic", "pod-1", json.loads(plan.to_json()))
    records.write(RestoreRecord("c-1", "ns", "c1", "pod-1", "node", "dev-a", "nic", row.plan))
    store.save_prepared(
        ClaimRecord("c-1", "ns", "c1", "pod-1", time.time(), {}),
        PodRecord("pod-1", "ns", "p"),
        [row],
    )
    store.record_attach("pod-1", "/run/netns/old-boot")
    store.close()
    return StateStore(tmp_path / "state.db", boot_id="boot-2"), records, plan


def test_after_a_reboot_host_state_is_captured_again_by_identity(tmp_path: Path) -> None:
    old = host(perm_mac=PERM, addresses=("10.0.0.7/24",), features=(Toggle("rx-gro-hw", True),))
    store, records, plan = _stored(tmp_path, old)
    assert store.rebooted and store.attached_pods() == []  # netns of the old boot forgotten
    captured: list[str] = []

    def capture(ifname: str) -> HostSide:
        captured.append(ifname)
        return host(
            name=ifname, ifindex=31, perm_mac=PERM, addresses=("10.0.5.7/24",),
            features=(Toggle("rx-gro-hw", False), Toggle("tso", True)),
        )  # fmt: skip

    links = [
        LinkFacts(7, "ens1", "02:00:00:00:00:07", perm_mac="0c:42:a1:00:00:02"),  # an impostor
        LinkFacts(31, "ens9", "02:00:00:00:00:07", perm_mac=PERM),
    ]
    seen: list[tuple[str, str]] = []
    report = recapture_after_reboot(
        store,
        records,
        capture,
        lambda: links,
        report=lambda r, reason, _m: seen.append((r.device, reason)),
    )
    assert captured == ["ens9"]
    assert report.recaptured == ["dev-a: ens9"] and not report.errors and not seen
    (row,) = store.all_plans()
    new = AttachPlan.from_json(json.dumps(row.plan))
    assert new.host is not None and plan.host is not None
    assert (new.host.name, new.host.ifindex, new.host.addresses) == ("ens9", 31, ("10.0.5.7/24",))
    assert new.host.features == ()  # only toggles the pod changes are kept (none here)
    assert new.pod == plan.pod
    record = records.get("node", "dev-a")
    assert record is not None and dict(record.plan) == dict(row.plan)
    store.close()


def test_after_a_reboot_a_missing_device_is_reported_not_replayed(tmp_path: Path) -> None:
    store, records, plan = _stored(tmp_path, host(perm_mac=PERM))
    before = store.all_plans()
    seen: list[tuple[str, str]] = []
    host_side = plan.host
    assert host_side is not None
    report = recapture_after_reboot(
        store,
        records,
        lambda name: dataclasses.replace(host_side, name=name),
        lambda: [LinkFacts(7, "ens1", "02:00:00:00:00:07", perm_mac="0c:42:a1:00:00:02")],
        report=lambda r, reason, _m: seen.append((r.device, reason)),
    )
    assert seen == [("dev-a", REBOOT_LOST_REASON)]
    assert "not on this node after the reboot" in report.errors[0] and PERM in report.errors[0]
    assert store.all_plans() == before
    store.close()


@pytest.mark.parametrize("loss", ["missing", "torn"])
def test_after_a_reboot_a_record_lost_with_the_power_is_written_again(
    tmp_path: Path, loss: str
) -> None:
    """Records are not fsync'd: a power loss may take one (or leave it empty) while the
    fsync'd store keeps the claim. The reboot path writes it again from the store, so the
    device never moves without one."""
    store, records, _ = _stored(tmp_path, host(perm_mac=PERM))
    path = records._path("node", "dev-a")
    if loss == "missing":
        path.unlink()
    else:
        path.write_bytes(b"")
    links = [LinkFacts(31, "ens9", "02:00:00:00:00:07", perm_mac=PERM)]
    report = recapture_after_reboot(
        store, records, lambda name: host(name=name, ifindex=31, perm_mac=PERM), lambda: links
    )
    assert report.recaptured == ["dev-a: ens9"] and not report.errors
    record = records.get("node", "dev-a")
    (row,) = store.all_plans()
    assert record is not None
    assert (record.claim_uid, record.namespace, record.name, record.pod_uid) == (
        "c-1", "ns", "c1", "pod-1",
    )  # fmt: skip
    assert dict(record.plan) == dict(row.plan) and not record.released
    store.close()
