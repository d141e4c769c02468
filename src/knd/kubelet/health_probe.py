"""A HealthSource that reads link state from sysfs (root injectable for tests).

A device is HEALTHY when its netdev has operstate `up` (or `unknown`, which virtual links
report) and carrier `1`, and its RDMA device (if any) is present under
`class/infiniband`. Anything else is UNHEALTHY with a message saying which check failed. A
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
class HealthTarget:
    """A published device and the kernel objects its health depends on."""

    pool: str
    device: str
    ifname: str | None = None
    rdma_device: str | None = None


class SysfsLinkProbe:
    """HealthSource over `targets()` (e.g. the inventory's device list) and a sysfs tree."""

    def __init__(
        self, targets: Callable[[], list[HealthTarget]], sysfs_root: Path = Path("/sys")
    ) -> None:
        self.targets = targets
        self.sysfs = SysfsRoot(Path(sysfs_root))

    def check(self, target: HealthTarget) -> DeviceHealthState:
        now = int(time.time())
        problems: list[str] = []
        if target.ifname is None and target.rdma_device is None:
            return DeviceHealthState(target.pool, target.device, None, "no netdev or RDMA device")
        if target.ifname is not None:
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
        if target.rdma_device is not None:
            if not component_ok(target.rdma_device):
                problems.append(f"invalid RDMA device name {target.rdma_device!r}")
            elif not self.sysfs.exists("class", "infiniband", target.rdma_device):
                problems.append(f"RDMA device {target.rdma_device} not present")
        if problems:
            return DeviceHealthState(target.pool, target.device, False, "; ".join(problems), now)
        return DeviceHealthState(target.pool, target.device, True, "link up, carrier present", now)

    def snapshot(self) -> list[DeviceHealthState]:
        return [self.check(t) for t in self.targets()]
