"""The few procfs facts knd reads, through the same confined, bounded reader as sysfs.

`ProcRoot` defaults to `/proc`; tests inject a tree. Unreadable values come back empty or None,
never as exceptions. Cost: one small file read each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from knd.host.confined import ConfinedTree

_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class ProcRoot(ConfinedTree):
    """Where procfs is mounted (default `/proc`)."""

    root: Path = Path("/proc")


def read_boot_id(proc: ProcRoot | None = None) -> str:
    """The kernel's boot id (a UUID that changes on every boot); empty when unreadable."""
    text = (proc or ProcRoot()).read("sys", "kernel", "random", "boot_id", limit=64)
    return text if text is not None and _BOOT_ID.fullmatch(text) else ""
