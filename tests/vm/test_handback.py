"""The physical NIC's return through knd's real restorer: a pod netns is deleted without
StopPodSandbox, the kernel hands the virtio NIC back to the host (under its pod-side name, or
`devN` when that name is taken), and the restorer, poked by netlink link events the way the
daemon wires it (knd.driver.daemon `_on_netlink_event` → `Restorer.poke` →
`check_handback`), restores its name and host state: addresses, MTU, MAC, admin state, an
ethtool feature, alias, routes, rules and neighbours, all read back from the kernel.

This is the kernel behaviour tests/netns/test_restore_guarantee.py can only emulate (a veth
dies with its netns). The fault points run here too: each restore step fails once on the
hand-back and the restorer's retry completes the host state.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import knd.netns.detach as detach_mod
from knd.driver.metrics import DriverMetrics
from knd.driver.restore_records import RestoreRecord, RestoreRecords
from knd.driver.restorer import HANDED_BACK_REASON, RESTORE_FAILED_REASON, Restorer
from knd.driver.retry import Backoff
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.host.netlink_events import NetlinkEvents
from knd.netns.attach import attach
from knd.netns.plan import AttachPlan
from knd.netns.restore import restore_host
from knd.netns.steps import RestoreStep
from tests.step_faults import FailAt

from .conftest import Namespaces, PlanFn, VNic, ipj, sh

POD = "pod-handback-1"
POD_MAC = "02:00:00:5e:00:21"
#: The pod side differs from the host in every restored property: name, MTU, MAC, an ethtool
#: feature (features stay with the device across netns moves), addresses, routes.
CONFIG = {
    "interface": {
        "name": "eth9",
        "addresses": ["192.0.2.30/24"],
        "mtu": 1400,
        "hardwareAddr": POD_MAC,
    },
    "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
    "ethtool": {"features": {"generic-receive-offload": False}},
}
#: Every step restore_host runs for this NIC's host state (knd.netns.restore).
RESTORE_STEPS = (
    "rename",
    "link",
    "ethtool",
    "alias",
    "address",
    "up",
    "route",
    "rule",
    "neighbor",
)


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def _gro(ifname: str) -> str:
    for line in sh("ethtool", "-k", ifname).splitlines():
        if line.startswith("generic-receive-offload:"):
            return line.split(":", 1)[1].split()[0]
    raise AssertionError(f"ethtool -k {ifname} lists no generic-receive-offload")


def host_state(name: str) -> dict[str, Any]:
    """The NIC's host state as the kernel reports it (iproute2, ethtool)."""
    links = [lk for lk in ipj(None, "link") if lk["ifname"] == name]
    if not links:
        return {"present": False}
    link = links[0]
    addrs = sorted(
        f"{a['local']}/{a['prefixlen']}"
        for a in ipj(None, "addr", "show", "dev", name)[0]["addr_info"]
        if a["family"] in ("inet", "inet6") and not a["local"].startswith("fe80")
    )
    return {
        "present": True,
        "mtu": link["mtu"],
        "mac": link["address"],
        "up": "UP" in link["flags"],
        "alias": link.get("ifalias"),
        "gro": _gro(name),
        "addrs": addrs,
        "routes": sorted(
            (r["dst"], r.get("gateway")) for r in ipj(None, "route", "show", "table", "177")
        ),
        "rule": any(
            r.get("priority") == 1077 and r.get("src") == "10.77.0.0"
            for r in ipj(None, "rule", "show")
        ),
        "neigh": [
            (n["dst"], n.get("lladdr"))
            for n in ipj(None, "neigh", "show", "dev", name, "nud", "permanent")
        ],
    }


@pytest.fixture
def nic(vnics: list[VNic]) -> Iterator[VNic]:
    """The node-1 NIC with host state of every kind restore_host brings back."""
    n = next(v for v in vnics if v.numa == 1)
    sh("ip", "link", "set", n.ifname, "up")
    sh("ip", "link", "set", n.ifname, "alias", "knd-vm-uplink")
    sh("ip", "addr", "add", "10.77.0.1/24", "dev", n.ifname)
    sh("ip", "-6", "addr", "add", "2001:db8:77::1/64", "dev", n.ifname, "nodad")
    sh("ip", "route", "add", "10.177.0.0/24", "via", "10.77.0.254", "table", "177")
    sh("ip", "rule", "add", "from", "10.77.0.0/24", "table", "177", "prio", "1077")
    sh("ip", "neigh", "add", "10.77.0.9", "lladdr", "02:00:00:00:09:09", "dev", n.ifname,
       "nud", "permanent")  # fmt: skip
    try:
        yield n
    finally:
        for cmd in (
            ("ip", "rule", "del", "prio", "1077"),
            ("ip", "route", "flush", "table", "177"),
            ("ip", "neigh", "flush", "dev", n.ifname, "nud", "permanent"),
            ("ip", "addr", "flush", "dev", n.ifname),
            ("ip", "link", "set", n.ifname, "alias", ""),
            ("ethtool", "-K", n.ifname, "gro", "on"),
            ("ip", "link", "set", n.ifname, "down"),
        ):
            with contextlib.suppress(AssertionError):
                sh(*cmd)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.db", boot_id="boot-1")
    try:
        yield s
    finally:
        s.close()


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, record: PlanRecord, reason: str, message: str) -> None:
        self.seen.append((record.device, reason))


def _prepared(store: StateStore, records: RestoreRecords, plan: AttachPlan) -> PlanRecord:
    """What prepare leaves behind: the pending-restore record and the store's rows."""
    row = PlanRecord("c-1", "node", plan.device, "nic", POD, json.loads(plan.to_json()))
    records.write(RestoreRecord("c-1", "ns", "c1", POD, "node", plan.device, "nic", row.plan))
    store.save_prepared(
        ClaimRecord("c-1", "ns", "c1", POD, time.time(), {}), PodRecord(POD, "ns", "p1"), [row]
    )
    return row


def _handed_back() -> list[dict[str, Any]]:
    """Links in the host carrying the pod-side MAC: the NIC as the kernel hands it back."""
    return [lk for lk in ipj(None, "link") if lk.get("address") == POD_MAC]


def _link_monitor() -> subprocess.Popen[str]:
    """`ip -o monitor link`, returned once it is known to be subscribed (it has printed the
    creation of a probe link)."""
    monitor = subprocess.Popen(["ip", "-o", "monitor", "link"], stdout=subprocess.PIPE, text=True)
    assert monitor.stdout is not None
    probe = f"kvmon{secrets.token_hex(2)}"
    deadline = time.monotonic() + 60
    while True:
        sh("ip", "link", "add", probe, "type", "dummy")
        sh("ip", "link", "del", probe)
        ready, _, _ = select.select([monitor.stdout], [], [], 1.0)
        if ready and probe in monitor.stdout.readline():
            return monitor
        if time.monotonic() > deadline:
            monitor.kill()
            raise AssertionError("ip monitor link printed nothing for a minute")


def _run_handback(
    nic: VNic,
    netns: Namespaces,
    plan: PlanFn,
    store: StateStore,
    tmp_path: Path,
    *,
    taken_name: bool = False,
    fail_step: str | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[DriverMetrics, Reports, list[str]]:
    """Attach the NIC into a pod netns, delete the netns (no StopPodSandbox), and let the
    restorer bring the NIC home. Returns the metrics, the claim reports and the names the host
    saw the NIC under while it carried the pod-side MAC (`ip monitor link`), in order."""
    p = plan(nic, CONFIG)
    # Identity: the permanent MAC (virtio-net's parent device is `virtioN` on the virtio bus,
    # not the PCI function, so the plan has no PCI address to match on; real NIC drivers'
    # parent is the PCI function).
    assert p.host is not None and p.host.perm_mac == nic.mac
    pod, path = netns()
    records = RestoreRecords(tmp_path / "records")
    _prepared(store, records, p)
    attach([p], path)
    store.record_attach(POD, path)
    assert ipj(pod, "link", "show", "dev", "eth9")[0]["address"] == POD_MAC
    if fail_step is not None:
        assert monkeypatch is not None
        faults = {"left": 1}

        def faulty(*args: Any, **kwargs: Any) -> list[str]:
            if faults["left"]:
                faults["left"] -= 1
                kwargs["observer"] = FailAt(RestoreStep(fail_step))
            return restore_host(*args, **kwargs)

        monkeypatch.setattr(detach_mod, "restore_host", faulty)
    if taken_name:
        # The pod-side name is taken in the host: the kernel names the returning NIC devN.
        sh("ip", "link", "add", "eth9", "type", "dummy")
    metrics = DriverMetrics()
    reports = Reports()
    restorer = Restorer(store, records, metrics=metrics, report=reports, backoff=Backoff(0.1, 0.5))
    events = NetlinkEvents(restorer.poke)  # the daemon's wiring (knd.driver.daemon)
    restorer.start()
    events.start()
    # An independent observer of the hand-back: the kernel's own link messages in the host.
    monitor = _link_monitor()
    try:
        netns.cleanup()  # the pod's netns is destroyed; no StopPodSandbox ever comes
        assert wait_for(lambda: host_state(nic.ifname).get("present") is True), (
            f"{nic.ifname} never came home; links now: {[lk['ifname'] for lk in ipj(None, 'link')]}"
        )
        assert wait_for(lambda: not restorer.is_pending("node", p.device)), restorer.pending()
    finally:
        events.stop()
        restorer.stop()
        monitor.terminate()
        out, _ = monitor.communicate(timeout=10)
        if taken_name:
            with contextlib.suppress(AssertionError):
                sh("ip", "link", "del", "eth9")
    seen: list[str] = []  # in order, each name once
    for line in out.splitlines():
        m = re.match(r"^\d+: ([^:@ ]+)[:@]", line)
        if m and POD_MAC in line and m.group(1) not in seen:
            seen.append(m.group(1))
    return metrics, reports, seen


def test_kernel_handback_under_the_pod_side_name_is_restored_by_the_restorer(
    nic: VNic, netns: Namespaces, plan: PlanFn, store: StateStore, tmp_path: Path
) -> None:
    before = host_state(nic.ifname)
    assert before["gro"] == "on" and before["up"] and before["alias"] == "knd-vm-uplink"
    metrics, reports, seen = _run_handback(nic, netns, plan, store, tmp_path)
    # The kernel's hand-back, under the pod-side name; then knd's rename (before its MAC).
    assert seen[0] == "eth9" and set(seen) <= {"eth9", nic.ifname}, seen
    assert wait_for(lambda: host_state(nic.ifname) == before), host_state(nic.ifname)
    assert not _handed_back() and not [lk for lk in ipj(None, "link") if lk["ifname"] == "eth9"]
    assert (
        metrics.registry.get_sample_value(
            "knd_driver_restores_total", {"path": "handback", "result": "home"}
        )
        == 1
    )
    assert reports.seen == [(nic.device, HANDED_BACK_REASON)]


def test_kernel_handback_as_dev_n_is_found_by_permanent_mac_and_restored(
    nic: VNic, netns: Namespaces, plan: PlanFn, store: StateStore, tmp_path: Path
) -> None:
    before = host_state(nic.ifname)
    metrics, reports, seen = _run_handback(nic, netns, plan, store, tmp_path, taken_name=True)
    # eth9 is taken in the host: the kernel names the returning NIC devN.
    assert re.fullmatch(r"dev\d+", seen[0]) and set(seen) <= {seen[0], nic.ifname}, seen
    assert wait_for(lambda: host_state(nic.ifname) == before), host_state(nic.ifname)
    assert not _handed_back()
    assert (
        metrics.registry.get_sample_value(
            "knd_driver_restores_total", {"path": "handback", "result": "home"}
        )
        == 1
    )
    assert reports.seen == [(nic.device, HANDED_BACK_REASON)]


@pytest.mark.parametrize("step", RESTORE_STEPS)
def test_a_fault_at_each_restore_step_of_a_handback_is_retried_to_the_full_host_state(
    nic: VNic,
    netns: Namespaces,
    plan: PlanFn,
    store: StateStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    before = host_state(nic.ifname)
    metrics, reports, _ = _run_handback(
        nic, netns, plan, store, tmp_path, fail_step=step, monkeypatch=monkeypatch
    )
    assert wait_for(lambda: host_state(nic.ifname) == before), (step, host_state(nic.ifname))
    assert not _handed_back()

    def count(path: str, result: str) -> float:
        value = metrics.registry.get_sample_value(
            "knd_driver_restores_total", {"path": path, "result": result}
        )
        return value or 0.0

    # The hand-back restore failed at `step` (the NIC was found and partly restored); the next
    # attempt (the backoff retry, or a hand-back check poked by the restore's own link events,
    # whichever runs first) brought it home, once.
    assert count("handback", "restored") == 1, step
    assert count("retry", "home") + count("handback", "home") == 1, step
    assert reports.seen[0] == (nic.device, RESTORE_FAILED_REASON), reports.seen
