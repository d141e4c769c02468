"""NUMA facts from sysfs: a device's NUMA node, a node's CPUs, the online CPUs (read-only).

Paths (below an injectable root, default `/sys`): `<dev>/numa_node` of a device directory
(`bus/pci/devices/<BDF>`, `class/net/<if>/device`, `class/infiniband/<dev>/device`),
`devices/system/node/node<N>/cpulist`, `devices/system/cpu/online`. Every read is bounded
(`MAX_READ` bytes); a missing, oversized or malformed file yields None, never an exception.
`parse_cpulist` is the kernel's list format (`0-3,8,10-11`), bounded by `MAX_CPU`.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_READ = 4096
MAX_CPU = 8192


def _read(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, MAX_READ + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) > MAX_READ:
        return None
    return raw.decode("ascii", "replace").strip()


def parse_cpulist(text: str) -> tuple[int, ...] | None:
    """`0-3,8` → (0, 1, 2, 3, 8); "" → (); None when malformed or beyond MAX_CPU."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
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


def device_numa_node(device_dir: Path) -> int | None:
    """The NUMA node of a device directory; None when unknown (`-1`, missing, malformed)."""
    text = _read(device_dir / "numa_node")
    if text is None or not text.isdigit():
        return None
    node = int(text)
    return node if node < MAX_CPU else None


def node_cpus(sysfs_root: Path, node: int) -> tuple[int, ...] | None:
    text = _read(sysfs_root / "devices" / "system" / "node" / f"node{int(node)}" / "cpulist")
    return None if text is None else parse_cpulist(text)


def online_cpus(sysfs_root: Path) -> tuple[int, ...] | None:
    text = _read(sysfs_root / "devices" / "system" / "cpu" / "online")
    return None if text is None else parse_cpulist(text)
