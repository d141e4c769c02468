"""The real PlanBuilder: device → host interface, host capture, DHCP, AttachPlan (prepare time).

Runs inside NodePrepareResources (45 s budget; typically a few ms plus up to 5 s for DHCP):
1. locate the allocated device on this node: PCI devices (`pci-0000-8a-00-0`) through
   `<sysfs>/bus/pci/devices/<BDF>/{net,virtioN/net,infiniband}`, other devices by interface
   name (the device name, or its `net-` base32 encoding) under `<sysfs>/class/net` or
   `<sysfs>/class/infiniband` for an RDMA-only device; an RDMA device layered on the netdev
   (soft-RoCE, not a child of its PCI function) is found through the RoCE GID tables;
2. refuse what cannot work, with a message naming the device and field: network settings on an
   RDMA-only device, an SR-IOV VF MTU above its PF's MTU (DraNet's check), a device that now
   carries the default route or one of the node's addresses (knd.netns.uplink);
3. capture the host state (knd.netns.capture, from one host snapshot per prepare call: see
   `batch`; the engine starts it with `prefetch` while the claim GET is in flight), run DHCP
   when `interface.dhcp` is set (on the host interface, without configuring the host), and
   build the AttachPlan (knd.netns.builder);
4. with `numa.alignCpus`, record the device's NUMA node and its CPUs in the plan's `placement`
   (knd.host.numa; used at CreateContainer by knd.driver.numa_cpus);
5. return `plan.to_json()`, which the engine persists before answering the kubelet.
Sysfs is read only through `knd.host.sysfs.SysfsRoot` (confined, bounded, strict numbers).
Every failure is a `ClaimError`; nothing here changes the host.

With `subInterface` the device stays in the host and may serve several claims: the plan names
the parent (captured the same way, but none of its addresses, routes, rules or neighbours are
copied), the child's kind/mode, and the child's addresses (configured, or one per IP family from
`subInterface.ipRanges` through the node-local IPAM, owned by claim UID + device and released at
unprepare). RDMA char devices are handed over; the RDMA device itself never moves.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knd.api.config import InterfaceConfig, NetworkConfig
from knd.api.limits import is_dns_label
from knd.api.names import PCI_PREFIX, decode_interface_device_name, is_pci_address
from knd.api.subinterface import default_mode
from knd.api.validation import is_valid_interface_name, validate_rdma_only
from knd.driver.claim_api import Claim
from knd.driver.errors import ClaimError
from knd.driver.ipam import IpamError, LocalIpam, range_of
from knd.host import numa
from knd.host.confined import U32
from knd.host.sysfs import SysfsRoot, kernel_ifname_problem, rdma_by_netdev, rdma_names
from knd.netns.builder import build_plan
from knd.netns.capture import capture_host_state
from knd.netns.dhcp import obtain_lease
from knd.netns.errors import NetnsError
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import AttachPlan, CpuPlacement, SubInterface, check_plan
from knd.netns.snapshot import HostSnapshot
from knd.netns.uplink import uplink_problem_in

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


def _first(names: Sequence[str]) -> str | None:
    return names[0] if names else None


def _layered_rdma(sysfs: SysfsRoot, ifname: str) -> str | None:
    """An RDMA device layered on `ifname` (soft-RoCE), found through the RoCE GID tables."""
    devices = rdma_by_netdev(sysfs).get(ifname, ())
    return devices[0] if devices else None


_VIRTIO_CHILD = re.compile(r"virtio[0-9]+")


class SysfsDeviceLocator:
    """Resolve device names to host interfaces through sysfs (injectable root, confined reads)."""

    def __init__(self, sysfs_root: str | Path = "/sys") -> None:
        self.sysfs = SysfsRoot(Path(sysfs_root))

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
        if self.sysfs.exists("class", "net", ifname):
            rdma = _first(
                rdma_names(self.sysfs.listdir("class", "net", ifname, "device", "infiniband"))
            )
            return DeviceLocation(device, ifname, rdma or _layered_rdma(self.sysfs, ifname))
        if self.sysfs.exists("class", "infiniband", ifname):
            return DeviceLocation(device, None, ifname)
        return None

    def _pci(self, device: str, bdf: str) -> DeviceLocation | None:
        base = ("bus", "pci", "devices", bdf)
        if not self.sysfs.exists(*base):
            return None
        ifname = _first(self._ifnames(*base, "net"))
        if ifname is None:  # virtio-net: the netdev hangs off the virtio device, `virtioN/net`
            for child in sorted(self.sysfs.listdir(*base)):
                if _VIRTIO_CHILD.fullmatch(child):
                    ifname = _first(self._ifnames(*base, child, "net"))
                    if ifname is not None:
                        break
        rdma = _first(rdma_names(self.sysfs.listdir(*base, "infiniband")))
        if rdma is None and ifname is not None:
            rdma = _layered_rdma(self.sysfs, ifname)
        pf_mtu = None
        pf_if = _first(self._ifnames(*base, "physfn", "net"))
        if pf_if is not None:
            pf_mtu = self.sysfs.read_int(*base, "physfn", "net", pf_if, "mtu", bounds=U32)
        if ifname is None and rdma is None:
            return None
        return DeviceLocation(device, ifname, rdma, bdf, pf_mtu)

    def _ifnames(self, *parts: str) -> list[str]:
        return [n for n in self.sysfs.listdir(*parts) if kernel_ifname_problem(n) is None]


def _device_dir(loc: DeviceLocation) -> tuple[str, ...]:
    if loc.pci_address is not None:
        return ("bus", "pci", "devices", loc.pci_address)
    if loc.ifname is not None:
        return ("class", "net", loc.ifname, "device")
    return ("class", "infiniband", str(loc.rdma_device), "device")


def numa_placement(
    sysfs: SysfsRoot, loc: DeviceLocation, on_no_overlap: str
) -> CpuPlacement | None:
    """`numa.alignCpus`: the device's NUMA node and its CPUs, or None when the device has no
    NUMA affinity (`numa_node` -1 or absent: a single-node host, a virtual NIC), in which case
    CreateContainer leaves the cpuset alone. ClaimError when sysfs names a node without CPUs."""
    node = numa.device_numa_node(sysfs, *_device_dir(loc))
    if node is None:
        log.info("device %s has no NUMA node: numa.alignCpus changes nothing", loc.device)
        return None
    cpus = numa.node_cpus(sysfs, node)
    if not cpus:
        raise ClaimError(
            f"device {loc.device}: numa.alignCpus: NUMA node {node} has no online CPUs "
            f"(devices/system/node/node{node}/cpulist)"
        )
    online = numa.online_cpus(sysfs) or cpus
    return CpuPlacement(nodes=(node,), cpus=cpus, online_cpus=online, on_no_overlap=on_no_overlap)


def _take_snapshot() -> HostSnapshot:
    return HostSnapshot.take()


class NetnsPlanBuilder:
    """`PlanBuilder` for `PrepareEngine`: see the module docstring."""

    def __init__(
        self,
        locator: SysfsDeviceLocator | None = None,
        rdma_mode: str = "shared",
        sysfs_root: str = "/sys",
        dev_root: str = "/dev",
        lease: LeaseFn = obtain_lease,
        node_addresses: Callable[[], Collection[str]] = tuple,
        ipam: LocalIpam | None = None,
    ) -> None:
        self.node_addresses = node_addresses
        self._local = threading.local()
        self._prefetcher: ThreadPoolExecutor | None = None
        self._prefetcher_lock = threading.Lock()
        self.ipam = ipam
        self.locator = locator or SysfsDeviceLocator(sysfs_root)
        # A sysfs locator over the same root already looked for the device's RDMA device the
        # way capture would (its PCI function's `infiniband/`, then the RoCE GID tables):
        # capture does not read those entries a second time.
        self._locator_finds_rdma = type(self.locator) is SysfsDeviceLocator and (
            self.locator.sysfs.root == Path(sysfs_root)
        )
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
        del request  # the plan depends on the device and the resolved config only
        claim_uid = str((claim.get("metadata") or {}).get("uid", ""))
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
            snapshot = self._snapshot() if loc.ifname is not None else None
            state = capture_host_state(
                loc.ifname,
                snapshot=snapshot,
                rdma_link=loc.rdma_device,
                sysfs_root=self.sysfs_root,
                dev_root=self.dev_root,
                find_rdma=not self._locator_finds_rdma,
            )
            # A sub-interface's parent stays in the host: only a device that moves is refused.
            moves = config.sub_interface is None
            if moves and state.host is not None and snapshot is not None:
                self._refuse_uplink(device_name, snapshot, state.host.ifindex, state.host.name)
            lease = None
            if iface is not None and iface.dhcp and state.host is not None:
                lease = self.lease(state.host.name, state.host.mac)
            if config.sub_interface is not None:
                plan = self._child_plan(device_name, pod_uid, claim_uid, config, state)
            else:
                plan = build_plan(
                    device_name,
                    pod_uid,
                    config,
                    state,
                    rdma_mode=self.rdma_mode,
                    lease=lease,
                    validated=True,  # the engine's config_select.resolve_config finalized it
                )
        except NetnsError as exc:
            raise ClaimError(
                f"device {device_name} ({loc.ifname or loc.rdma_device}): {exc}"
            ) from exc
        if config.numa is not None and config.numa.align_cpus:
            placement = numa_placement(
                SysfsRoot(Path(self.sysfs_root)), loc, config.numa.on_no_overlap or "error"
            )
            plan = dataclasses.replace(plan, placement=placement)
        return plan.to_dict()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One host snapshot for every device built inside (one prepare call); per thread."""
        outer = getattr(self._local, "snapshot", None)
        outer_pending = getattr(self._local, "pending", None)
        batching = getattr(self._local, "batching", False)
        self._local.snapshot = None  # taken on first use
        self._local.pending = None
        self._local.batching = True
        try:
            yield
        finally:
            self._local.snapshot = outer
            self._local.pending = outer_pending
            self._local.batching = batching

    def prefetch(self) -> None:
        """Start taking this batch's host snapshot on a worker thread: the engine calls this
        just before it waits for the API server's answer, so the netlink dumps overlap that
        round trip instead of following it. Nothing outside a batch, nothing twice; the worker
        threads never change namespace, so the snapshot is the host's."""
        if not getattr(self._local, "batching", False):
            return
        if self._local.snapshot is not None or self._local.pending is not None:
            return
        with self._prefetcher_lock:
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(4, thread_name_prefix="knd-snapshot")
            self._local.pending = self._prefetcher.submit(_take_snapshot)

    def _snapshot(self) -> HostSnapshot:
        snap: HostSnapshot | None = getattr(self._local, "snapshot", None)
        if snap is None:
            pending: Future[HostSnapshot] | None = getattr(self._local, "pending", None)
            try:
                if pending is not None:
                    self._local.pending = None
                    snap = pending.result()
                else:
                    snap = HostSnapshot.take()
            except OSError as exc:
                raise NetnsError(f"cannot read the host's links and routes: {exc}") from exc
            if getattr(self._local, "batching", False):
                self._local.snapshot = snap
        return snap

    def _refuse_uplink(
        self, device_name: str, snapshot: HostSnapshot, index: int, ifname: str
    ) -> None:
        """A device that carries the default route or a node address never leaves the host."""
        problem = uplink_problem_in(snapshot, index, ifname, self.node_addresses())
        if problem is not None:
            raise ClaimError(f"device {device_name}: {problem}")

    def _child_plan(
        self,
        device_name: str,
        pod_uid: str,
        claim_uid: str,
        config: NetworkConfig,
        state: HostState,
    ) -> AttachPlan:
        """The plan of a sub-interface claim (see the module docstring)."""
        sub = config.sub_interface
        assert sub is not None and sub.type is not None
        if state.host is None:
            raise ClaimError(f"device {device_name} is RDMA-only: it cannot have a subInterface")
        parent = dataclasses.replace(state.host, addresses=(), routes=(), rules=(), neighbors=())
        iface = config.interface or InterfaceConfig()
        if not iface.addresses and sub.ip_ranges:
            if self.ipam is None:
                raise ClaimError(
                    f"device {device_name}: subInterface.ipRanges needs the node-local IPAM, "
                    "which this node does not run"
                )
            try:
                ranges = [range_of(r.subnet or "", r.start, r.end) for r in sub.ip_ranges]
                addresses = self.ipam.allocate(f"{claim_uid}/{device_name}", ranges)
            except IpamError as exc:
                raise ClaimError(f"device {device_name}: subInterface.ipRanges: {exc}") from exc
            iface = iface.model_copy(update={"addresses": addresses})
        config = config.model_copy(update={"interface": iface, "sub_interface": None})
        plan = build_plan(
            device_name,
            pod_uid,
            config,
            dataclasses.replace(state, host=parent),
            rdma_mode="shared",  # the parent and its RDMA device stay in the host
            validated=True,
        )
        child = dataclasses.replace(
            plan, sub=SubInterface(sub.type, sub.mode or default_mode(sub.type), sub.flag)
        )
        check_plan(child)
        return child
