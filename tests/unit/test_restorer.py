"""The restore guarantee over a real SQLite store and real pending-restore records, with the
netns layer replaced by a scripted detach (which device fails at which restore step, how
often) and a scripted host link table (what the kernel shows in the host).

The kernel's hand-back of a physical NIC from a destroyed netns is EMULATED here: the link
table simply starts listing the device under its pod-side name or `devN` with the MAC it had
in the pod. tests/netns/test_restore_guarantee.py emulates it with real links; the real
hand-back of a physical NIC is to be proved on a VM with an emulated PCI NIC
(not in this suite yet)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from knd.api.claims import ResourceClaim
from knd.api.config import decode
from knd.driver.errors import ClaimNotFoundError, TransientError
from knd.driver.hooks import NetworkHooks, NullLeases, NullStatus
from knd.driver.metrics import DriverMetrics
from knd.driver.prepare import PrepareEngine
from knd.driver.reconcile import RECONCILE_FAILED_REASON, rebuild_from_records, reconcile
from knd.driver.restore_records import RestoreRecord, RestoreRecords
from knd.driver.restorer import (
    DEVICE_LOST_REASON,
    HANDED_BACK_REASON,
    RESTORE_FAILED_REASON,
    Restorer,
)
from knd.driver.retry import Backoff
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.kubelet.types import ClaimRef
from knd.netns.builder import build_plan
from knd.netns.detach import Detached
from knd.netns.hoststate import HostState
from knd.netns.plan import AttachPlan, HostSide
from knd.netns.rawlink import LinkFacts
from knd.nri.types import PodInfo

POD = "pod-uid-1"
NETNS = "/run/netns/cni-test"
#: restore_host's steps, in order (knd.netns.restore)
RESTORE_STEPS = ("rename", "link", "sizes", "address", "up", "route", "rule", "neighbor")


def make_plan(device: str, ifname: str, mac: str, perm_mac: str | None = None) -> AttachPlan:
    host = HostSide(
        name=ifname, ifindex=7, mac=mac, mtu=1500, up=True, addresses=("10.0.0.7/24",),
        perm_mac=perm_mac,
    )  # fmt: skip
    cfg = decode({"interface": {"name": f"net{ifname}"[:15]}})
    return build_plan(device, POD, cfg, HostState(host=host))


class Kernel:
    """The scripted netns layer: `fail[device]` lists the restore steps that fail, one per
    detach call (then it succeeds); `links` is what a host link dump shows."""

    def __init__(self) -> None:
        self.fail: dict[str, list[str]] = {}
        self.calls: list[tuple[str, str | None]] = []
        self.links: list[LinkFacts] = []
        #: devices found nowhere (destroyed, or not handed back yet)
        self.gone: set[str] = set()
        self.lock = threading.Lock()

    def detach(self, plans: Sequence[AttachPlan], netns: str | None) -> list[Detached]:
        out = []
        with self.lock:
            for p in plans:
                self.calls.append((p.device, netns))
                steps = self.fail.get(p.device) or []
                if p.device in self.gone:
                    out.append(Detached(p.device, "gone"))
                elif steps:
                    step = steps.pop(0)
                    out.append(Detached(p.device, "returned", (f"{step}: injected failure",)))
                else:
                    out.append(Detached(p.device, "returned" if netns else "restored"))
        return out

    def host_links(self) -> list[LinkFacts]:
        return list(self.links)


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, record: PlanRecord, reason: str, message: str) -> None:
        self.seen.append((record.device, reason, message))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.db", boot_id="boot-1")
    try:
        yield s
    finally:
        s.close()


def prepare(
    store: StateStore, records: RestoreRecords, plans: dict[str, AttachPlan], claim: str = "c-1"
) -> list[PlanRecord]:
    rows = [
        PlanRecord(claim, "node", d, "nic", POD, json.loads(p.to_json())) for d, p in plans.items()
    ]
    claim_record = ClaimRecord(claim, "ns", claim, POD, time.time(), {})
    for r in rows:
        records.write(RestoreRecord(claim, "ns", claim, POD, r.pool, r.device, r.request, r.plan))
    store.save_prepared(claim_record, PodRecord(POD, "ns", "p1"), rows)
    return rows


def wait_for(cond: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def restorer_for(
    store: StateStore, records: RestoreRecords, kernel: Kernel, reports: Reports, **kw: object
) -> tuple[Restorer, DriverMetrics]:
    metrics = DriverMetrics()
    options: dict[str, object] = {"backoff": Backoff(0.01, 0.05), **kw}
    r = Restorer(
        store,
        records,
        detach_fn=kernel.detach,
        metrics=metrics,
        report=reports,
        host_links=kernel.host_links,
        **options,  # type: ignore[arg-type]
    )
    return r, metrics


def counter(metrics: DriverMetrics, path: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "knd_driver_restores_total", {"path": path, "result": result}
    )
    return value or 0.0


@pytest.mark.parametrize("step", RESTORE_STEPS)
def test_failed_stop_is_retried_with_backoff_until_home(
    store: StateStore, tmp_path: Path, step: str
) -> None:
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plans = {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")}
    rows = prepare(store, records, plans)
    store.record_attach(POD, NETNS)
    restorer, metrics = restorer_for(store, records, kernel, reports)
    kernel.fail["dev-a"] = [step, step]  # the stop and the first retry fail at `step`
    try:
        results = restorer.return_pod(POD, [(rows[0], plans["dev-a"])], NETNS)
        assert not results[0].home
        assert restorer.is_pending("node", "dev-a")
        assert wait_for(lambda: not restorer.is_pending("node", "dev-a"))
    finally:
        restorer.stop()
    assert len(kernel.calls) == 3, kernel.calls  # stop, failed retry, successful retry
    assert counter(metrics, "stop", "returned") == 1
    assert counter(metrics, "retry", "returned") == 1
    assert counter(metrics, "retry", "home") == 1
    assert metrics.registry.get_sample_value("knd_driver_restore_pending") == 0
    # reported once on the claim, and the record stays: the claim is still prepared
    assert [(d, r) for d, r, _ in reports.seen] == [("dev-a", RESTORE_FAILED_REASON)]
    assert step in reports.seen[0][2]
    assert records.get("node", "dev-a") is not None


def test_a_virtual_device_destroyed_with_its_netns_is_lost_once_never_retried(
    store: StateStore, tmp_path: Path
) -> None:
    """A veth (no permanent MAC, no PCI address) found nowhere was destroyed with its netns:
    one report, one count, no retry loop; its record goes at unprepare, without a problem."""
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plans = {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")}
    rows = prepare(store, records, plans)
    store.record_attach(POD, NETNS)
    restorer, metrics = restorer_for(store, records, kernel, reports)
    engine = PrepareEngine(
        driver="dra.net", store=store, reader=None, events=None,  # type: ignore[arg-type]
        records=records, restorer=restorer,
    )  # fmt: skip
    kernel.gone.add("dev-a")
    try:
        results = restorer.return_pod(POD, [(rows[0], plans["dev-a"])], NETNS)
        assert results[0].outcome == "gone" and not results[0].home
        assert not restorer.is_pending("node", "dev-a")
        time.sleep(0.2)  # four times the backoff cap: a retry would have run by now
        assert kernel.calls == [("dev-a", NETNS)]
        assert records.get("node", "dev-a") is not None  # the claim is still prepared
        assert engine.unprepare([ClaimRef("ns", "c-1", "c-1")]) == {"c-1": ""}
        assert records.get("node", "dev-a") is None
        assert not restorer.is_pending("node", "dev-a")
    finally:
        restorer.stop()
    assert counter(metrics, "stop", "lost") == 1
    assert counter(metrics, "stop", "gone") == 0
    assert metrics.registry.get_sample_value("knd_driver_restore_pending") == 0
    assert [(d, r) for d, r, _ in reports.seen] == [("dev-a", DEVICE_LOST_REASON)]
    assert "destroyed by the kernel" in reports.seen[0][2]


def test_a_physical_nic_found_nowhere_is_retried_until_the_kernel_returns_it(
    store: StateStore, tmp_path: Path
) -> None:
    """A NIC with a permanent MAC may still come back (hand-back, re-plug): never lost."""
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plan = make_plan("dev-a", "eth1", "02:00:00:00:00:0a", perm_mac="0c:42:a1:00:00:0a")
    rows = prepare(store, records, {"dev-a": plan})
    store.record_attach(POD, NETNS)
    restorer, metrics = restorer_for(store, records, kernel, reports)
    kernel.gone.add("dev-a")
    try:
        restorer.return_pod(POD, [(rows[0], plan)], NETNS)
        assert restorer.is_pending("node", "dev-a")
        assert wait_for(lambda: len(kernel.calls) >= 3)  # retried
        with kernel.lock:
            kernel.gone.discard("dev-a")  # the kernel handed it back
        assert wait_for(lambda: not restorer.is_pending("node", "dev-a"))
    finally:
        restorer.stop()
    assert counter(metrics, "stop", "gone") == 1
    assert counter(metrics, "retry", "home") == 1
    assert counter(metrics, "stop", "lost") + counter(metrics, "retry", "lost") == 0
    assert [(d, r) for d, r, _ in reports.seen] == [("dev-a", RESTORE_FAILED_REASON)]


def test_unprepare_brings_an_away_device_home_before_dropping_its_record(
    store: StateStore, tmp_path: Path
) -> None:
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plans = {
        "dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a"),
        "dev-b": make_plan("dev-b", "eth2", "02:00:00:00:00:0b"),
    }
    prepare(store, records, plans)
    store.record_attach(POD, NETNS)  # attached; StopPodSandbox never came
    restorer, _ = restorer_for(store, records, kernel, reports)
    engine = PrepareEngine(
        driver="dra.net", store=store, reader=None, events=None,  # type: ignore[arg-type]
        records=records, restorer=restorer,
    )  # fmt: skip
    kernel.fail["dev-b"] = ["move-back", "route"]
    try:
        errors = engine.unprepare([ClaimRef("ns", "c-1", "c-1")])
        assert errors == {"c-1": ""}  # kubelet can finish the pod
        assert store.claim("c-1") is None
        assert records.get("node", "dev-a") is None  # home: record dropped
        assert records.get("node", "dev-b") is not None  # away: kept until home
        assert sorted(kernel.calls[:2]) == [("dev-a", NETNS), ("dev-b", NETNS)]
        assert wait_for(lambda: records.get("node", "dev-b") is None)
    finally:
        restorer.stop()
    assert [c for c in kernel.calls if c[0] == "dev-b"][1:] != []  # retried


def test_unprepare_of_a_never_attached_claim_moves_nothing(
    store: StateStore, tmp_path: Path
) -> None:
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    prepare(store, records, {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")})
    restorer, _ = restorer_for(store, records, kernel, reports)
    engine = PrepareEngine(
        driver="dra.net", store=store, reader=None, events=None,  # type: ignore[arg-type]
        records=records, restorer=restorer,
    )  # fmt: skip
    assert engine.unprepare([ClaimRef("ns", "c-1", "c-1")]) == {"c-1": ""}
    assert kernel.calls == []
    assert records.get("node", "dev-a") is None


@pytest.mark.parametrize("name", ["neteth1", "dev7"], ids=["pod-side-name", "devN"])
def test_emulated_kernel_handback_is_noticed_and_restored(
    store: StateStore, tmp_path: Path, name: str
) -> None:
    """EMULATION of the kernel handing a physical NIC back when its pod netns is destroyed
    without StopPodSandbox: the host link table starts showing it (pod-side name or devN,
    the MAC it had in the pod). A link event pokes the restorer, which restores it."""
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plans = {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")}
    prepare(store, records, plans)
    store.record_attach(POD, NETNS)
    restorer, metrics = restorer_for(store, records, kernel, reports)
    kernel.links = [LinkFacts(3, "eth0", "02:aa:00:00:00:01")]
    try:
        restorer.start()
        assert restorer.check_handback() == []  # still in the pod: nothing to do
        assert kernel.calls == []
        kernel.links.append(LinkFacts(9, name, "02:00:00:00:00:0a"))
        restorer.poke()
        assert wait_for(lambda: counter(metrics, "handback", "home") == 1)
    finally:
        restorer.stop()
    assert kernel.calls == [("dev-a", None)]  # a host-only restore, by identity
    assert [(d, r) for d, r, _ in reports.seen] == [("dev-a", HANDED_BACK_REASON)]
    assert restorer.check_handback() == []  # home now: not restored again on the next event


def test_handback_ignores_a_link_with_the_name_but_not_the_identity(
    store: StateStore, tmp_path: Path
) -> None:
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plans = {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a", perm_mac="0c:42:a1:00:00:01")}
    prepare(store, records, plans)
    store.record_attach(POD, NETNS)
    restorer, _ = restorer_for(store, records, kernel, reports)
    # another NIC now holds the name and even the MAC, but not the permanent MAC
    kernel.links = [LinkFacts(9, "eth1", "02:00:00:00:00:0a", perm_mac="0c:42:a1:00:00:99")]
    assert restorer.check_handback() == []
    kernel.links.append(LinkFacts(10, "dev3", "02:00:00:00:00:0a", perm_mac="0c:42:a1:00:00:01"))
    assert restorer.check_handback() == ["dev-a"]


def test_stop_hook_hands_failures_to_the_restorer(store: StateStore, tmp_path: Path) -> None:
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    plans = {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")}
    prepare(store, records, plans)
    store.record_attach(POD, NETNS)
    restorer, metrics = restorer_for(store, records, kernel, reports)
    hooks = NetworkHooks(
        store=store, status=NullStatus(), metrics=metrics, leases=NullLeases(), restorer=restorer
    )
    kernel.fail["dev-a"] = ["address"]
    try:
        hooks.stop_pod_sandbox(PodInfo(id="sb", uid=POD, name="p1", namespace="ns", netns=None))
        assert kernel.calls[0] == ("dev-a", NETNS)  # the recorded netns (containerd 1.7)
        assert wait_for(lambda: counter(metrics, "retry", "home") == 1)
    finally:
        restorer.stop()


def test_reconcile_restores_vanished_pods_and_survives_errors(
    store: StateStore, tmp_path: Path
) -> None:
    """One pod's error (an unusable plan; a store error) never stops start-up: reported on the
    claim and counted; the other pods are still reconciled."""
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    good = {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")}
    prepare(store, records, good)
    store.record_attach(POD, NETNS)
    broken = PlanRecord("c-2", "node", "dev-z", "nic", "pod-2", {"version": 1, "bogus": True})
    store.save_prepared(
        ClaimRecord("c-2", "ns", "c-2", "pod-2", time.time(), {}),
        PodRecord("pod-2", "ns", "p2"),
        [broken],
    )
    store.record_attach("pod-2", "/run/netns/gone-2")
    restorer, metrics = restorer_for(store, records, kernel, reports)
    report = reconcile(
        store, restorer, metrics=metrics, report=reports, netns_exists=lambda _p: False
    )
    restorer.stop()
    assert report.pods == 2
    assert report.restored == ["dev-a: restored"]
    assert any("dev-z" in e and "unusable plan" in e for e in report.errors)
    assert ("dev-z", RECONCILE_FAILED_REASON) in [(d, r) for d, r, _ in reports.seen]
    assert metrics.registry.get_sample_value("knd_driver_reconcile_errors_total") == 1
    assert store.attached_pods() == []


def test_reconcile_survives_a_raising_restorer(store: StateStore, tmp_path: Path) -> None:
    records = RestoreRecords(tmp_path / "records")
    prepare(store, records, {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")})
    store.record_attach(POD, NETNS)

    class Exploding(Restorer):
        def restore_vanished(
            self, pod_uid: str, pairs: Sequence[tuple[PlanRecord, AttachPlan]]
        ) -> list[Detached]:
            raise RuntimeError("netlink socket exploded")

    reports = Reports()
    report = reconcile(
        store, Exploding(store, records), report=reports, netns_exists=lambda _p: False
    )
    assert report.errors and "netlink socket exploded" in report.errors[0]
    assert [(d, r) for d, r, _ in reports.seen] == [("dev-a", RECONCILE_FAILED_REASON)]


def test_records_are_bounded_and_bad_files_reported(tmp_path: Path) -> None:
    records = RestoreRecords(tmp_path / "records")
    good = RestoreRecord("c", "ns", "n", "p", "node", "dev-a", "nic", {"x": 1})
    records.write(good)
    assert records.get("node", "dev-a") == good
    (tmp_path / "records" / "junk.json").write_text("{not json")
    (tmp_path / "records" / "big.json").write_bytes(b" " * (300 * 1024))
    (tmp_path / "records" / "other.json").write_text(json.dumps({"version": 1, "claim_uid": 3}))
    loaded, problems = records.load()
    assert loaded == [good]
    assert len(problems) == 3
    assert any("larger than" in p for p in problems)
    assert any("claim_uid" in p for p in problems)
    assert oct((tmp_path / "records").stat().st_mode & 0o777) == "0o700"


class Claims:
    """The API server's claims, as `ClaimReader.get` sees them."""

    def __init__(self, live: dict[str, str], down: set[str]) -> None:
        self.live, self.down = live, down

    def get(self, namespace: str, name: str) -> ResourceClaim:
        if name in self.down:
            raise TransientError("connection refused")
        if name not in self.live:
            raise ClaimNotFoundError(f"{namespace}/{name} not found")
        return {"metadata": {"name": name, "namespace": namespace, "uid": self.live[name]}}


def test_an_emptied_store_is_rebuilt_from_records_and_the_api_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store is truncated to 0 bytes while three claims are prepared: the live claim is put
    back, the deleted claim's device is brought home, and the claim the API server cannot
    answer for is reported loudly with its records kept."""
    path = tmp_path / "state.db"
    records = RestoreRecords(tmp_path / "records")
    first = StateStore(path, boot_id="b")
    for claim, device in (("c-live", "dev-a"), ("c-gone", "dev-b"), ("c-unknown", "dev-c")):
        plan = make_plan(device, f"e{device[-1]}", "02:00:00:00:00:0a")
        prepare(first, records, {device: plan}, claim=claim)
    first.close()
    path.write_bytes(b"")
    store = StateStore(path, boot_id="b")
    assert store.created and store.claims() == []
    kernel, reports = Kernel(), Reports()
    restorer, metrics = restorer_for(store, records, kernel, reports)
    claims = Claims({"c-live": "c-live", "c-gone": "another-uid"}, down={"c-unknown"})
    with caplog.at_level("ERROR"):
        report = rebuild_from_records(store, records, claims, restorer, metrics=metrics)
    restorer.stop()
    assert report.rebuilt == ["ns/c-live"]
    assert [p.device for p in store.plans_for_claim("c-live")] == ["dev-a"]
    assert store.claim("c-gone") is None and store.claim("c-unknown") is None
    assert report.released == ["dev-b: restored"] and kernel.calls == [("dev-b", None)]
    assert records.get("node", "dev-b") is None  # home: record gone
    assert records.get("node", "dev-c") is not None  # kept for the next start
    assert len(report.errors) == 1 and "c-unknown" in report.errors[0]
    assert "connection refused" in report.errors[0]
    assert "emptied, truncated or replaced" in caplog.text
    assert metrics.registry.get_sample_value("knd_driver_reconcile_errors_total") == 1
    store.close()


def test_a_restart_never_resurrects_a_claim_unprepared_while_its_device_was_away(
    store: StateStore, tmp_path: Path
) -> None:
    """Unprepare while the device cannot be found: the record stays (the device must still
    come home) but is marked released, so the rebuild at the next start, even with the claim
    still on the API server, brings the device home instead of putting the claim back."""
    records = RestoreRecords(tmp_path / "records")
    kernel, reports = Kernel(), Reports()
    prepare(store, records, {"dev-a": make_plan("dev-a", "eth1", "02:00:00:00:00:0a")})
    store.record_attach(POD, NETNS)
    restorer, _ = restorer_for(store, records, kernel, reports, backoff=Backoff(60.0, 60.0))
    engine = PrepareEngine(
        driver="dra.net", store=store, reader=None, events=None,  # type: ignore[arg-type]
        records=records, restorer=restorer,
    )  # fmt: skip
    kernel.fail["dev-a"] = ["move-back"]
    assert engine.unprepare([ClaimRef("ns", "c-1", "c-1")]) == {"c-1": ""}
    restorer.stop()
    kept = records.get("node", "dev-a")
    assert kept is not None and kept.released and store.claim("c-1") is None
    # knd restarts: the claim still exists on the API server (same UID)
    again, _ = restorer_for(store, records, kernel, reports)
    report = rebuild_from_records(store, records, Claims({"c-1": "c-1"}, set()), again)
    again.stop()
    assert report.rebuilt == [] and store.claim("c-1") is None
    assert report.released == ["dev-a: restored"] and records.get("node", "dev-a") is None
