"""knd's NRI hooks over a real SQLite store with the netns layer replaced by recorders: what
each hook executes, refuses, reports and never does (prune, fail the runtime on stop)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import knd.driver.hooks as hooks_mod
from knd.api.config import decode
from knd.driver.events import ObjectRef
from knd.driver.hooks import NetworkHooks, NullLeases, NullStatus
from knd.driver.metrics import DriverMetrics
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.netns.attach import Attached
from knd.netns.builder import build_plan
from knd.netns.detach import Detached
from knd.netns.errors import AttachError
from knd.netns.hoststate import HostState
from knd.netns.plan import AttachPlan, CharDevice, CpuPlacement, HostSide
from knd.netns.steps import StepObserver
from knd.nri.errors import HookError
from knd.nri.types import ContainerInfo, ContainerUpdate, PodInfo
from tests.step_faults import StepLog
from tests.unit.fake_status import FakeStatus

POD_UID = "0d9e7c1a-pod"
CHARS = (
    CharDevice("/dev/infiniband/rdma_cm", "c", 10, 58),
    CharDevice("/dev/infiniband/uverbs0", "c", 231, 192),
)


def plan(device: str, ifname: str, rdma: bool = False) -> AttachPlan:
    host = HostSide(
        name=ifname,
        ifindex=7,
        mac="02:00:00:00:00:07",
        mtu=1500,
        up=True,
        addresses=("10.0.0.7/24",),
    )
    state = HostState(
        host=host, rdma_link="mlx5_0" if rdma else None, rdma_char_devices=CHARS if rdma else ()
    )
    cfg = decode({"interface": {"name": f"net-{ifname}"[:15]}})
    return build_plan(device, POD_UID, cfg, state)


class Recorder:
    def __init__(self) -> None:
        self.attached: list[tuple[list[str], str]] = []
        self.detached: list[tuple[list[str], str | None]] = []
        self.fail: AttachError | None = None
        self.detach_errors: tuple[str, ...] = ()

    def attach(self, plans: Sequence[AttachPlan], netns: str) -> list[Attached]:
        if self.fail is not None:
            raise self.fail
        self.attached.append(([p.device for p in plans], netns))
        return [
            Attached(p.device, p.pod.name if p.pod else None, "02:00:00:00:00:07", ("10.0.0.7/24",))
            for p in plans
        ]

    def detach(self, plans: Sequence[AttachPlan], netns: str | None) -> list[Detached]:
        self.detached.append(([p.device for p in plans], netns))
        return [Detached(p.device, "returned", self.detach_errors) for p in plans]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "knd.db")
    claim = ClaimRecord("claim-1", "ns", "c1", POD_UID, time.time(), {})
    plans = [
        PlanRecord("claim-1", "node", d, "nic", POD_UID, json.loads(p.to_json()))
        for d, p in (
            ("dev-a", plan("dev-a", "eth1", rdma=True)),
            ("dev-b", plan("dev-b", "eth2", rdma=True)),
        )
    ]
    s.save_prepared(claim, PodRecord(POD_UID, "ns", "p1"), plans)
    try:
        yield s
    finally:
        s.close()


def pod(netns: str | None = "/var/run/netns/cni-1", uid: str = POD_UID) -> PodInfo:
    return PodInfo(id="sb1", uid=uid, name="p1", namespace="ns", netns=netns)


def hooks(
    store: StateStore,
    rec: Recorder,
    status: FakeStatus | None = None,
    links: set[str] | None = None,
    metrics: DriverMetrics | None = None,
    gone: set[str] | None = None,
) -> NetworkHooks:
    return NetworkHooks(
        store=store,
        status=status if status is not None else NullStatus(),
        metrics=metrics if metrics is not None else DriverMetrics(),
        leases=NullLeases(),
        attach_fn=rec.attach,
        detach_fn=rec.detach,
        host_links=lambda: links or set(),
        netns_exists=lambda path: path not in (gone or set()),  # fake paths exist unless gone
    )


def test_run_attaches_all_devices_records_netns_and_queues_ready_status(
    store: StateStore,
) -> None:
    rec, status = Recorder(), FakeStatus()
    hooks(store, rec, status).run_pod_sandbox(pod())
    assert rec.attached == [(["dev-a", "dev-b"], "/var/run/netns/cni-1")]
    record = store.pod(POD_UID)
    assert record is not None and record.netns == "/var/run/netns/cni-1"
    assert record.last_nri_activity is not None
    ((ns, name, devices),) = status.submitted
    assert (ns, name) == ("ns", "c1")
    assert [d.device for d in devices] == ["dev-a", "dev-b"]
    conds = {c.type: c for c in devices[0].conditions}
    assert conds["Ready"].status and conds["NetworkReady"].status
    assert devices[0].network is not None and devices[0].network.ips == ("10.0.0.7/24",)


def test_pod_without_plans_is_a_noop(store: StateStore) -> None:
    rec = Recorder()
    h = hooks(store, rec)
    other = pod(uid="no-claims")
    h.run_pod_sandbox(other)
    h.stop_pod_sandbox(other)
    assert h.create_container(other, ContainerInfo("c", "sb1", "work")) is None
    assert rec.attached == [] and rec.detached == []


def test_host_network_pod_is_refused(store: StateStore) -> None:
    with pytest.raises(HookError, match="host network"):
        hooks(store, Recorder()).run_pod_sandbox(pod(netns=None))


def test_failed_attach_fails_the_sandbox_with_device_and_step(store: StateStore) -> None:
    rec, status, metrics = Recorder(), FakeStatus(), DriverMetrics()
    rec.fail = AttachError("dev-b", "route", OSError(101, "Network is unreachable"))
    with pytest.raises(HookError) as info:
        hooks(store, rec, status, metrics=metrics).run_pod_sandbox(pod())
    assert "dev-b" in str(info.value) and "route" in str(info.value)
    ((_, _, devices),) = status.submitted
    assert all(not d.conditions[0].status for d in devices)
    assert devices[0].conditions[0].reason == "NetworkDeviceAttachFailed"
    registry = metrics.registry
    assert registry.get_sample_value("knd_driver_attach_failures_total", {"step": "route"}) == 1
    assert registry.get_sample_value("knd_driver_attach_rollbacks_total") == 1
    record = store.pod(POD_UID)
    assert record is not None and record.netns is None


def test_create_container_injects_rdma_char_devices_once(store: StateStore) -> None:
    adjust = hooks(store, Recorder()).create_container(pod(), ContainerInfo("c", "sb1", "work"))
    assert adjust is not None
    assert [(d.path, d.major, d.minor, d.kind, d.file_mode) for d in adjust.devices] == [
        ("/dev/infiniband/rdma_cm", 10, 58, "c", 0o666),
        ("/dev/infiniband/uverbs0", 231, 192, "c", 0o666),
    ]


def test_stop_uses_recorded_netns_and_never_raises(store: StateStore) -> None:
    rec, metrics = Recorder(), DriverMetrics()
    h = hooks(store, rec, metrics=metrics)
    h.run_pod_sandbox(pod())
    rec.detach_errors = ("address 10.0.0.7/24: EEXIST",)
    h.stop_pod_sandbox(pod(netns=None))  # containerd 1.7 sends no netns on stop
    assert rec.detached == [(["dev-a", "dev-b"], "/var/run/netns/cni-1")]
    assert (
        metrics.registry.get_sample_value("knd_driver_detach_failures_total", {"step": "returned"})
        == 2
    )
    h.remove_pod_sandbox(pod())
    record = store.pod(POD_UID)
    assert record is not None and record.netns is None
    assert store.plans_for_pod(POD_UID), "plans stay until NodeUnprepareResources"


def test_corrupt_plan_fails_run_but_not_stop(store: StateStore, tmp_path: Path) -> None:
    store._db.execute(
        "UPDATE plans SET plan = ? WHERE device = 'dev-b'",
        (json.dumps({"version": 1, "device": "dev-b", "pod": {"name": "../x"}}),),
    )
    store._db.commit()
    rec = Recorder()
    h = hooks(store, rec)
    with pytest.raises(HookError, match="stored plan of device dev-b is unusable"):
        h.run_pod_sandbox(pod())
    h.stop_pod_sandbox(pod())
    assert rec.attached == [] and rec.detached == []


def test_synchronize_leaves_attached_pods_alone_and_prunes_nothing(store: StateStore) -> None:
    rec, status = Recorder(), FakeStatus()
    h = hooks(store, rec, status, links={"lo"})
    h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
    h.synchronize([pod(netns="/var/run/netns/cni-9"), pod(uid="stranger")], [])
    assert h.last_sync.known_pods == 1
    assert h.last_sync.misplaced == [] and h.last_sync.healed == []
    assert len(rec.attached) == 1, "an attached pod is not attached again"
    # ... but its Ready status is re-asserted (a write lost with a killed daemon catches up).
    assert len(status.submitted) == 2
    again = {c.type: c for c in status.submitted[1][2][0].conditions}
    assert again["Ready"].status and status.submitted[1][2][0].network is not None
    h.synchronize([], [])
    assert store.plans_for_pod(POD_UID) and store.claim("claim-1") is not None


def test_synchronize_heals_a_pod_that_started_while_knd_was_down(store: StateStore) -> None:
    rec, status, metrics = Recorder(), FakeStatus(), DriverMetrics()
    h = hooks(store, rec, status, links={"eth1", "eth2", "lo"}, metrics=metrics)
    h.synchronize([pod(netns="/var/run/netns/cni-9"), pod(uid="stranger")], [])
    assert rec.attached == [(["dev-a", "dev-b"], "/var/run/netns/cni-9")]
    assert h.last_sync.healed == ["ns/p1"] and h.last_sync.heal_failed == []
    assert len(h.last_sync.misplaced) == 2
    record = store.pod(POD_UID)
    assert record is not None and record.netns == "/var/run/netns/cni-9"
    ((_, _, devices),) = status.submitted
    conds = {c.type: c for c in devices[0].conditions}
    assert conds["Ready"].status and "after a knd restart" in conds["Ready"].message
    assert (
        metrics.registry.get_sample_value("knd_driver_sync_heals_total", {"result": "attached"})
        == 1
    )
    # Healed once: the next Synchronize (devices now in the pod) changes nothing.
    h.host_links = lambda: {"lo"}
    h.synchronize([pod(netns="/var/run/netns/cni-9")], [])
    assert len(rec.attached) == 1 and h.last_sync.healed == []
    assert store.plans_for_pod(POD_UID) and store.claim("claim-1") is not None


def test_a_late_second_call_for_an_attached_sandbox_changes_nothing(store: StateStore) -> None:
    """A RunPodSandbox that outlived the runtime's deadline finishes; the reconnect's
    Synchronize (or a repeated RunPodSandbox) for the same netns must not move again or report
    the devices as failed."""
    rec, status, metrics = Recorder(), FakeStatus(), DriverMetrics()
    h = hooks(store, rec, status, links={"lo"}, metrics=metrics)
    h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
    h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
    h.synchronize([pod(netns="/var/run/netns/cni-9")], [])
    assert len(rec.attached) == 1
    assert h.last_sync.healed == [] and h.last_sync.heal_failed == []
    ready = [
        {c.type: c.status for c in d.conditions}["Ready"]
        for _, _, devices in status.submitted
        for d in devices
    ]
    assert ready and all(ready)
    # Still on the host under its name: the record alone does not count as attached.
    h.host_links = lambda: {"eth1", "lo"}
    h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
    assert len(rec.attached) == 2


class Warnings:
    """An EventSink stand-in: the Warning Events the hooks queue."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, str, str]] = []

    def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.queued.append((ref.name, reason, message))


def test_synchronize_reports_a_container_that_missed_its_rdma_devices(
    store: StateStore,
) -> None:
    rec, metrics, warnings = Recorder(), DriverMetrics(), Warnings()
    h = hooks(store, rec, links={"lo"}, metrics=metrics)
    h.events = warnings  # type: ignore[assignment]
    h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
    have = ContainerInfo("c1", "sb1", "main", 3, devices=tuple(d.path for d in CHARS))
    missed = ContainerInfo("c2", "sb1", "side", 3, devices=("/dev/infiniband/rdma_cm",))
    stranger = ContainerInfo("c3", "sb-other", "main", 3)
    updates = h.synchronize([pod(netns="/var/run/netns/cni-9")], [have, missed, stranger])
    assert updates == [], "device nodes cannot be added to a container that exists"
    (message,) = h.last_sync.missed_create
    assert "container side of pod ns/p1" in message and "/dev/infiniband/uverbs0" in message
    assert [(name, reason) for name, reason, _ in warnings.queued] == [("p1", "RDMADevicesMissing")]
    sample = metrics.registry.get_sample_value(
        "knd_driver_sync_container_catchups_total", {"what": "devices_missing"}
    )
    assert sample == 1


def test_synchronize_narrows_the_cpuset_of_a_container_that_missed_create(
    tmp_path: Path,
) -> None:
    numa = CpuPlacement(nodes=(1,), cpus=(2, 3), online_cpus=(0, 1, 2, 3))
    aligned = dataclasses.replace(plan("dev-a", "eth1"), placement=numa)
    s = StateStore(tmp_path / "numa.db")
    claim = ClaimRecord("claim-1", "ns", "c1", POD_UID, time.time(), {})
    record = PlanRecord("claim-1", "node", "dev-a", "nic", POD_UID, json.loads(aligned.to_json()))
    s.save_prepared(claim, PodRecord(POD_UID, "ns", "p1"), [record])
    metrics = DriverMetrics()
    try:
        h = hooks(s, Recorder(), links={"lo"}, metrics=metrics)
        h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
        unpinned = ContainerInfo("c1", "sb1", "main", 3, cpus="0-3", mems="0-1")
        narrowed = ContainerInfo("c2", "sb1", "side", 3, cpus="2-3", mems="1")
        updates = h.synchronize([pod(netns="/var/run/netns/cni-9")], [unpinned, narrowed])
        assert updates == [ContainerUpdate("c1", "2-3", "1")]
        sample = metrics.registry.get_sample_value(
            "knd_driver_sync_container_catchups_total", {"what": "cpuset"}
        )
        assert sample == 1
    finally:
        s.close()


def test_a_second_restart_keeps_the_heal_note(store: StateStore) -> None:
    rec = Recorder()
    hooks(store, rec, FakeStatus(), links={"eth1", "eth2"}).synchronize(
        [pod(netns="/var/run/netns/cni-9")], []
    )
    assert len(rec.attached) == 1
    # knd restarts again: a new daemon finds the pod attached and re-asserts its status
    status = FakeStatus()
    again = hooks(store, rec, status, links={"lo"})
    again.synchronize([pod(netns="/var/run/netns/cni-9")], [])
    assert len(rec.attached) == 1, "not attached again"
    ((_, _, devices),) = status.submitted
    for device in devices:
        ready = {c.type: c for c in device.conditions}["Ready"]
        assert ready.status and "after a knd restart" in ready.message


def test_a_stopped_sandbox_is_not_healed_after_a_restart(store: StateStore) -> None:
    """The pod was deleted while knd was down: the runtime may still list its stopped sandbox,
    whose netns is gone. No attach attempt, and no Ready=False on a claim that is going away."""
    rec, status, metrics = Recorder(), FakeStatus(), DriverMetrics()
    h = hooks(
        store, rec, status, links={"eth1", "eth2"}, metrics=metrics, gone={"/run/netns/cni-old"}
    )
    h.synchronize([pod(netns="/run/netns/cni-old")], [])
    assert rec.attached == [] and status.submitted == []
    assert h.last_sync.stopped == ["ns/p1"] and h.last_sync.heal_failed == []
    assert metrics.registry.get_sample_value(
        "knd_driver_sync_heals_total", {"result": "failed"}
    ) in (None, 0.0)


def test_synchronize_reattaches_a_sandbox_whose_attach_never_completed(
    store: StateStore,
) -> None:
    # Killed mid-attach: the device is in the pod (not on the host) but no netns was recorded.
    rec = Recorder()
    h = hooks(store, rec, FakeStatus(), links={"lo"})
    h.synchronize([pod(netns="/var/run/netns/cni-9")], [])
    assert rec.attached == [(["dev-a", "dev-b"], "/var/run/netns/cni-9")]
    assert h.last_sync.healed == ["ns/p1"] and h.last_sync.misplaced == []


def test_failed_heal_is_reported_on_the_claim_and_never_raises(store: StateStore) -> None:
    rec, status, metrics = Recorder(), FakeStatus(), DriverMetrics()
    rec.fail = AttachError("dev-a", "lookup", OSError("interface eth1 is gone"))
    h = hooks(store, rec, status, links={"lo"}, metrics=metrics)
    h.synchronize([pod(netns="/var/run/netns/cni-9")], [])
    assert h.last_sync.healed == [] and len(h.last_sync.heal_failed) == 1
    ((_, _, devices),) = status.submitted
    cond = devices[0].conditions[0]
    assert not cond.status and cond.reason == "NetworkDeviceAttachFailed"
    assert "knd was not running" in cond.message and "lookup" in cond.message
    assert metrics.registry.get_sample_value("knd_driver_sync_heals_total", {"result": "failed"})
    record = store.pod(POD_UID)
    assert record is not None and record.netns is None


def test_host_network_pod_running_with_claims_is_reported_at_synchronize(
    store: StateStore,
) -> None:
    rec, status = Recorder(), FakeStatus()
    h = hooks(store, rec, status, links={"eth1"})
    h.synchronize([pod(netns=None)], [])
    assert rec.attached == [] and len(h.last_sync.heal_failed) == 1
    ((_, _, devices),) = status.submitted
    assert "host network" in devices[0].conditions[0].message


def test_the_step_observer_reaches_the_built_in_attach(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hooks hand their step observer, and the node's addresses as read now, to every
    attach; none is the default."""
    calls: list[tuple[list[str], str, object, frozenset[str]]] = []

    def fake_attach(
        plans: Sequence[AttachPlan],
        netns: str,
        *,
        observer: StepObserver | None,
        node_addresses: frozenset[str],
    ) -> list[Attached]:
        calls.append(([p.device for p in plans], netns, observer, node_addresses))
        return [Attached(p.device, None, None, ()) for p in plans]

    monkeypatch.setattr(hooks_mod, "attach", fake_attach)
    observer, addresses = StepLog(), frozenset({"10.0.0.1"})
    watched = NetworkHooks(
        store=store,
        status=NullStatus(),
        metrics=DriverMetrics(),
        leases=NullLeases(),
        step_observer=observer,
        node_addresses=lambda: addresses,
    )
    watched.run_pod_sandbox(pod())
    plain = NetworkHooks(
        store=store, status=NullStatus(), metrics=DriverMetrics(), leases=NullLeases()
    )
    plain.run_pod_sandbox(pod(netns="/var/run/netns/cni-2"))
    assert calls == [
        (["dev-a", "dev-b"], "/var/run/netns/cni-1", observer, addresses),
        (["dev-a", "dev-b"], "/var/run/netns/cni-2", None, frozenset()),
    ]


def test_a_step_observer_needs_the_built_in_attach(store: StateStore) -> None:
    with pytest.raises(ValueError, match="step_observer"):
        NetworkHooks(
            store=store,
            status=NullStatus(),
            metrics=DriverMetrics(),
            leases=NullLeases(),
            attach_fn=Recorder().attach,
            step_observer=StepLog(),
        )


def test_synchronize_without_netns_keeps_an_attached_pod(store: StateStore) -> None:
    rec = Recorder()
    h = hooks(store, rec, FakeStatus(), links={"lo"})
    h.run_pod_sandbox(pod(netns="/var/run/netns/cni-9"))
    h.synchronize([pod(netns=None)], [])  # a runtime that does not report the netns here
    assert len(rec.attached) == 1 and h.last_sync.heal_failed == []
