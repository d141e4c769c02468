"""The inventory: one object that owns the host sources, options and admin filter, and scans.

`Inventory.scan()` = discovery (`knd.inventory.discover`) + admin filter; the result keeps the
discovered devices (what `knd inventory -o json` prints) and the published subset. Thread-safe:
scans are serialised; `last` is the latest result.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from knd.api import attributes as attr
from knd.host import pciids
from knd.host.netlink import NetlinkSource
from knd.host.numa import numa_peers
from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import Options, discover
from knd.inventory.filter import AdminFilter
from knd.inventory.model import Device, Discovery

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ScanResult:
    discovery: Discovery
    published: list[Device] = field(default_factory=list)
    filtered: list[Device] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Inventory:
    def __init__(
        self,
        sysfs: SysfsRoot | None = None,
        netlink: NetlinkSource | None = None,
        admin_filter: AdminFilter | None = None,
        options: Options | None = None,
        pci_ids_path: Path | None = None,
    ) -> None:
        self.sysfs = sysfs or SysfsRoot()
        self.netlink = netlink
        self.filter = admin_filter or AdminFilter("")
        self.options = options or Options()
        self.pci_ids = pciids.load(pci_ids_path)
        self._lock = threading.Lock()
        self.last: ScanResult | None = None
        self.scans = 0

    def scan(self) -> ScanResult:
        with self._lock:
            snapshot = self.netlink.snapshot() if self.netlink is not None else None
            found = discover(self.sysfs, self.pci_ids, snapshot, self.options)
            if self.options.list_numa:
                found.devices = with_list_numa(found.devices, numa_peers(self.sysfs))
            kept, dropped, warnings = self.filter.apply(found.devices)
            for w in warnings:
                log.warning("%s", w)
            result = ScanResult(found, kept, dropped, warnings)
            self.last = result
            self.scans += 1
            return result


def with_list_numa(devices: list[Device], peers: dict[int, tuple[int, ...]]) -> list[Device]:
    """DRAListTypeAttributes: `resource.kubernetes.io/numaNode` as its node's list (knd.host.numa);
    the legacy `dra.net/numaNode` stays an int."""
    out = []
    for dev in devices:
        node = dev.attributes.get(attr.STD_NUMA_NODE)
        if isinstance(node, int) and not isinstance(node, bool):
            attrs = dict(dev.attributes)
            attrs[attr.STD_NUMA_NODE] = peers.get(node, (node,))
            out.append(Device(dev.name, attrs, dev.shares))
        else:
            out.append(dev)
    return out
