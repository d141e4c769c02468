"""Plan a node's pool of ResourceSlices: split devices into slices with stable assignment.

* Capacity: 128 devices per slice, 64 when any device uses list-type attributes or taints
  (`knd.api.limits`).
* Stable assignment: a device stays in the slice (by index) it was in before; new devices fill
  slices with room (lowest index first), then new slices. So a changed or added NIC touches one
  slice. Emptied slices go away, but a pool always has at least one (possibly empty) slice.
* Names: `generateName` `<index as 5 hex digits>-<driver>-<node>-`, as the 1.36 Go helper does;
  the index prefix is how existing slices are matched to planned ones.
Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from knd.api.limits import max_devices_per_slice
from knd.inventory.model import Device

_INDEX = re.compile(r"^([0-9a-f]{5,})-")
API_VERSION = "resource.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class PlannedSlice:
    index: int
    devices: tuple[Device, ...]


def capacity_for(devices: Iterable[Device]) -> int:
    """Devices per slice allowed for this set (list attributes/taints restrict it to 64)."""
    restricted = any(isinstance(v, list | tuple) for d in devices for v in d.attributes.values())
    return max_devices_per_slice(restricted)


def assign(
    devices: Sequence[Device],
    previous: Mapping[int, Iterable[str]] | None = None,
    capacity: int | None = None,
) -> list[PlannedSlice]:
    """Split `devices` into slices, keeping each device in its `previous` slice index if it fits."""
    cap = capacity or capacity_for(devices)
    present = {d.name: d for d in devices}
    placed: set[str] = set()
    slots: dict[int, list[str]] = {}
    for idx in sorted(previous or {}):
        names = [n for n in (previous or {})[idx] if n in present and n not in placed][:cap]
        placed.update(names)
        slots[idx] = names
    remaining = sorted(n for n in present if n not in placed)
    for idx in sorted(slots):
        room = cap - len(slots[idx])
        if room > 0 and remaining:
            slots[idx].extend(remaining[:room])
            remaining = remaining[room:]
    next_idx = max(slots) + 1 if slots else 0
    while remaining:
        slots[next_idx], remaining = remaining[:cap], remaining[cap:]
        next_idx += 1
    nonempty = {i: names for i, names in slots.items() if names}
    if not nonempty:
        nonempty = {min(slots) if slots else 0: []}
    return [
        PlannedSlice(i, tuple(present[n] for n in sorted(nonempty[i]))) for i in sorted(nonempty)
    ]


def slice_index(name: str) -> int | None:
    """The index encoded in a slice name's prefix, or None."""
    m = _INDEX.match(name)
    return int(m.group(1), 16) if m else None


def generate_name(index: int, driver: str, node: str) -> str:
    prefix = f"{index:05x}-{driver}-{node}"
    return prefix[:240].rstrip("-.") + "-"


def slice_spec(
    node: str, driver: str, devices: Sequence[Device], generation: int, count: int
) -> dict[str, Any]:
    """The `spec` of one slice in wire form."""
    return {
        "driver": driver,
        "nodeName": node,
        "pool": {"name": node, "generation": generation, "resourceSliceCount": count},
        "devices": [d.wire() for d in devices],
    }


def slice_object(
    node: str,
    driver: str,
    planned: PlannedSlice,
    generation: int,
    count: int,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole ResourceSlice (metadata.generateName set; no name) ready to create or print."""
    meta: dict[str, Any] = {"generateName": generate_name(planned.index, driver, node)}
    if owner is not None:
        meta["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceSlice",
        "metadata": meta,
        "spec": slice_spec(node, driver, planned.devices, generation, count),
    }


def node_owner(node_name: str, node_uid: str) -> dict[str, Any]:
    """Owner reference to the Node (`controller: true`), so slices go away with the Node."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "name": node_name,
        "uid": node_uid,
        "controller": True,
    }
