"""Vendor, device and subsystem names from the system's `pci.ids` database.

Looks in `/usr/share/misc/pci.ids` then `/usr/share/hwdata/pci.ids` (or an explicit path). When
no database is present every lookup returns None and callers publish the numeric ids. The file is
indexed once per path (vendor names plus the offset of each vendor's block) and a vendor's
devices and subsystems are parsed on first lookup, so the daemon holds the names of the vendors
it has seen rather than the whole database (~13 MB parsed).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from knd.host.files import read_bounded

log = logging.getLogger(__name__)

DEFAULT_PATHS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))
#: The real database is ~1.4 MB; anything far larger is not one (read through knd.host.files).
MAX_PCI_IDS_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class PciIds:
    """Parsed names. Keys are lower-case 4-digit hex ids."""

    vendors: dict[str, str] = field(default_factory=dict)
    devices: dict[tuple[str, str], str] = field(default_factory=dict)
    subsystems: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    source: Path | None = None
    text: str = ""  # the raw database when indexed lazily
    blocks: dict[str, tuple[int, int]] = field(default_factory=dict)  # vendor → text span
    parsed: set[str] = field(default_factory=set)  # vendors whose block is parsed

    def _ensure(self, vendor_id: str) -> None:
        if vendor_id in self.parsed or vendor_id not in self.blocks:
            return
        self.parsed.add(vendor_id)
        start, end = self.blocks[vendor_id]
        block = parse(self.text[start:end])
        self.devices.update(block.devices)
        self.subsystems.update(block.subsystems)

    def vendor(self, vendor_id: str) -> str | None:
        return self.vendors.get(vendor_id.lower())

    def device(self, vendor_id: str, device_id: str) -> str | None:
        self._ensure(vendor_id.lower())
        return self.devices.get((vendor_id.lower(), device_id.lower()))

    def subsystem(
        self, vendor_id: str, device_id: str, sub_vendor: str, sub_device: str
    ) -> str | None:
        self._ensure(vendor_id.lower())
        key = (vendor_id.lower(), device_id.lower(), sub_vendor.lower(), sub_device.lower())
        return self.subsystems.get(key)


def parse(text: str, source: Path | None = None) -> PciIds:
    """Parse the pci.ids format: `vvvv  name`, `\\tdddd  name`, `\\t\\tssvv ssdd  name`.

    The device-class section (`C xx …`) at the end is ignored.
    """
    ids = PciIds(source=source)
    vendor: str | None = None
    device: str | None = None
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if line[0] != "\t":
            if line.startswith("C "):
                break
            vendor, device = line[:4].lower(), None
            ids.vendors[vendor] = line[4:].strip()
        elif line[1] != "\t":
            if vendor is None:
                continue
            device = line[1:5].lower()
            ids.devices[(vendor, device)] = line[5:].strip()
        elif vendor is not None and device is not None:
            body = line[2:]
            ids.subsystems[(vendor, device, body[:4].lower(), body[5:9].lower())] = body[9:].strip()
    return ids


def index(text: str, source: Path | None = None) -> PciIds:
    """Vendor names and block offsets only; devices and subsystems parse on first lookup."""
    ids = PciIds(source=source, text=text)
    offset = 0
    current: str | None = None
    start = 0
    for line in text.splitlines(keepends=True):
        if line and line[0] not in "\t#\n":
            if current is not None:
                ids.blocks[current] = (start, offset)
                current = None
            if line.startswith("C "):
                break
            current, start = line[:4].lower(), offset
            ids.vendors[current] = line[4:].strip()
        offset += len(line)
    if current is not None:
        ids.blocks[current] = (start, offset)
    return ids


@functools.lru_cache(maxsize=8)
def _load(path: Path) -> PciIds:
    try:
        data = read_bounded(path, MAX_PCI_IDS_BYTES)
    except OSError as exc:
        log.warning("pci.ids not used: %s", exc)
        return PciIds()
    return index(data.decode("utf-8", errors="replace"), source=path)


def load(path: Path | None = None) -> PciIds:
    """The database at `path`, else the first system one found, else an empty database."""
    candidates = (path,) if path is not None else DEFAULT_PATHS
    for candidate in candidates:
        if candidate.is_file():
            return _load(candidate)
    return PciIds()
