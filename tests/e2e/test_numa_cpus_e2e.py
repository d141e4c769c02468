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

from pathlib import Path
from typing import Any

import grpc
import pytest

from knd.api.names import interface_device_name
from knd.host.numa import format_cpulist, online_cpus
from knd.host.sysfs import SysfsRoot
from knd.lab.cri import CriClient
from tests.e2e.test_knd_datapath import Node, _prepare, _sh, cri, nic, node

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
    cri.stop_container(cid)
    cri.remove_container(cid)
    cri.stop_pod(sid)
    cri.remove_pod(sid)
    meta = obj["metadata"]
    node.kubelet.unprepare("dra.net", [(meta["namespace"], meta["uid"], meta["name"])])


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
    cri.stop_pod(sid)
    cri.remove_pod(sid)
    meta = obj["metadata"]
    node.kubelet.unprepare("dra.net", [(meta["namespace"], meta["uid"], meta["name"])])
