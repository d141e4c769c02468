"""RDMA port counters from sysfs: `<root>/class/infiniband/<dev>/ports/<port>/counters/<name>`.

Read-only, bounded and confined: the device name must be a plain name (no `/`, not `.`/`..`),
at most `MAX_PORTS` numeric port directories are read, each counter file at most
`MAX_COUNTER_BYTES` bytes and must hold a decimal integer; anything else is skipped, never
raised. `port_rcv_data` / `port_xmit_data` count 4-octet words (InfiniBand PortCounters); the
reader returns octets. Cost: ≤ 6 small reads per port.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MAX_PORTS = 16
MAX_COUNTER_BYTES = 32
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

#: counter file → (metric kind, direction, multiplier)
COUNTERS: dict[str, tuple[str, str, int]] = {
    "port_rcv_data": ("bytes", "rx", 4),
    "port_xmit_data": ("bytes", "tx", 4),
    "port_rcv_packets": ("packets", "rx", 1),
    "port_xmit_packets": ("packets", "tx", 1),
    "port_rcv_errors": ("errors", "rx", 1),
    "port_xmit_discards": ("drops", "tx", 1),
}


@dataclass(frozen=True, slots=True)
class RdmaCounter:
    port: str
    kind: str  # bytes, packets, errors, drops
    direction: str  # rx, tx
    value: int


def _read_counter(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        raw = os.read(fd, MAX_COUNTER_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = raw.strip()
    if len(raw) > MAX_COUNTER_BYTES or not text.isdigit():
        return None
    return int(text)


def read_rdma_counters(device: str, sysfs_root: str | Path = "/sys") -> list[RdmaCounter]:
    """The port counters of RDMA device `device` (empty when it has none or is not there)."""
    if not _NAME.match(device) or device in (".", ".."):
        return []
    ports_dir = Path(sysfs_root) / "class" / "infiniband" / device / "ports"
    try:
        ports = sorted(p for p in os.listdir(ports_dir) if p.isdigit())[:MAX_PORTS]
    except OSError:
        return []
    out: list[RdmaCounter] = []
    for port in ports:
        for name, (kind, direction, factor) in COUNTERS.items():
            value = _read_counter(ports_dir / port / "counters" / name)
            if value is not None:
                out.append(RdmaCounter(port, kind, direction, value * factor))
    return out
