"""The real PlanBuilder: device → host interface, host capture, DHCP, AttachPlan (prepare time).

Runs inside NodePrepareResources (45 s budget; typically a few ms plus up to 5 s for DHCP):
1. locate the allocated device on this node: PCI devices (`pci-0000-8a-00-0`) through
   `<sysfs>/bus/pci/devices/<BDF>/{net,infiniband}`, other devices by interface name (the
   device name, or its `net-` base32 encoding) under `<sysfs>/class/net` or
   `<sysfs>/class/infiniband` for an RDMA-only device;
2. refuse what cannot work, with a message naming the device and field: network settings on an
   RDMA-only device, an SR-IOV VF MTU above its PF's MTU (DraNet's check);
3. capture the host state (knd.netns.capture), run DHCP when `interface.dhcp` is set (on the
   host interface, without configuring the host), and build the AttachPlan (knd.netns.builder);
4. with `numa.alignCpus`, record the device's NUMA node and its CPUs in the plan's `placement`
   (knd.host.numa; used at CreateContainer by knd.driver.numa_cpus);
5. return `plan.to_json()`, which the engine persists before answering the kubelet.
Every failure is a `ClaimError`; nothing here changes the host.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knd.api.config import NetworkConfig
from knd.api.limits import is_dns_label
from knd.api.names import PCI_PREFIX, decode_interface_device_name, is_pci_address
from knd.api.validation import is_valid_interface_name, validate_rdma_only
from knd.driver.claim_api import Claim
from knd.driver.errors import ClaimError
from knd.host import numa
from knd.netns.builder import build_plan
from knd.netns.capture import capture_host_state
from knd.netns.dhcp import obtain_lease
from knd.netns.errors import NetnsError
from knd.netns.hoststate import DhcpLease
from knd.netns.plan import CpuPlacement

log = logging.getLogger(__name__)

LeaseFn = Callable[[str, str], DhcpLease]


@dataclass(frozen=True)
class DeviceLocation:
    """Where an allocated device lives on this host right now."""

    device: str
    ifname: str | None
    rdma_device: str | None
    pci_address: str | None = None
    pf_mtu: int | None = None


def _only_child(directory: Path) -> str | None:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    return names[0] if names else None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class SysfsDeviceLocator:
    """Resolve device names to host interfaces through sysfs (injectable root)."""

    def __init__(self, sysfs_root: str | Path = "/sys") -> None:
        self.root = Path(sysfs_root)

    def locate(self, device: str) -> DeviceLocation | None:
        """The device's current host interface / RDMA device, or None when not on this host."""
        if not is_dns_label(device):
            return None
        if device.startswith(PCI_PREFIX):
            parts = device[len(PCI_PREFIX) :].split("-")
            if len(parts) == 4:
                bdf = f"{parts[0]}:{parts[1]}:{parts[2]}.{parts[3]}"
                if is_pci_address(bdf):
                    return self._pci(device, bdf)
        ifname = decode_interface_device_name(device) or device
        if not is_valid_interface_name(ifname):
            return None
        if (self.root / "class" / "net" / ifname).exists():
            rdma = _only_child(self.root / "class" / "net" / ifname / "device" / "infiniband")
            return DeviceLocation(device, ifname, rdma)
        if (self.root / "class" / "infiniband" / ifname).exists():
            return DeviceLocation(device, None, ifname)
        return None

    def _pci(self, device: str, bdf: str) -> DeviceLocation | None:
        base = self.root / "bus" / "pci" / "devices" / bdf
        if not base.exists():
            return None
        ifname = _only_child(base / "net")
        rdma = _only_child(base / "infiniband")
        pf_mtu = None
        pf_net = base / "physfn" / "net"
        pf_if = _only_child(pf_net)
        if pf_if is not None:
            pf_mtu = _read_int(pf_net / pf_if / "mtu")
        if ifname is None and rdma is None:
            return None
        return DeviceLocation(device, ifname, rdma, bdf, pf_mtu)


def _device_dir(root: Path, loc: DeviceLocation) -> Path:
    if loc.pci_address is not None:
        return root / "bus" / "pci" / "devices" / loc.pci_address
    if loc.ifname is not None:
        return root / "class" / "net" / loc.ifname / "device"
    return root / "class" / "infiniband" / str(loc.rdma_device) / "device"


def numa_placement(root: Path, loc: DeviceLocation, on_no_overlap: str) -> CpuPlacement | None:
    """`numa.alignCpus`: the device's NUMA node and its CPUs, or None when the device has no
    NUMA affinity (`numa_node` -1 or absent: a single-node host, a virtual NIC), in which case
    CreateContainer leaves the cpuset alone. ClaimError when sysfs names a node without CPUs."""
    node = numa.device_numa_node(_device_dir(root, loc))
    if node is None:
        log.info("device %s has no NUMA node: numa.alignCpus changes nothing", loc.device)
        return None
    cpus = numa.node_cpus(root, node)
    if not cpus:
        raise ClaimError(
            f"device {loc.device}: numa.alignCpus: NUMA node {node} has no online CPUs "
            f"(devices/system/node/node{node}/cpulist)"
        )
    online = numa.online_cpus(root) or cpus
    return CpuPlacement(nodes=(node,), cpus=cpus, online_cpus=online, on_no_overlap=on_no_overlap)


class NetnsPlanBuilder:
    """`PlanBuilder` for `PrepareEngine`: see the module docstring."""

    def __init__(
        self,
        locator: SysfsDeviceLocator | None = None,
        rdma_mode: str = "shared",
        sysfs_root: str = "/sys",
        dev_root: str = "/dev",
        lease: LeaseFn = obtain_lease,
    ) -> None:
        self.locator = locator or SysfsDeviceLocator(sysfs_root)
        self.rdma_mode = rdma_mode
        self.sysfs_root = sysfs_root
        self.dev_root = dev_root
        self.lease = lease

    def build(
        self,
        device_name: str,
        pod_uid: str,
        claim: Claim,
        request: str,
        config: NetworkConfig,
    ) -> Mapping[str, Any]:
        """Capture and plan one device; raises ClaimError with an actionable message."""
        del claim, request  # the plan depends on the device and the resolved config only
        loc = self.locator.locate(device_name)
        if loc is None:
            raise ClaimError(
                f"device {device_name}: not found on this node (no such interface or RDMA "
                "device; it may be in another pod's network namespace)"
            )
        if loc.ifname is None:
            problems = validate_rdma_only(config)
            if problems:
                raise ClaimError(
                    f"device {device_name} is RDMA-only: " + "; ".join(map(str, problems))
                )
        iface = config.interface
        if (
            iface is not None
            and iface.mtu is not None
            and loc.pf_mtu is not None
            and (iface.mtu > loc.pf_mtu)
        ):
            raise ClaimError(
                f"device {device_name}: interface.mtu {iface.mtu} exceeds the MTU "
                f"{loc.pf_mtu} of its SR-IOV physical function"
            )
        try:
            state = capture_host_state(
                loc.ifname,
                rdma_link=loc.rdma_device,
                sysfs_root=self.sysfs_root,
                dev_root=self.dev_root,
            )
            lease = None
            if iface is not None and iface.dhcp and state.host is not None:
                lease = self.lease(state.host.name, state.host.mac)
            plan = build_plan(
                device_name, pod_uid, config, state, rdma_mode=self.rdma_mode, lease=lease
            )
        except NetnsError as exc:
            raise ClaimError(
                f"device {device_name} ({loc.ifname or loc.rdma_device}): {exc}"
            ) from exc
        if config.numa is not None and config.numa.align_cpus:
            placement = numa_placement(
                Path(self.sysfs_root), loc, config.numa.on_no_overlap or "error"
            )
            plan = dataclasses.replace(plan, placement=placement)
        encoded: dict[str, Any] = json.loads(plan.to_json())
        return encoded
