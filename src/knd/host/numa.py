"""NUMA topology from sysfs, for the list-typed `resource.kubernetes.io/numaNode` attribute.

With DraNet's `DRAListTypeAttributes` gate the standard attribute is an int list: the device's
own NUMA node first, then the other NUMA nodes of the same CPU socket that sit at the smallest
ACPI SLIT distance from it, ascending — e.g. `[5, 4, 6, 7]` on a socket split in four equally
close nodes (Kubernetes' "Standard Device Attributes" page). A node without CPUs (no socket) or
alone on its socket gets `[node]`.

Sources, all under the sysfs root: `devices/system/node/node<N>/distance` (one distance per
online node, in node order), `.../node<N>/cpulist` (its first CPU decides the socket) and
`devices/system/cpu/cpu<C>/topology/physical_package_id`. Unreadable or malformed entries leave
that node without peers. Cost: three small reads per NUMA node, once per scan.
"""

from __future__ import annotations

import re

from knd.host.sysfs import SysfsRoot

_NODE = re.compile(r"node(\d{1,4})")
_FIRST_CPU = re.compile(r"(\d{1,5})")
MAX_NODES = 1024


def _first_cpu(cpulist: str | None) -> int | None:
    if not cpulist:
        return None
    m = _FIRST_CPU.match(cpulist.strip())
    return int(m.group(1)) if m else None


def numa_peers(sysfs: SysfsRoot) -> dict[int, tuple[int, ...]]:
    """Node → (node, equally close same-socket nodes ascending), for every NUMA node."""
    nodes = sorted(
        int(m.group(1))
        for name in sysfs.listdir("devices", "system", "node")
        if (m := _NODE.fullmatch(name))
    )[:MAX_NODES]
    socket: dict[int, int | None] = {}
    distance: dict[int, dict[int, int]] = {}
    for node in nodes:
        base = ("devices", "system", "node", f"node{node}")
        cpu = _first_cpu(sysfs.read(*base, "cpulist"))
        socket[node] = (
            None
            if cpu is None
            else sysfs.read_int(
                "devices", "system", "cpu", f"cpu{cpu}", "topology", "physical_package_id"
            )
        )
        raw = (sysfs.read(*base, "distance") or "").split()
        if len(raw) == len(nodes) and all(x.isdigit() for x in raw):
            distance[node] = dict(zip(nodes, (int(x) for x in raw), strict=True))
    out: dict[int, tuple[int, ...]] = {}
    for node in nodes:
        own = socket.get(node)
        row = distance.get(node)
        same = [m for m in nodes if m != node and own is not None and socket.get(m) == own]
        if not same or row is None:
            out[node] = (node,)
            continue
        closest = min(row[m] for m in same)
        out[node] = (node, *sorted(m for m in same if row[m] == closest))
    return out
