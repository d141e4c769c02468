"""knd.driver.missed_containers: what Synchronize does for containers that never reached
CreateContainer (a hook past the runtime's deadline, or knd down), decided from the cpuset and
device nodes the runtime lists for each container."""

from __future__ import annotations

import dataclasses

from knd.api.config import decode
from knd.driver.missed_containers import catch_up
from knd.netns.builder import build_plan
from knd.netns.hoststate import HostState
from knd.netns.plan import AttachPlan, CharDevice, CpuPlacement, HostSide
from knd.nri.types import ContainerInfo, ContainerUpdate, PodInfo

POD = PodInfo(id="sb1", uid="uid-1", name="p1", namespace="ns", netns="/run/netns/cni-1")
CHARS = (
    CharDevice("/dev/infiniband/rdma_cm", "c", 10, 58),
    CharDevice("/dev/infiniband/uverbs0", "c", 231, 192),
)
RUNNING, STOPPED = 3, 4


def plan(numa: CpuPlacement | None = None, rdma: bool = False) -> AttachPlan:
    host = HostSide(name="eth1", ifindex=7, mac="02:00:00:00:00:07", mtu=1500, up=True)
    state = HostState(
        host=host, rdma_link="mlx5_0" if rdma else None, rdma_char_devices=CHARS if rdma else ()
    )
    built = build_plan("dev-a", POD.uid, decode({"interface": {"name": "net1"}}), state)
    return dataclasses.replace(built, placement=numa)


NODE1 = CpuPlacement(nodes=(1,), cpus=(4, 5, 6, 7), online_cpus=tuple(range(8)))


def container(
    cpus: str = "", mems: str = "", devices: tuple[str, ...] = (), state: int = RUNNING
) -> ContainerInfo:
    return ContainerInfo("c1", POD.id, "main", state, cpus, mems, devices)


def test_an_unpinned_container_is_narrowed_to_the_nics_node() -> None:
    for given in ("", "0-7"):  # unset, or every online CPU (CPU manager policy none)
        (found,) = catch_up(POD, [plan(NODE1)], [container(cpus=given, mems="0-1")])
        assert found.update == ContainerUpdate("c1", "4-7", "1")
        assert found.missing_devices == ()
        assert "container main of pod ns/p1" in found.message
        assert f"cpuset {given or 'unset'} -> 4-7" in found.message


def test_a_container_knd_narrowed_already_is_left_alone() -> None:
    assert catch_up(POD, [plan(NODE1)], [container(cpus="4-7", mems="1")]) == []


def test_a_kubelet_pinned_cpuset_is_never_touched() -> None:
    assert catch_up(POD, [plan(NODE1)], [container(cpus="0-1")]) == []


def test_no_update_when_the_node_holds_every_cpu() -> None:
    whole = CpuPlacement(nodes=(0,), cpus=tuple(range(8)), online_cpus=tuple(range(8)))
    assert catch_up(POD, [plan(whole)], [container()]) == []


def test_no_overlap_is_reported_and_changes_nothing() -> None:
    offline = CpuPlacement(nodes=(1,), cpus=(9,), online_cpus=tuple(range(8)))
    (found,) = catch_up(POD, [plan(offline)], [container()])
    assert found.update is None
    assert "do not overlap" in found.message and "left as it is" in found.message


def test_missing_rdma_devices_are_named() -> None:
    (found,) = catch_up(POD, [plan(rdma=True)], [container(devices=("/dev/infiniband/rdma_cm",))])
    assert found.update is None
    assert found.missing_devices == ("/dev/infiniband/uverbs0",)
    assert "restart it" in found.message
    have = tuple(d.path for d in CHARS)
    assert catch_up(POD, [plan(rdma=True)], [container(devices=have)]) == []


def test_other_pods_and_stopped_containers_are_skipped() -> None:
    stranger = dataclasses.replace(container(), pod_sandbox_id="sb-other")
    stopped = container(state=STOPPED)
    assert catch_up(POD, [plan(NODE1, rdma=True)], [stranger, stopped]) == []


def test_a_pod_without_numa_or_rdma_needs_nothing() -> None:
    assert catch_up(POD, [plan()], [container()]) == []
