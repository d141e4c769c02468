"""Soft-RoCE (rdma_rxe) over a virtio NIC: attributes, the plan's RDMA part, and what the
kernel does to it when knd moves the NIC.

Kernel facts these tests rest on (6.1, checked here by hand): an rxe device is virtual (no PCI
child), bound to its netdev only through its GID table; moving its netdev out of the netns
unregisters it (rxe's netdev notifier), and the kernel refuses to move an rxe device to another
netns (no disassociate_ucontext: EOPNOTSUPP). So an RDMA device that follows its NIC into a pod
needs a real HCA; here the exclusive-mode test proves the failure path: knd rolls the NIC back.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knd.api import attributes as attr
from knd.host.netlink import LiveNetlink
from knd.inventory.scanner import Inventory
from knd.netns import rdma
from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.errors import AttachError

from .conftest import Namespaces, PlanFn, VNic, ipj, sh

CONFIG = {"interface": {"name": "eth9", "addresses": ["192.0.2.10/24"]}}


def _rdma_devices() -> set[str]:
    return set(os.listdir("/sys/class/infiniband"))


@pytest.fixture
def rxe(vnics: list[VNic]) -> Iterator[VNic]:
    """rxe0 over the node-0 NIC; removed afterwards if it still exists."""
    nic = next(n for n in vnics if n.numa == 0)
    sh("rdma", "link", "add", "rxe0", "type", "rxe", "netdev", nic.ifname)
    try:
        yield nic
    finally:
        if "rxe0" in _rdma_devices():
            sh("rdma", "link", "delete", "rxe0")


def _set_rdma_mode(mode: str) -> None:
    """The kernel allows a mode change only while no other netns exists (EBUSY while deleted
    namespaces are still being torn down), so retry for a while."""
    deadline = time.monotonic() + 60
    while True:
        try:
            sh("rdma", "system", "set", "netns", mode)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextlib.contextmanager
def _rdma_mode(mode: str, netns: Namespaces) -> Iterator[None]:
    _set_rdma_mode(mode)
    try:
        yield
    finally:
        netns.cleanup()
        _set_rdma_mode("shared")


def test_soft_roce_attributes_and_plan(rxe: VNic, vnics: list[VNic], plan: PlanFn) -> None:
    published = {d.name: d.attributes for d in Inventory(netlink=LiveNetlink()).scan().published}
    assert published[rxe.device][attr.RDMA] is True
    assert published[rxe.device][attr.RDMA_DEVICE] == "rxe0"
    other = next(n for n in vnics if n is not rxe and n.mac != rxe.mac)
    assert published[other.device][attr.RDMA] is False
    assert "rxe0" not in published  # published with its NIC, not on its own

    assert rdma.netns_mode() == "shared"
    rdma.device_index("rxe0")  # knd's RDMA netlink finds it
    p = plan(rxe, CONFIG)
    assert p.rdma is not None and p.rdma.link == "rxe0" and not p.rdma.move_link
    # The char devices a container gets: rdma_cm and rxe0's uverbs node, as the kernel made them.
    uverbs = [
        e
        for e in os.listdir("/sys/class/infiniband_verbs")
        if e.startswith("uverbs")
        and Path(f"/sys/class/infiniband_verbs/{e}/ibdev").read_text().strip() == "rxe0"
    ]
    want = {"/dev/infiniband/rdma_cm", *(f"/dev/infiniband/{u}" for u in uverbs)}
    assert {c.path for c in p.rdma.char_devices} >= want
    for c in p.rdma.char_devices:
        st = os.stat(c.path)
        assert (c.major, c.minor) == (os.major(st.st_rdev), os.minor(st.st_rdev))


def test_shared_mode_nic_moves_and_returns(rxe: VNic, netns: Namespaces, plan: PlanFn) -> None:
    p = plan(rxe, CONFIG)
    pod, path = netns()
    (done,) = attach([p], path)
    assert done.interface_name == "eth9"
    pod_link = ipj(pod, "addr", "show", "dev", "eth9")[0]
    assert pod_link["address"] == rxe.mac
    assert {a["local"] for a in pod_link["addr_info"]} >= {"192.0.2.10"}
    # The kernel unregisters rxe0 once its netdev leaves (soft-RoCE only; a HCA stays).
    assert "rxe0" not in _rdma_devices()
    (back,) = detach([p], path)
    assert back.outcome == "returned" and not back.errors
    assert ipj(None, "link", "show", "dev", rxe.ifname)[0]["address"] == rxe.mac


def test_exclusive_mode_rdma_move_refused_rolls_the_nic_back(
    rxe: VNic, netns: Namespaces, plan: PlanFn
) -> None:
    with _rdma_mode("exclusive", netns):
        assert rdma.netns_mode() == "exclusive"
        p = plan(rxe, CONFIG, rdma_mode="exclusive")
        assert p.rdma is not None and p.rdma.move_link and p.rdma.link == "rxe0"
        pod, path = netns()
        with pytest.raises(AttachError) as err:
            attach([p], path)
        assert err.value.step == "rdma"
        assert not err.value.rollback_errors
        # Nothing lost: the NIC is back in the host under its own name, nothing left in the pod.
        assert ipj(None, "link", "show", "dev", rxe.ifname)[0]["address"] == rxe.mac
        assert [lk["ifname"] for lk in ipj(pod, "link")] == ["lo"]
