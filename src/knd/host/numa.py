"""NUMA topology from sysfs: the list-typed `resource.kubernetes.io/numaNode` attribute, and a
device's NUMA node with its CPUs for `numa.alignCpus` (knd.driver.numa_cpus).

With DraNet's `DRAListTypeAttributes` gate the standard attribute is an int list: the device's
own NUMA node first, then the other NUMA nodes of the same CPU socket that sit at the smallest
ACPI SLIT distance from it, ascending — e.g. `[5, 4, 6, 7]` on a socket split in four equally
close nodes (Kubernetes' "Standard Device Attributes" page). A node without CPUs (no socket) or
alone on its socket gets `[node]`.

Sources, all under the sysfs root: `devices/system/node/node<N>/distance` (one distance per
online node, in node order), `.../node<N>/cpulist` (its first CPU decides the socket) and
`devices/system/cpu/cpu<C>/topology/physical_package_id`. Unreadable or malformed entries leave
that node without peers. Cost: three small reads per NUMA node, once per scan.

For CPU alignment: `<device dir>/numa_node`, `devices/system/node/node<N>/cpulist` and
`devices/system/cpu/online`, read through the same confined, bounded `SysfsRoot`; a missing,
oversized or malformed file yields None, never an exception. `parse_cpulist` is the kernel's
list format (`0-3,8,10-11`), bounded by `MAX_CPU`.
"""

from __future__ import annotations

import re

from knd.host.confined import S32
from knd.host.sysfs import SysfsRoot

_NODE = re.compile(r"node(\d{1,4})")
_FIRST_CPU = re.compile(r"(\d{1,5})")
_DIGITS = re.compile(r"[0-9]{1,5}")
MAX_NODES = 1024
MAX_CPU = 8192


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


def parse_cpulist(text: str) -> tuple[int, ...] | None:
    """`0-3,8` → (0, 1, 2, 3, 8); "" → (); None when malformed or beyond MAX_CPU."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not _DIGITS.fullmatch(lo) or (sep and not _DIGITS.fullmatch(hi)):
            return None
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last or last >= MAX_CPU:
            return None
        out.update(range(first, last + 1))
    return tuple(sorted(out))


def format_cpulist(values: tuple[int, ...] | list[int] | set[int]) -> str:
    """(0, 1, 2, 5) → `0-2,5`."""
    items = sorted(set(values))
    runs: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        runs.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(runs)


def device_numa_node(sysfs: SysfsRoot, *device_dir: str) -> int | None:
    """The NUMA node of a device directory (parts below the root); None when unknown (`-1`,
    missing, malformed, oversized)."""
    node = sysfs.read_int(*device_dir, "numa_node", bounds=S32)
    return node if node is not None and 0 <= node < MAX_NODES else None


def node_cpus(sysfs: SysfsRoot, node: int) -> tuple[int, ...] | None:
    text = sysfs.read("devices", "system", "node", f"node{int(node)}", "cpulist")
    return None if text is None else parse_cpulist(text)


def online_cpus(sysfs: SysfsRoot) -> tuple[int, ...] | None:
    text = sysfs.read("devices", "system", "cpu", "online")
    return None if text is None else parse_cpulist(text)
