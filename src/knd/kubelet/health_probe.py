"""A HealthSource that reads link state from sysfs (root injectable for tests).

A device is HEALTHY when its netdev has operstate `up` (or `unknown`, which virtual links
report) and carrier `1`, and its RDMA device (if any) is present under
`class/infiniband`. A device attached to a pod is not in the host's sysfs any more: its link is
read inside the pod's netns through `attached` (one netlink request over a held socket,
knd.driver.nic_telemetry), by the same rules; an RDMA device that moved with it is not checked
from the host. Anything else is UNHEALTHY with a message saying which check failed. A
device with neither netdev nor RDMA device is UNKNOWN. Names are validated before they become
paths, and every read is confined and bounded (`knd.host.confined`). Cost: two small sysfs reads
per device per poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from knd.host.confined import component_ok
from knd.host.sysfs import SysfsRoot
from knd.kubelet.types import DeviceHealthState


@dataclass(frozen=True, slots=True)
class PodLinkState:
    """A device's netdev as read inside the pod it is attached to (the host's sysfs no longer
    shows it). `operstate` is sysfs's word, None when the link is not found in that netns."""

    where: str  # "pod <namespace>/<name>", for messages
    ifname: str
    operstate: str | None
    carrier: bool | None
    rdma_moved: bool = False  # its RDMA device moved with it: not visible to the host


#: (device) → its link state in the pod it is attached to, None when it is not attached.
#: Must not raise and must answer within the probe's poll budget (one netlink request).
AttachedLinks = Callable[[str], PodLinkState | None]


@dataclass(frozen=True, slots=True)
class HealthTarget:
    """A published device and the kernel objects its health depends on."""

    pool: str
    device: str
    ifname: str | None = None
    rdma_device: str | None = None


class SysfsLinkProbe:
    """HealthSource over `targets()` (e.g. the inventory's device list) and a sysfs tree."""

    def __init__(
        self,
        targets: Callable[[], list[HealthTarget]],
        sysfs_root: Path = Path("/sys"),
        attached: AttachedLinks | None = None,
    ) -> None:
        self.targets = targets
        self.sysfs = SysfsRoot(Path(sysfs_root))
        self.attached = attached

    def check(self, target: HealthTarget) -> DeviceHealthState:
        now = int(time.time())
        problems: list[str] = []
        # First: a device in a pod has left the host, so the host's scan no longer names its
        # netdev; it is judged inside the pod.
        in_pod = self.attached(target.device) if self.attached is not None else None
        if in_pod is None and target.ifname is None and target.rdma_device is None:
            return DeviceHealthState(target.pool, target.device, None, "no netdev or RDMA device")
        if in_pod is not None:
            problems.extend(_pod_link_problems(in_pod))
        elif target.ifname is not None:
            if not component_ok(target.ifname):
                problems.append(f"invalid interface name {target.ifname!r}")
            else:
                base = ("class", "net", target.ifname)
                oper = self.sysfs.read(*base, "operstate", limit=64)
                carrier = self.sysfs.read(*base, "carrier", limit=64)
                if oper is None:
                    problems.append(f"netdev {target.ifname} not present")
                elif oper not in ("up", "unknown"):
                    problems.append(f"netdev {target.ifname} operstate {oper}")
                elif carrier != "1":
                    problems.append(f"netdev {target.ifname} has no carrier")
        if target.rdma_device is not None and not (in_pod is not None and in_pod.rdma_moved):
            if not component_ok(target.rdma_device):
                problems.append(f"invalid RDMA device name {target.rdma_device!r}")
            elif not self.sysfs.exists("class", "infiniband", target.rdma_device):
                problems.append(f"RDMA device {target.rdma_device} not present")
        if problems:
            return DeviceHealthState(target.pool, target.device, False, "; ".join(problems), now)
        return DeviceHealthState(target.pool, target.device, True, "link up, carrier present", now)

    def snapshot(self) -> list[DeviceHealthState]:
        return [self.check(t) for t in self.targets()]


def _pod_link_problems(state: PodLinkState) -> list[str]:
    """The same rules as for a host netdev, applied to the link inside its pod."""
    name = f"netdev {state.ifname} in {state.where}"
    if state.operstate is None:
        return [f"{name} not present"]
    if state.operstate not in ("up", "unknown"):
        return [f"{name} operstate {state.operstate}"]
    if state.carrier is False:
        return [f"{name} has no carrier"]
    return []
