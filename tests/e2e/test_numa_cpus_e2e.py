"""`numa.alignCpus` against real containerd: prepare records the NIC's NUMA node and its CPUs,
CreateContainer narrows the container's cpuset and mems, the container's own
/proc/self/status shows exactly those CPUs.

This machine has one NUMA node, so the NUMA → CPU map comes from the test's injected sysfs root
(the same root the plan builder reads): the NIC's `device/numa_node` is 0 and node 0 is given
only the last online CPU, a strict subset of the machine's CPUs (the rest form a fictitious
node 1). The real cgroup cpuset is then set by runc to that CPU and memory node 0, which exist.
On a real multi-NUMA topology (Debian's kernel under qemu, two NUMA nodes, a virtio NIC on
each) the same path is proven from the kernel's own sysfs by tests/vm/test_numa_cpus.py (plan,
CreateContainer hook, a cgroup v2 cpuset on a real process) and tests/vm/test_kubelet_numa.py
(examples/lab/nic-numa-cpus.yaml under the real kubelet, scheduler and containerd's NRI).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from knd.api.names import interface_device_name
from knd.host.numa import format_cpulist, online_cpus
from knd.host.sysfs import SysfsRoot
from knd.lab.cri import CriClient
from knd.netns.steps import AttachStep
from tests.e2e.test_knd_datapath import (
    Node,
    _host,
    _prepare,
    _sh,
    _wait,
    connect_again,
    cri,
    nic,
    node,
)
from tests.step_faults import PauseBefore

__all__ = ["cri", "nic", "node"]  # fixtures used by this module

pytestmark = pytest.mark.e2e


def _numa_fixture(root: Path, ifname: str, node0_cpus: str, online: str) -> None:
    (root / "class" / "net" / ifname / "device").mkdir(parents=True, exist_ok=True)
    (root / "class" / "net" / ifname / "device" / "numa_node").write_text("0\n")
    for n, cpus in ((0, node0_cpus), (1, "")):
        d = root / "devices" / "system" / "node" / f"node{n}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpulist").write_text(cpus + "\n")
    cpu = root / "devices" / "system" / "cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    (cpu / "online").write_text(online + "\n")


def _real_online() -> tuple[int, ...]:
    cpus = online_cpus(SysfsRoot()) or ()
    if len(cpus) < 2:
        pytest.skip(f"needs at least 2 online CPUs to show a strict subset; this host has {cpus}")
    return cpus


def _status_line(cri: CriClient, cid: str, key: str) -> str:
    for line in _sh(cri, cid, "cat", "/proc/self/status").splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in /proc/self/status")


def _tear_down(node: Node, cri: CriClient, obj: dict[str, Any], sid: str, *cids: str) -> None:
    """Remove the containers and the sandbox, then unprepare the claim (the NIC goes home)."""
    for cid in cids:
        cri.stop_container(cid)
        cri.remove_container(cid)
    cri.stop_pod(sid)
    cri.remove_pod(sid)
    meta = obj["metadata"]
    node.kubelet.unprepare("dra.net", [(meta["namespace"], meta["uid"], meta["name"])])


def test_container_cpus_are_narrowed_to_the_nics_numa_node(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    online = _real_online()
    want = (online[-1],)
    _numa_fixture(node.sysfs, nic, format_cpulist(want), format_cpulist(online))
    params = {"interface": {"name": "net1"}, "numa": {"alignCpus": True}}
    obj, pod = _prepare(node, params, interface_device_name(nic))
    (record,) = node.store.plans_for_pod(pod.uid)
    assert record.plan["placement"] == {
        "nodes": [0],
        "cpus": list(want),
        "online_cpus": list(online),
        "on_no_overlap": "error",
    }
    sid = cri.run_pod(pod)
    cid = cri.create_container(
        sid, pod, "numa-aligned", runtime["busybox_image"], ["/bin/busybox", "sleep", "600"]
    )
    cri.start_container(cid)
    assert _status_line(cri, cid, "Cpus_allowed_list") == format_cpulist(want)
    assert _status_line(cri, cid, "Mems_allowed_list") == "0"
    _tear_down(node, cri, obj, sid, cid)


def test_no_overlap_fails_the_container_with_a_clear_error(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    online = _real_online()
    absent = max(online) + 1  # a CPU the node does not have online
    _numa_fixture(node.sysfs, nic, str(absent), format_cpulist(online))
    params = {"interface": {"name": "net1"}, "numa": {"alignCpus": True}}
    obj, pod = _prepare(node, params, interface_device_name(nic))
    sid = cri.run_pod(pod)
    with pytest.raises(grpc.RpcError) as err:
        cri.create_container(
            sid, pod, "numa-aligned", runtime["busybox_image"], ["/bin/busybox", "sleep", "600"]
        )
    details = err.value.details() or ""
    assert "numa.alignCpus" in details and "do not overlap" in details, details
    _tear_down(node, cri, obj, sid)


def _sleeper_cpus(cri: CriClient, cid: str, seconds: int) -> str:
    """Cpus_allowed_list of the container's own running `busybox sleep SECONDS` (not of an
    exec'd process; the pod's containers share one PID namespace, so found by its command)."""
    script = (
        "for d in /proc/[0-9]*; do "
        f"[ \"$(tr '\\0' ' ' < $d/cmdline)\" = '/bin/busybox sleep {seconds} ' ] && "
        "grep Cpus_allowed_list $d/status; done; true"
    )
    out = _sh(cri, cid, "sh", "-c", script).strip()
    assert out.count("\n") == 0 and ":" in out, out
    return out.split(":", 1)[1].strip()


def test_a_container_created_without_knd_is_narrowed_at_synchronize(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    """The container misses CreateContainer (knd's plugin is away, as after a hook that
    outlived the runtime's deadline); the reconnect's Synchronize narrows its live cpuset (its
    running process, started on every CPU, then runs on the NIC node's CPUs only) and reports
    the RDMA device it lacks. A container that had knd's CreateContainer is left alone: the
    runtime's Synchronize lists its narrowed cpuset and its device node."""
    online = _real_online()
    want = (online[-1],)
    _numa_fixture(node.sysfs, nic, format_cpulist(want), format_cpulist(online))
    params = {"interface": {"name": "net1"}, "numa": {"alignCpus": True}}
    obj, pod = _prepare(node, params, interface_device_name(nic))
    sid = cri.run_pod(pod)
    image = runtime["busybox_image"]
    early = cri.create_container(sid, pod, "early", image, ["/bin/busybox", "sleep", "601"])
    cri.start_container(early)
    node.plugin.stop()
    try:
        late = cri.create_container(sid, pod, "late", image, ["/bin/busybox", "sleep", "602"])
        cri.start_container(late)
        assert _sleeper_cpus(cri, late, 602) == format_cpulist(online), "created without knd"
    finally:
        connect_again(node, runtime)
    prefix = f"container {{}} of pod {pod.namespace}/{pod.name}: "
    (found,) = node.hooks.last_sync.missed_create
    assert found.startswith(prefix.format("late")), found
    assert f"-> {format_cpulist(want)}" in found and "/dev/infiniband/uverbs0 missing" in found
    assert _sleeper_cpus(cri, late, 602) == format_cpulist(want)
    assert _status_line(cri, late, "Cpus_allowed_list") == format_cpulist(want)
    assert _sleeper_cpus(cri, early, 601) == format_cpulist(want)
    _tear_down(node, cri, obj, sid, early, late)


def test_a_run_pod_sandbox_past_the_runtimes_deadline_loses_nothing(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    """The attach pauses past containerd's 2 s request timeout: containerd goes on without
    knd's answer and closes knd's connection. The attach still completes (the NIC is in the
    pod, its claim Ready), knd counts the miss, reconnects, and the reconnect's Synchronize
    neither moves the NIC again nor reports it failed; the pod's container is narrowed."""
    online = _real_online()
    want = (online[-1],)
    _numa_fixture(node.sysfs, nic, format_cpulist(want), format_cpulist(online))
    params = {"interface": {"name": "net1"}, "numa": {"alignCpus": True}}
    obj, pod = _prepare(node, params, interface_device_name(nic))
    budget_s = (node.plugin.runtime.request_timeout_ms or 2000) / 1000
    plugin, registrations, missed = node.plugin, node.plugin.registrations, node.plugin.over_budget
    node.hooks.step_observer = PauseBefore(AttachStep.MOVE, budget_s + 0.5)
    try:
        t0 = time.monotonic()
        sid = cri.run_pod(pod)
        ran_s = time.monotonic() - t0
    finally:
        node.hooks.step_observer = None
    assert ran_s < budget_s + 0.5, f"containerd waited {ran_s:.2f} s: it did not time out"
    assert _wait(lambda: plugin.over_budget == missed + 1, 10), "the miss was not counted"
    assert _wait(lambda: plugin.registrations > registrations and plugin.connected, 10), (
        plugin.last_close_reason
    )
    assert _host(nic) is None, "the NIC is in the pod"
    assert node.hooks.last_sync.healed == [] and node.hooks.last_sync.heal_failed == []
    meta = obj["metadata"]

    def ready() -> list[str]:
        got = node.api.claim(meta["namespace"], meta["name"]) or {}
        return [
            cond["status"]
            for entry in (got.get("status") or {}).get("devices") or []
            for cond in entry.get("conditions") or []
            if cond["type"] == "Ready"
        ]

    assert _wait(lambda: ready() == ["True"]), ready()
    cid = cri.create_container(
        sid, pod, "main", runtime["busybox_image"], ["/bin/busybox", "sleep", "600"]
    )
    cri.start_container(cid)
    assert _status_line(cri, cid, "Cpus_allowed_list") == format_cpulist(want)
    _tear_down(node, cri, obj, sid, cid)
