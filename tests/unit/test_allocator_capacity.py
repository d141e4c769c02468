"""Consumable capacity (KEP-5075) in knd's allocator: shares counted across claims, request
policies applied, results carrying `consumedCapacity` and a `shareID`; quantities parsed exactly.
The verdicts are cross-checked against the real kube-scheduler in tests/e2e/test_k8s_sharing.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from knd.inventory.model import share_capacity
from knd.lab.allocator import AllocationError, Allocator
from knd.lab.capacity import consumed_by
from knd.lab.quantity import QuantityError, parse, render

NODE = "n1"
CLASS = {
    "dra.net": {
        "kind": "DeviceClass",
        "metadata": {"name": "dra.net"},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "dra.net"'}}]},
    }
}


def slice_of(*devices: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "ResourceSlice",
        "spec": {
            "driver": "dra.net",
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": list(devices),
        },
    }


def device(name: str, capacity: dict[str, Any], shareable: bool = True) -> dict[str, Any]:
    dev: dict[str, Any] = {"name": name, "attributes": {}, "capacity": capacity}
    if shareable:
        dev["allowMultipleAllocations"] = True
    return dev


def claim(capacity: dict[str, str] | None = None) -> dict[str, Any]:
    exact: dict[str, Any] = {"deviceClassName": "dra.net"}
    if capacity is not None:
        exact["capacity"] = {"requests": capacity}
    return {"devices": {"requests": [{"name": "nic", "exactly": exact}]}}


def allocate_in_turn(alloc: Allocator, claims: list[dict[str, Any]]) -> list[str]:
    """Allocate claims one after another, each seeing what the earlier ones hold; returns
    "ok" or the blocker for each."""
    held: list[dict[str, Any]] = []
    out = []
    for c in claims:
        in_use = {(r["driver"], r["pool"], r["device"]) for r in held}
        try:
            allocation, _ = alloc.allocate(c, in_use, consumed_by(held))
        except AllocationError as exc:
            out.append(exc.args[1].requests[-1].verdicts[0].reason)
            continue
        held.extend(allocation["devices"]["results"])
        out.append("ok")
    return out


def test_knd_shares_admit_n_claims_then_say_why_not() -> None:
    alloc = Allocator(
        [slice_of(device("eth1", {"dra.net/shares": share_capacity(3)}))], CLASS, NODE
    )
    got = allocate_in_turn(alloc, [claim() for _ in range(4)])
    assert got == ["ok", "ok", "ok", "capacity dra.net/shares: 1 needed, 0 of 3 left"]


def test_results_carry_one_share_each() -> None:
    alloc = Allocator(
        [slice_of(device("eth1", {"dra.net/shares": share_capacity(2)}))], CLASS, NODE
    )
    first, _ = alloc.allocate(claim())
    (r,) = first["devices"]["results"]
    assert r["consumedCapacity"] == {"dra.net/shares": "1"}
    held = first["devices"]["results"]
    second, _ = alloc.allocate(claim(), {("dra.net", NODE, "eth1")}, consumed_by(held))
    (r2,) = second["devices"]["results"]
    assert r2["device"] == "eth1" and r2["shareID"] != r["shareID"]


def test_a_request_for_more_takes_more_and_a_short_name_finds_the_capacity() -> None:
    alloc = Allocator(
        [slice_of(device("eth1", {"dra.net/shares": share_capacity(4)}))], CLASS, NODE
    )
    # "shares" is the driver-relative spelling of dra.net/shares
    assert allocate_in_turn(alloc, [claim({"shares": "3"}), claim({"dra.net/shares": "2"})]) == [
        "ok",
        "capacity dra.net/shares: 2 needed, 1 of 4 left",
    ]


@pytest.mark.parametrize(
    ("policy", "asked", "consumed"),
    [
        ({"default": "1", "validRange": {"min": "1", "step": "2"}}, "2", "3"),  # up to min+k*step
        ({"default": "1", "validRange": {"min": "4"}}, "1", "4"),  # up to min
        ({"default": "1", "validValues": ["1", "5", "10"]}, "2", "5"),  # smallest valid >= asked
        ({"default": "2"}, None, "2"),  # the default when nothing is asked
        (None, None, "10"),  # no policy and nothing asked: all of it
        (None, "3", "3"),  # no policy: what is asked
        ({"default": "1", "validRange": {"min": "1"}}, "500m", "1"),  # quantities, not ints
    ],
)
def test_request_policy_rounds_as_the_scheduler_does(
    policy: dict[str, Any] | None, asked: str | None, consumed: str
) -> None:
    cap: dict[str, Any] = {"value": "10"}
    if policy is not None:
        cap["requestPolicy"] = policy
    alloc = Allocator([slice_of(device("eth1", {"dra.net/bw": cap}))], CLASS, NODE)
    allocation, _ = alloc.allocate(claim(None if asked is None else {"dra.net/bw": asked}))
    assert allocation["devices"]["results"][0]["consumedCapacity"] == {"dra.net/bw": consumed}


@pytest.mark.parametrize(
    ("policy", "asked", "why"),
    [
        ({"validRange": {"min": "1", "max": "4"}}, "5", "5 is above the maximum 4"),
        ({"validRange": {"min": "1", "step": "3", "max": "6"}}, "5", "7 is above the maximum 6"),
        ({"validValues": ["1", "2"]}, "3", "3 is above every valid value"),
    ],
)
def test_request_policy_refusals_name_the_capacity(
    policy: dict[str, Any], asked: str, why: str
) -> None:
    cap = {"value": "10", "requestPolicy": policy}
    alloc = Allocator([slice_of(device("eth1", {"dra.net/bw": cap}))], CLASS, NODE)
    assert allocate_in_turn(alloc, [claim({"dra.net/bw": asked})]) == [
        f"capacity dra.net/bw: {why}"
    ]


def test_devices_that_allow_one_allocation_keep_their_rules() -> None:
    dev = device("eth1", {"dra.net/bw": {"value": "10"}}, shareable=False)
    alloc = Allocator([slice_of(dev)], CLASS, NODE)
    # taken by another claim: not a candidate, whatever its capacity
    assert allocate_in_turn(alloc, [claim(), claim()]) == [
        "ok",
        "already allocated to another claim",
    ]
    allocation, _ = alloc.allocate(claim({"dra.net/bw": "10"}))
    assert "consumedCapacity" not in allocation["devices"]["results"][0]
    assert "shareID" not in allocation["devices"]["results"][0]
    assert allocate_in_turn(alloc, [claim({"dra.net/bw": "11"})]) == [
        "capacity dra.net/bw: 11 asked, the device has 10"
    ]
    assert allocate_in_turn(alloc, [claim({"dra.net/other": "1"})]) == [
        "capacity dra.net/other: the device has none"
    ]


def test_explain_prints_the_capacity_verdict(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from knd.cli.main import main

    docs = [
        slice_of(device("eth1", {"dra.net/shares": share_capacity(1)})),
        CLASS["dra.net"],
        {"kind": "ResourceClaim", "metadata": {"name": "c"}, "spec": claim({"shares": "2"})},
    ]
    path = tmp_path / "in.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    assert main(["explain", str(path), "-v"]) == 1
    assert "capacity dra.net/shares: 2 needed, 1 of 1 left" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("500m", Decimal("0.5")),
        ("10Gi", Decimal(10 * 2**30)),
        ("1.5k", Decimal(1500)),
        ("1e3", Decimal(1000)),
        ("2E-3", Decimal("0.002")),
        ("+.5", Decimal("0.5")),
        (7, Decimal(7)),
    ],
)
def test_quantities_parse_exactly(text: str | int, value: Decimal) -> None:
    assert parse(text) == value


@pytest.mark.parametrize("text", ["", "1.2.3", "10 Gi", "Gi", "1Ki2", "1" * 65, True, None, 1.5])
def test_not_quantities_are_refused(text: object) -> None:
    with pytest.raises(QuantityError):
        parse(text)


def test_render_is_plain_decimal() -> None:
    assert [render(Decimal(x)) for x in ("3", "3.0", "0.50", "1E+3")] == ["3", "3", "0.5", "1000"]
