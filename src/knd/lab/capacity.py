"""Consumable capacity (KEP-5075) for the allocator: what one request takes of one device.

The rules kube-scheduler's DRA allocator applies (resource.k8s.io/v1 `DeviceCapacity`,
`CapacityRequestPolicy`, a request's `capacity.requests`):
* a request may name only capacities the device has; on a device that allows one allocation
  the named amount must not exceed the capacity's value;
* on a device with `allowMultipleAllocations`, every capacity of the device is consumed: the
  requested amount, or without one the policy's `default`, or without a policy the whole value;
  `validValues` round a request up to the smallest listed value, `validRange` up to `min` and
  then to the next `min + k*step`, and a result above `max` (or above every valid value) does
  not fit; what all allocations consume together must not exceed the value.

Pure functions over the slice and claim JSON; quantities are exact decimals (knd.lab.quantity).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from knd.lab.celenv import SliceDevice, split_name
from knd.lab.quantity import QuantityError, parse, render

#: (driver, pool, device) -> capacity name (as the slice spells it) -> amount consumed.
Consumed = Mapping[tuple[str, str, str], Mapping[str, Decimal]]


def consumed_by(
    results: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[str, Decimal]]:
    """Sum the `consumedCapacity` of allocation results (other claims' `status.allocation`)."""
    out: dict[tuple[str, str, str], dict[str, Decimal]] = {}
    for r in results:
        taken = r.get("consumedCapacity") or {}
        if not isinstance(taken, Mapping):
            continue
        key = (str(r.get("driver")), str(r.get("pool")), str(r.get("device")))
        per = out.setdefault(key, {})
        for name, amount in taken.items():
            try:
                per[str(name)] = per.get(str(name), Decimal(0)) + parse(amount)
            except QuantityError:
                continue  # not ours to validate: the API server did
    return out


def _same(a: str, b: str, driver: str) -> bool:
    return split_name(a, driver) == split_name(b, driver)


def _policy_amount(want: Decimal | None, value: Decimal, policy: Any) -> tuple[Decimal, str]:
    """(amount consumed, "" or why the request cannot be met) under one capacity's policy."""
    if not isinstance(policy, Mapping):
        return (value if want is None else want), ""
    if want is None:
        return (parse(policy["default"]) if policy.get("default") is not None else value), ""
    valid = policy.get("validValues")
    if valid:
        fits = sorted(v for v in map(parse, valid) if v >= want)
        if not fits:
            return want, f"{render(want)} is above every valid value"
        return fits[0], ""
    rng = policy.get("validRange")
    if not isinstance(rng, Mapping):
        return want, ""
    low = parse(rng.get("min", "0"))
    amount = max(want, low)
    step = parse(rng["step"]) if rng.get("step") else Decimal(0)
    if step > 0:
        rest = (amount - low) % step
        if rest:
            amount += step - rest
    if rng.get("max") is not None and amount > parse(rng["max"]):
        return amount, f"{render(amount)} is above the maximum {rng['max']}"
    return amount, ""


def consumption(
    device: SliceDevice, exact: Mapping[str, Any], consumed: Consumed
) -> tuple[str, dict[str, Decimal]]:
    """("" and what `exact` would consume of `device`) or (why it does not fit, {})."""
    asked = ((exact.get("capacity") or {}).get("requests")) or {}
    try:
        wanted = {str(n): parse(v) for n, v in asked.items()}
        values = {
            str(n): parse(c.get("value") if isinstance(c, Mapping) else c)
            for n, c in device.capacity.items()
        }
    except QuantityError as exc:
        return f"capacity: {exc}", {}
    mine: dict[str, Decimal | None] = {name: None for name in values}
    for name, amount in wanted.items():
        cap = next((c for c in values if _same(c, name, device.driver)), None)
        if cap is None:
            return f"capacity {name}: the device has none", {}
        mine[cap] = amount
    if not device.multiple_allocations:
        for cap, asked_amount in mine.items():
            if asked_amount is not None and asked_amount > values[cap]:
                return (
                    f"capacity {cap}: {render(asked_amount)} asked, "
                    f"the device has {render(values[cap])}",
                    {},
                )
        return "", {}
    use: dict[str, Decimal] = {}
    held = consumed.get(device.key) or {}
    for cap, value in values.items():
        policy = (
            device.capacity[cap].get("requestPolicy")
            if isinstance(device.capacity[cap], Mapping)
            else None
        )
        try:
            amount, why = _policy_amount(mine[cap], value, policy)
        except (QuantityError, KeyError) as exc:
            return f"capacity {cap}: bad requestPolicy ({exc})", {}
        if why:
            return f"capacity {cap}: {why}", {}
        left = value - held.get(cap, Decimal(0))
        if amount > left:
            return (
                f"capacity {cap}: {render(amount)} needed, {render(left)} of {render(value)} left",
                {},
            )
        use[cap] = amount
    return "", use
