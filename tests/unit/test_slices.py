"""Slice planning: capacity, splitting, stable assignment, names."""

from __future__ import annotations

import pytest

from knd.inventory.model import Device
from knd.inventory.slices import assign, capacity_for, generate_name, slice_index

pytestmark = pytest.mark.unit


def devs(n: int, prefix: str = "d") -> list[Device]:
    return [Device(f"{prefix}{i:04d}", {"dra.net/mtu": 1500}) for i in range(n)]


def test_capacity_128_or_64_with_list_attributes() -> None:
    assert capacity_for(devs(3)) == 128
    listy = Device("x", {"dra.net/ips": ["a", "b"]})  # type: ignore[dict-item]
    assert capacity_for([*devs(3), listy]) == 64


def test_split_130_into_two_slices_and_empty_pool() -> None:
    planned = assign(devs(130))
    assert [(p.index, len(p.devices)) for p in planned] == [(0, 128), (1, 2)]
    assert [p.index for p in assign([])] == [0] and assign([])[0].devices == ()


def test_stable_assignment_keeps_devices_in_their_slice() -> None:
    first = assign(devs(300))
    previous = {p.index: [d.name for d in p.devices] for p in first}
    # a new device sorting first must not shift every slice: it fills the slice with room
    again = assign([Device("a-new", {}), *devs(300)], previous)
    before = {p.index: {d.name for d in p.devices} for p in first}
    after = {p.index: {d.name for d in p.devices} for p in again}
    changed = [i for i in after if after[i] != before.get(i)]
    assert changed == [2] and "a-new" in after[2]
    # removing every device of slice 1 drops that slice, others unchanged
    gone = {d.name for d in first[1].devices}
    third = assign([d for d in devs(300) if d.name not in gone], previous)
    assert [p.index for p in third] == [0, 2]
    assert {d.name for d in third[0].devices} == before[0]


def test_names_carry_the_index() -> None:
    name = generate_name(26, "dra.net", "node-1") + "abcde"
    assert name == "0001a-dra.net-node-1-abcde"
    assert slice_index(name) == 26
    assert slice_index("node-1-dra.net-xyz") is None
