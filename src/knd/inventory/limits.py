"""Fit a device's attributes into the resource.k8s.io/v1 limits before it is published.

* List-like strings (`dra.net/ipv4`, `ipv6`, `tcFilterNames`) are joined and truncated on element
  boundaries to 64 characters; any other string longer than 64 is cut to 64.
* At most 32 attributes (+ capacities) per device: attributes not in `PRIORITY_ORDER` are dropped
  first (in reverse name order), then from the end of `PRIORITY_ORDER` (docs/discovery.md).
Every change is returned as a warning so the caller can log it.
"""

from __future__ import annotations

from collections.abc import Mapping

from knd.api import attributes as attr
from knd.api.limits import (
    MAX_ATTRIBUTE_STRING_LEN,
    MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE,
    truncate_list_string,
)
from knd.inventory.model import AttrValue

LIST_ATTRIBUTES = frozenset(
    {attr.IPV4, attr.IPV6, attr.TC_FILTER_NAMES, attr.TCX_PROGRAM_NAMES, attr.GCE_IP_ALIASES}
)
_RANK = {name: i for i, name in enumerate(attr.PRIORITY_ORDER)}


def list_value(items: list[str] | tuple[str, ...]) -> str:
    """Comma-join, truncated on element boundaries to the 64-character string limit."""
    return truncate_list_string(list(items), MAX_ATTRIBUTE_STRING_LEN)


def drop_order(names: list[str]) -> list[str]:
    """`names` from least to most valuable: unknown ones first, then PRIORITY_ORDER reversed."""
    unknown = sorted((n for n in names if n not in _RANK), reverse=True)
    known = sorted((n for n in names if n in _RANK), key=lambda n: -_RANK[n])
    return unknown + known


def fit(
    device: str,
    attrs: Mapping[str, AttrValue],
    capacities: int = 0,
    limit: int = MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE,
) -> tuple[dict[str, AttrValue], list[str]]:
    """Attributes within the API limits, and one warning per change made."""
    out: dict[str, AttrValue] = {}
    warnings: list[str] = []
    for name, value in attrs.items():
        fitted = value
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_STRING_LEN:
            if name in LIST_ATTRIBUTES:
                fitted = truncate_list_string(value.split(","))
            else:
                fitted = value[:MAX_ATTRIBUTE_STRING_LEN]
            warnings.append(f"{device}: {name} truncated to {MAX_ATTRIBUTE_STRING_LEN} characters")
        out[name] = fitted
    room = limit - capacities
    if len(out) > room:
        doomed = drop_order(list(out))[: len(out) - room]
        for name in doomed:
            del out[name]
        warnings.append(
            f"{device}: {len(doomed)} attribute(s) dropped to stay within {limit} per device: "
            + ", ".join(doomed)
        )
    return out, warnings
