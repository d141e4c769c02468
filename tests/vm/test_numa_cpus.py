"""`numa.alignCpus` on a real multi-NUMA topology: two NUMA nodes with one vCPU each, a NIC on
each (behind its own PCIe root complex). The prepare path's plan builder records the NIC's node
and that node's CPUs as the kernel lists them in sysfs; the CreateContainer hook narrows a
container to them; runc's way of applying that (a cgroup v2 cpuset) confines a real process
to exactly those CPUs and memory node.

This is what tests/e2e/test_numa_cpus_e2e.py can only show through an injected sysfs root (the
machine it runs on has one NUMA node).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knd.driver.hooks import NetworkHooks, NullLeases, NullStatus
from knd.driver.metrics import DriverMetrics
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.host.numa import format_cpulist, parse_cpulist
from knd.nri.types import ContainerInfo, PodInfo

from .conftest import PlanFn, VNic

ALIGN = {"interface": {"name": "eth9"}, "numa": {"alignCpus": True}}


def _read_cpulist(path: str) -> tuple[int, ...]:
    """A kernel CPU/node list file read directly (not through knd's reader)."""
    with open(path, encoding="ascii") as fh:
        text = fh.read().strip()
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def node_cpus(node: int) -> tuple[int, ...]:
    return _read_cpulist(f"/sys/devices/system/node/node{node}/cpulist")


def online() -> tuple[int, ...]:
    return _read_cpulist("/sys/devices/system/cpu/online")


def test_the_vm_topology_splits_the_cpus_between_the_nics_nodes(vnics: list[VNic]) -> None:
    """Ground truth for the tests below: each NIC's node has CPUs, a strict subset of all."""
    assert sorted(n.numa for n in vnics) == [0, 1]
    for nic in vnics:
        with open(f"/sys/bus/pci/devices/{nic.bdf}/numa_node", encoding="ascii") as fh:
            assert int(fh.read()) == nic.numa
        cpus = node_cpus(nic.numa)
        assert cpus and set(cpus) < set(online()), (nic.numa, cpus, online())
    assert not set(node_cpus(0)) & set(node_cpus(1))


@pytest.mark.parametrize("node", [0, 1])
def test_plan_records_the_nics_node_and_its_cpus_from_sysfs(
    vnics: list[VNic], plan: PlanFn, node: int
) -> None:
    nic = next(n for n in vnics if n.numa == node)
    p = plan(nic, ALIGN)
    assert p.placement is not None
    assert p.placement.nodes == (node,)
    assert p.placement.cpus == node_cpus(node)
    assert p.placement.online_cpus == online()
    assert p.placement.on_no_overlap == "error"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.db", boot_id="boot-1")
    try:
        yield s
    finally:
        s.close()


def _hooks_with_pod(store: StateStore, plans: list[tuple[str, dict[str, object]]]) -> PodInfo:
    uid = f"pod-{secrets.token_hex(3)}"
    rows = [PlanRecord("c-1", "node", dev, "nic", uid, plan) for dev, plan in plans]
    store.save_prepared(
        ClaimRecord("c-1", "ns", "c1", uid, time.time(), {}), PodRecord(uid, "ns", "p1"), rows
    )
    return PodInfo("sb1", uid, "numa-aligned", "ns", None)


@pytest.mark.parametrize("node", [0, 1])
@pytest.mark.parametrize("given", ["", "all"])
def test_create_container_narrows_to_the_nics_node(
    vnics: list[VNic], plan: PlanFn, store: StateStore, node: int, given: str
) -> None:
    """A container the kubelet left unpinned (no cpuset, or every online CPU: CPU manager
    policy `none`) is narrowed to the NIC's node's CPUs and that memory node."""
    nic = next(n for n in vnics if n.numa == node)
    p = plan(nic, ALIGN)
    pod = _hooks_with_pod(store, [(p.device, json.loads(p.to_json()))])
    cpus = format_cpulist(online()) if given == "all" else ""
    adjust = _hooks(store).create_container(
        pod, ContainerInfo("c", "sb1", "main", cpus=cpus, mems="")
    )
    assert adjust is not None
    assert adjust.cpus is not None and parse_cpulist(adjust.cpus) == node_cpus(node)
    assert adjust.mems == str(node)


def test_two_nics_on_two_nodes_widen_the_target_never_the_container(
    vnics: list[VNic], plan: PlanFn, store: StateStore
) -> None:
    plans = [plan(n, {**ALIGN, "interface": {"name": f"eth{n.numa + 8}"}}) for n in vnics]
    pod = _hooks_with_pod(store, [(p.device, json.loads(p.to_json())) for p in plans])
    hooks = _hooks(store)
    both = hooks.create_container(pod, ContainerInfo("c", "sb1", "main"))
    assert both is not None and both.cpus is not None
    assert parse_cpulist(both.cpus) == tuple(sorted(node_cpus(0) + node_cpus(1)))
    assert both.mems == "0-1"


def test_a_cpuset_the_kubelet_pinned_is_left_alone(
    vnics: list[VNic], plan: PlanFn, store: StateStore
) -> None:
    """The NIC is on node 1; a container the kubelet pinned to node 0's CPUs (a cpuset that is
    not every online CPU: the static CPU manager's) is not touched, not even its mems."""
    nic = next(n for n in vnics if n.numa == 1)
    p = plan(nic, ALIGN)
    pod = _hooks_with_pod(store, [(p.device, json.loads(p.to_json()))])
    pinned = ContainerInfo("c", "sb1", "main", cpus=format_cpulist(node_cpus(0)), mems="0")
    assert _hooks(store).create_container(pod, pinned) is None


@pytest.fixture
def cpuset_cgroup() -> Iterator[Path]:
    """A cgroup v2 child with the cpuset controller (what runc writes the adjustment to)."""
    mnt = Path(tempfile.mkdtemp(prefix="kv-cgroup-", dir="/tmp"))
    subprocess.run(["mount", "-t", "cgroup2", "none", str(mnt)], check=True)
    child = mnt / f"kv{secrets.token_hex(3)}"
    try:
        (mnt / "cgroup.subtree_control").write_text("+cpuset")
        child.mkdir()
        yield child
    finally:
        with contextlib.suppress(OSError):
            child.rmdir()
        subprocess.run(["umount", str(mnt)], check=False)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def _status(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def test_the_narrowed_cpuset_confines_a_real_process_to_the_nics_node(
    vnics: list[VNic], plan: PlanFn, store: StateStore, cpuset_cgroup: Path
) -> None:
    nic = next(n for n in vnics if n.numa == 1)
    p = plan(nic, ALIGN)
    pod = _hooks_with_pod(store, [(p.device, json.loads(p.to_json()))])
    adjust = _hooks(store).create_container(pod, ContainerInfo("c", "sb1", "main"))
    assert adjust is not None and adjust.cpus is not None and adjust.mems is not None
    (cpuset_cgroup / "cpuset.cpus").write_text(adjust.cpus)
    (cpuset_cgroup / "cpuset.mems").write_text(adjust.mems)
    proc = subprocess.Popen(["sleep", "60"])
    try:
        (cpuset_cgroup / "cgroup.procs").write_text(str(proc.pid))
        assert parse_cpulist(_status(proc.pid, "Cpus_allowed_list")) == node_cpus(1)
        assert _status(proc.pid, "Mems_allowed_list") == "1"
        assert os.sched_getaffinity(proc.pid) == set(node_cpus(1))
    finally:
        proc.kill()
        proc.wait()


def _hooks(store: StateStore) -> NetworkHooks:
    """The hooks with null collaborators: CreateContainer's CPU narrowing needs none."""
    return NetworkHooks(
        store=store, status=NullStatus(), metrics=DriverMetrics(), leases=NullLeases()
    )
