"""Inventory data types: a Device with typed attributes, why something was excluded, a scan result.

`Device.wire()` is the `resource.k8s.io/v1` Device JSON (`{"name": …, "attributes": {qualified
name: {"string"|"int"|"bool": value}}}`, or `{"ints": [...]}` for an int list — the
list-typed `resource.kubernetes.io/numaNode` under the `DRAListTypeAttributes` gate), the form
ResourceSlices carry and `knd inventory -o json` prints. A device with `shares > 0` is published
shareable (DRA consumable capacity, KEP-5075): `allowMultipleAllocations: true` and the capacity
`dra.net/shares` = shares, each allocation consuming 1 unless its request asks for more
(`requestPolicy`: default 1, whole numbers from 1); the scheduler then gives it to at most
`shares` claims at once, and a claim that wants the whole device asks for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from knd.api import attributes as attr

AttrValue = bool | int | str | tuple[int, ...]


def wire_value(value: AttrValue) -> dict[str, Any]:
    """One DeviceAttribute in wire form (bool is checked before int: bool is an int in Python)."""
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, tuple):
        return {"ints": list(value)}
    return {"string": value}


def from_wire_value(value: Mapping[str, Any]) -> AttrValue | None:
    for key in ("bool", "int", "string", "version"):
        if value.get(key) is not None:
            v = value[key]
            return v if isinstance(v, bool | int | str) else None
    ints = value.get("ints")
    if isinstance(ints, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ints):
        return tuple(ints)
    return None


@dataclass(frozen=True, slots=True)
class Device:
    """One publishable device: a DNS-label name and qualified-name → scalar attributes."""

    name: str
    attributes: Mapping[str, AttrValue]
    #: consumable share count (0: not shareable, one claim at a time, as DraNet publishes)
    shares: int = 0

    def get(self, attribute: str) -> AttrValue | None:
        return self.attributes.get(attribute)

    def wire(self) -> dict[str, Any]:
        attrs = {k: wire_value(self.attributes[k]) for k in sorted(self.attributes)}
        out: dict[str, Any] = {"name": self.name, "attributes": attrs}
        if self.shares > 0:
            out["allowMultipleAllocations"] = True
            out["capacity"] = {attr.SHARES: share_capacity(self.shares)}
        return out


def share_capacity(shares: int) -> dict[str, Any]:
    """The `dra.net/shares` DeviceCapacity: `shares` in all, 1 per allocation by default, whole
    numbers only (`step` 1; the API requires min + step <= value, so not with 1 share)."""
    valid: dict[str, str] = {"min": "1"}
    if shares >= 2:
        valid["step"] = "1"
    return {"value": str(shares), "requestPolicy": {"default": "1", "validRange": valid}}


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Something discovery saw and does not publish. `subject` is an ifName or PCI address."""

    subject: str
    reason: str
    device: str | None = None


@dataclass(slots=True)
class Discovery:
    """One scan's result: devices sorted by name, exclusions, and warnings (also logged)."""

    devices: list[Device] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    offline: bool = False

    def by_name(self) -> dict[str, Device]:
        return {d.name: d for d in self.devices}
