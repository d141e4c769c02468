"""The VM suite: a real Debian kernel under qemu (`bash scripts/vm test` boots it and runs this
directory inside, in one pytest process). Outside the VM these tests are not collected
(tests/conftest.py); CI runs them through `scripts/vm test`.

The node `scripts/vm` defines, which these tests take as ground truth: two NUMA nodes; a
pxb-pcie root complex per node (`pci0000:10` on node 0, `pci0000:20` on node 1) with one
virtio-net NIC behind a root port each, told apart by MAC; both NICs on one qemu hub, so they
reach each other and nothing else. Names made here start with `kv`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from knd.api.config import decode
from knd.api.names import pci_device_name
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.netns.plan import AttachPlan

#: MAC → (PCIe root complex, NUMA node), as scripts/vm builds the machine.
TOPOLOGY = {
    "52:54:00:12:34:00": ("pci0000:10", 0),
    "52:54:00:12:34:01": ("pci0000:20", 1),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-kubelet test last: the cluster it starts and stops (containerd's CNI bridge,
    cgroups) must not be the ground the link-level tests stand on."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/vm/test_kubelet_numa.py"))


@pytest.fixture(scope="session", autouse=True)
def _in_vm() -> None:
    if os.environ.get("KND_IN_VM") != "1":
        pytest.fail("tests/vm runs only inside the VM: bash scripts/vm test")


@dataclass(frozen=True)
class VNic:
    ifname: str
    mac: str
    bdf: str
    root: str
    numa: int

    @property
    def device(self) -> str:
        return pci_device_name(self.bdf)


def sh(*args: str) -> str:
    """Run a command (iproute2 for independent read-back); fail the test on error."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def ipj(ns: str | None, *args: str) -> Any:
    out = sh("ip", "-json", *(["-n", ns] if ns else []), *args)
    return json.loads(out) if out.strip() else []


def host_nics() -> list[VNic]:
    """The VM's virtio NICs in the host netns, found by MAC and sysfs path (not by knd)."""
    out = []
    for name in sorted(os.listdir("/sys/class/net")):
        try:
            with open(f"/sys/class/net/{name}/address", encoding="ascii") as fh:
                mac = fh.read().strip()
        except OSError:
            continue
        if mac in TOPOLOGY:
            # .../pci0000:10/0000:10:00.0/0000:11:00.0/virtio3 → the function is the parent
            bdf = os.path.basename(
                os.path.dirname(os.path.realpath(f"/sys/class/net/{name}/device"))
            )
            root, numa = TOPOLOGY[mac]
            out.append(VNic(name, mac, bdf, root, numa))
    return out


_ORIGINAL_NAMES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _nics_home() -> Iterator[None]:
    """After each test, both VM NICs are in the host under their boot names, so one failed
    test cannot take a NIC from the next (a NIC left in a deleted netns comes back renamed).
    This only tidies up: each test asserts its own restore."""
    if not _ORIGINAL_NAMES:
        _ORIGINAL_NAMES.update({n.mac: n.ifname for n in host_nics()})
    yield
    deadline = time.monotonic() + 30
    while len(host_nics()) < len(TOPOLOGY) and time.monotonic() < deadline:
        time.sleep(0.2)  # a deleted netns hands its NICs back asynchronously
    for nic in host_nics():
        name = _ORIGINAL_NAMES.get(nic.mac)
        if name and nic.ifname != name:
            sh("ip", "link", "set", nic.ifname, "down")
            sh("ip", "link", "set", nic.ifname, "name", name)


@pytest.fixture
def vnics() -> list[VNic]:
    nics = host_nics()
    assert sorted(n.mac for n in nics) == sorted(TOPOLOGY), "a VM NIC is missing from the host"
    return nics


class Namespaces:
    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self) -> tuple[str, str]:
        name = f"kv{secrets.token_hex(3)}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        return name, f"/run/netns/{name}"

    def cleanup(self) -> None:
        for name in self.names:
            with contextlib.suppress(AssertionError):
                sh("ip", "netns", "del", name)
        self.names.clear()


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    made = Namespaces()
    try:
        yield made
    finally:
        made.cleanup()


PlanFn = Callable[..., AttachPlan]


@pytest.fixture
def plan() -> PlanFn:
    """The prepare path's real PlanBuilder (locate by PCI name, capture, build)."""

    def build(
        target: VNic | str, config: dict[str, Any] | None = None, rdma_mode: str = "shared"
    ) -> AttachPlan:
        """`target`: a VM NIC (by its PCI device name) or a published device name."""
        device = target if isinstance(target, str) else target.device
        encoded = NetnsPlanBuilder(rdma_mode=rdma_mode).build(
            device, f"uid-{secrets.token_hex(3)}", {}, "req", decode(config or {})
        )
        return AttachPlan.from_json(json.dumps(encoded))

    return build
