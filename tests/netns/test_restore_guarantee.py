"""The restore guarantee with real links, real netns moves and the real restorer: a fault at
each restore step is retried until the host state is complete, and a NIC the kernel hands
back from a destroyed netns is noticed through netlink link events and restored.

No device on this kernel survives its netns (a veth dies with it), so the kernel's hand-back
of a physical NIC is EMULATED: after the pod netns is deleted, a link appears in the host the
way the kernel returns a physical NIC (down, with the MAC it had in the pod, under its
pod-side name or `devN`). The real kernel's hand-back (Debian 6.1, a virtio-net PCI NIC under
qemu) proves the same path, under both names and with a fault at each restore step:
tests/vm/test_handback.py (`bash scripts/vm test`)."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import netns as pyroute2_netns

import knd.netns.attach as attach_mod
import knd.netns.detach as detach_mod
from knd.driver.metrics import DriverMetrics
from knd.driver.restore_records import RestoreRecord, RestoreRecords
from knd.driver.restorer import Restorer
from knd.driver.retry import Backoff
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.host.netlink_events import NetlinkEvents
from knd.netns.attach import attach
from knd.netns.plan import AttachPlan
from knd.netns.restore import restore_host
from knd.netns.steps import RestoreStep
from tests.step_faults import FailAt

from .conftest import Lab, addrs, link, link_absent, routes, sh
from .helpers import drop_rule, give_host_state, plan_for

POD = "pod-restore-1"


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.db", boot_id="boot-1")
    try:
        yield s
    finally:
        s.close()


def prepared(store: StateStore, records: RestoreRecords, plan: AttachPlan) -> PlanRecord:
    row = PlanRecord("c-1", "node", plan.device, "nic", POD, json.loads(plan.to_json()))
    records.write(RestoreRecord("c-1", "ns", "c1", POD, "node", plan.device, "nic", row.plan))
    store.save_prepared(
        ClaimRecord("c-1", "ns", "c1", POD, time.time(), {}), PodRecord(POD, "ns", "p1"), [row]
    )
    return row


def host_state(name: str, n: int) -> dict[str, Any]:
    facts = link(None, name)
    return {
        "mtu": facts["mtu"],
        "mac": facts["address"],
        "up": "UP" in facts["flags"],
        "addrs": addrs(None, name),
        "routes": sorted(
            json.dumps({k: r.get(k) for k in ("dst", "gateway", "table")}, sort_keys=True)
            for r in routes(None, name)
            if r.get("protocol") != "kernel" and not str(r.get("dst", "")).startswith("fe80")
        ),
        "rule": f"{1000 + n}:" in sh("ip", "rule", "show"),
        "neigh": "10." in sh("ip", "neigh", "show", "dev", name, "nud", "permanent"),
    }


@pytest.mark.parametrize("step", ["link", "sizes", "address", "up", "route", "rule", "neighbor"])
def test_a_fault_at_each_restore_step_is_retried_until_the_host_state_is_complete(
    lab: Lab, store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    nic = lab.nic()
    n = 40 + secrets.randbelow(40)
    give_host_state(nic, n)
    try:
        before = host_state(nic.name, n)
        pod_name = f"p{nic.name}"[:15]
        plan = plan_for(nic, {"interface": {"name": pod_name, "mtu": 1400}}, pod_uid=POD)
        _, path = lab.netns()
        records = RestoreRecords(tmp_path / "records")
        row = prepared(store, records, plan)
        attach([plan], path)
        store.record_attach(POD, path)
        faults = {"left": 1}

        def faulty(*args: Any, **kwargs: Any) -> list[str]:
            if faults["left"]:
                faults["left"] -= 1
                kwargs["observer"] = FailAt(RestoreStep(step))
            return restore_host(*args, **kwargs)

        monkeypatch.setattr(detach_mod, "restore_host", faulty)
        monkeypatch.setattr(attach_mod, "restore_host", faulty)
        metrics = DriverMetrics()
        restorer = Restorer(store, records, metrics=metrics, backoff=Backoff(0.05, 0.2))
        try:
            first = restorer.return_pod(POD, [(row, plan)], path)
            assert not first[0].home
            assert any(e.startswith(f"{step}: injected failure") for e in first[0].errors)
            assert restorer.is_pending("node", plan.device)
            assert wait_for(lambda: not restorer.is_pending("node", plan.device))
        finally:
            restorer.stop()
        assert host_state(nic.name, n) == before
        assert link_absent(path.rsplit("/", 1)[1], pod_name)
    finally:
        drop_rule(n)


@pytest.mark.parametrize("returned_as", ["pod-side-name", "devN"])
def test_emulated_kernel_handback_after_netns_destroyed_without_stop(
    lab: Lab, store: StateStore, tmp_path: Path, returned_as: str
) -> None:
    """EMULATION: the pod netns is destroyed without StopPodSandbox; the NIC comes back the way
    the kernel returns a physical NIC. Netlink link events make the restorer restore it."""
    nic = lab.nic()
    n = 80 + secrets.randbelow(40)
    give_host_state(nic, n)
    try:
        before = host_state(nic.name, n)
        pod_name = f"p{nic.name}"[:15]
        plan = plan_for(nic, {"interface": {"name": pod_name}}, pod_uid=POD)
        ns, path = lab.netns()
        records = RestoreRecords(tmp_path / "records")
        prepared(store, records, plan)
        attach([plan], path)
        store.record_attach(POD, path)
        metrics = DriverMetrics()
        restorer = Restorer(store, records, metrics=metrics, backoff=Backoff(0.05, 60.0))
        events = NetlinkEvents(restorer.poke)
        restorer.start()
        events.start()
        try:
            pyroute2_netns.remove(ns)  # the netns dies; this kernel destroys the veth with it
            assert wait_for(lambda: link_absent(None, nic.name))
            name = (
                pod_name
                if returned_as == "pod-side-name"
                else f"dev{secrets.randbelow(9000) + 1000}"
            )
            assert plan.host is not None
            # The kernel's hand-back, emulated: down, the MAC and MTU the device had in the pod
            # (a veth whose peer sits in a wire netns stands in for the physical NIC).
            wire, _ = lab.netns()
            sh(
                "ip", "link", "add", name, "address", plan.host.mac, "mtu", "1400",
                "type", "veth", "peer", "name", f"w{name}"[:15], "netns", wire,
            )  # fmt: skip
            lab.links.append(name)
            assert wait_for(lambda: not link_absent(None, nic.name)), "never restored"
            assert wait_for(lambda: host_state(nic.name, n) == before), host_state(nic.name, n)
            sample = metrics.registry.get_sample_value(
                "knd_driver_restores_total", {"path": "handback", "result": "home"}
            )
            assert sample == 1
        finally:
            events.stop()
            restorer.stop()
    finally:
        drop_rule(n)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_detach_handles_each_device_alone_and_closes_everything(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One device's unexpected exception never skips the others, and the netns session, the
    host netns fd and the sockets are closed (no fd leak) whatever happens."""
    nics = [lab.nic() for _ in range(3)]
    plans = [plan_for(nic, {"interface": {"name": f"eth{i + 1}"}}) for i, nic in enumerate(nics)]
    _, path = lab.netns()
    attach(plans, path)
    real = detach_mod._from_pod

    def exploding(plan: AttachPlan, session: Any, host_fd: int) -> Any:
        if plan.device == nics[1].name:
            raise RuntimeError("boom in the middle device")
        return real(plan, session, host_fd)

    monkeypatch.setattr(detach_mod, "_from_pod", exploding)
    before = _open_fds()
    results = detach_mod.detach(plans, path)
    assert _open_fds() == before
    assert [r.outcome for r in results] == ["returned", "failed", "returned"]
    assert "boom in the middle device" in results[1].errors[0]
    assert not link_absent(None, nics[0].name) and not link_absent(None, nics[2].name)
    monkeypatch.setattr(detach_mod, "_from_pod", real)
    assert detach_mod.detach([plans[1]], path)[0].outcome == "returned"  # a retry brings it


def test_detach_without_a_host_netns_fd_reports_every_device_failed(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    nic = lab.nic()
    plan = plan_for(nic)

    def no_fd() -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(detach_mod, "open_host_netns", no_fd)
    before = _open_fds()
    (result,) = detach_mod.detach([plan], None)
    assert _open_fds() == before
    assert result.outcome == "failed" and "Too many open files" in result.errors[0]


def test_unprepare_reaches_a_netns_whose_mount_is_gone_through_the_fd_knd_holds(
    lab: Lab, store: StateStore, tmp_path: Path
) -> None:
    """Seen on the real lab after a containerd restart: StopPodSandbox never came, the runtime
    removed the pod's netns mount, and the fd per-pod telemetry holds kept the netns (and the
    NIC in it) alive where nothing could reach it. Unprepare takes that fd from telemetry, brings
    the NIC home with its host state, and closes it."""
    from knd.driver.nic_telemetry import NicTelemetry, TrackedNic

    nic = lab.nic()
    n = 40 + secrets.randbelow(40)
    give_host_state(nic, n)
    try:
        before = host_state(nic.name, n)
        plan = plan_for(nic, {"interface": {"name": "net1", "mtu": 1400}}, pod_uid=POD)
        name, path = lab.netns()
        records = RestoreRecords(tmp_path / "records")
        row = prepared(store, records, plan)
        attach([plan], path)
        store.record_attach(POD, path)
        telemetry = NicTelemetry()
        telemetry.track(POD, "ns", "p1", path, [TrackedNic("c1", plan.device, "net1", None)])
        pyroute2_netns.remove(name)  # the runtime's teardown: mount gone, netns held by knd
        assert not os.path.exists(path)
        lab.namespaces.remove(name)
        taken: list[int | None] = []

        def take(pod_uid: str) -> int | None:
            taken.append(telemetry.take_netns(pod_uid))
            return taken[-1]

        restorer = Restorer(store, records, held_netns=take)
        try:
            assert restorer.release([row]) == []
        finally:
            restorer.stop()
        assert host_state(nic.name, n) == before
        assert telemetry.tracked() == []
        ((fd,),) = [taken]
        assert fd is not None
        with pytest.raises(OSError):
            os.fstat(fd)  # the held fd was closed by the restorer
        assert not restorer.is_pending("node", plan.device)
    finally:
        drop_rule(n)
