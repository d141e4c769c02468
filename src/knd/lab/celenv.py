"""The DRA device-selector CEL environment, emulated on the `cel` engine (Rust core).

Contract: `DeviceSelector(expr)` compiles once (a syntax error raises `SelectorError` with the
compiler's message); `.matches(device)` evaluates it for one device in the Kubernetes DRA
environment: `device.driver`, `device.attributes[domain][id]`, `device.capacity[domain][id]`
(attribute names split at the first '/', unqualified names under the driver's domain). Returns
True/False; a non-bool result or an evaluation error raises `SelectorError` — in Kubernetes that
aborts the claim's allocation.

Known differences from the API server's environment (documented in docs/lab.md): no optional
syntax (`.?x`), no `cel.bind`, no Kubernetes quantity/semver/IP libraries; version attributes
are plain strings; capacities are plain strings. Looking up a domain no device has is an error
unless `known_domains` lists it (the API server yields an empty map).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knd.inventory import cel_engine


class SelectorError(Exception):
    """A selector failed to compile or to evaluate to a bool."""


def attribute_value(attr: Mapping[str, Any]) -> object:
    """The plain value of a v1 DeviceAttribute (`{"string": "x"}` → "x")."""
    for key in ("string", "int", "bool", "version", "strings", "ints", "bools", "versions"):
        if key in attr:
            return attr[key]
    return None


def split_name(name: str, driver: str) -> tuple[str, str]:
    """`domain/id` → (domain, id); an unqualified id belongs to the driver's domain."""
    domain, sep, ident = name.partition("/")
    return (domain, ident) if sep else (driver, name)


@dataclass(frozen=True)
class SliceDevice:
    """One device of one ResourceSlice, as the allocator sees it."""

    driver: str
    pool: str
    name: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    capacity: Mapping[str, Any] = field(default_factory=dict)
    #: `allowMultipleAllocations` (consumable capacity, KEP-5075): several claims may hold it.
    multiple_allocations: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """(driver, pool, device): unique in a cluster."""
        return (self.driver, self.pool, self.name)

    def attribute(self, qualified: str) -> object:
        """The plain value of a fully qualified attribute, or None when absent."""
        domain, ident = split_name(qualified, self.driver)
        for name, attr in self.attributes.items():
            if split_name(name, self.driver) == (domain, ident):
                return attribute_value(attr)
        return None

    def activation(self, known_domains: Iterable[str] = ()) -> dict[str, Any]:
        """The CEL activation `{"device": {...}}` for this device."""
        attrs: dict[str, dict[str, Any]] = {d: {} for d in known_domains}
        attrs.setdefault(self.driver, {})
        for name, attr in self.attributes.items():
            domain, ident = split_name(name, self.driver)
            attrs.setdefault(domain, {})[ident] = attribute_value(attr)
        caps: dict[str, dict[str, Any]] = {d: {} for d in known_domains}
        for name, cap in self.capacity.items():
            domain, ident = split_name(name, self.driver)
            value = cap.get("value") if isinstance(cap, Mapping) else cap
            caps.setdefault(domain, {})[ident] = str(value)
        return {"device": {"driver": self.driver, "attributes": attrs, "capacity": caps}}


class DeviceSelector:
    """A compiled CEL selector (see module docstring)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        try:
            self._program = cel_engine.compile(expression)
        except (ValueError, RuntimeError) as exc:
            raise SelectorError(f"cannot compile {expression!r}: {exc}") from exc

    def matches(self, device: SliceDevice, known_domains: Iterable[str] = ()) -> bool:
        """Evaluate for `device`; raises SelectorError on error or a non-bool result."""
        try:
            result = self._program.execute(device.activation(known_domains))
        except (LookupError, ValueError, RuntimeError, TypeError, ArithmeticError) as exc:
            raise SelectorError(f"{self.expression!r} failed for {device.name}: {exc}") from exc
        if not isinstance(result, bool):
            raise SelectorError(
                f"{self.expression!r} returned {type(result).__name__}, not bool, for {device.name}"
            )
        return result
