"""Kubernetes resource quantities ("1", "500m", "10Gi", "1e3") as exact decimals.

Only what the allocator's consumable-capacity arithmetic needs: `parse` accepts the
`resource.Quantity` serialisation (a signed decimal number, then either a binary suffix
Ki..Ei, a decimal suffix n u m k M G T P E, or an exponent eN/EN) and `render` writes a value
back in plain decimal form, the way the API server canonicalises whole numbers. Pure; O(len).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_FORM = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+|[numkMGTPE]?)"
)
#: Longer than any quantity the API server accepts; bounds the work on hostile input.
MAX_LEN = 64


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def parse(text: object) -> Decimal:
    """The exact value of a quantity (a string, or a plain int as some manifests write it)."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise QuantityError(f"quantity must be a string, got {type(text).__name__}")
    raw = str(text).strip()
    match = _FORM.fullmatch(raw) if len(raw) <= MAX_LEN else None
    if match is None:
        raise QuantityError(f"not a quantity: {raw[:MAX_LEN]!r}")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
        if suffix in _BINARY:
            return value * _BINARY[suffix]
        if suffix[:1] in ("e", "E"):
            return value.scaleb(int(suffix[1:]))
        return value * _DECIMAL[suffix]
    except (InvalidOperation, OverflowError) as exc:
        raise QuantityError(f"not a quantity: {raw!r}") from exc


def render(value: Decimal) -> str:
    """`value` as a plain decimal string: "3", "0.5" (no exponent, no trailing zeros)."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")
