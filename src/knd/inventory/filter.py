"""The admin filter: one CEL expression, in the DRA device-selector environment, over each device.

The expression sees `device.driver` (the driver name) and `device.attributes[domain][id]` (qualified
names split at the first `/`; the `dra.net` and `resource.kubernetes.io` domains always exist,
possibly empty), like a DeviceClass selector. It is compiled once (Rust CEL, the `cel` package
loaded by knd.inventory.cel_engine) at start-up; a syntax error raises `FilterError` with the
compiler's message (start-up fails).

Per device: `true` keeps it, `false` or any non-bool result drops it, and an evaluation error
(e.g. reading an attribute the device does not have — offline scans lack netlink attributes)
keeps it and returns a warning (fail-open, as DraNet). Cost: ≈10 µs per device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knd.api.attributes import DEFAULT_DRIVER_NAME, DRANET_DOMAIN, STANDARD_DOMAIN
from knd.inventory import cel_engine
from knd.inventory.model import Device

#: DraNet's default: do not publish veth interfaces.
DEFAULT_FILTER = f'device.attributes["{DRANET_DOMAIN}"].type != "veth"'


class FilterError(ValueError):
    """The filter expression does not compile (message from the CEL compiler)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    keep: bool
    warning: str | None = None


def activation(device: Device, driver: str) -> dict[str, Any]:
    """The `device` variable a DRA selector sees for this device."""
    domains: dict[str, dict[str, Any]] = {DRANET_DOMAIN: {}, STANDARD_DOMAIN: {}}
    for name, value in device.attributes.items():
        domain, sep, ident = name.partition("/")
        if not sep:
            domain, ident = driver, name
        domains.setdefault(domain, {})[ident] = value
    return {"device": {"driver": driver, "attributes": domains, "capacity": {}}}


class AdminFilter:
    """A compiled admin filter. `AdminFilter("")` keeps everything."""

    def __init__(self, expression: str, driver: str = DEFAULT_DRIVER_NAME) -> None:
        self.expression = expression.strip()
        self.driver = driver
        self._program: Any = None
        if self.expression:
            try:
                self._program = cel_engine.compile(self.expression)
            except Exception as exc:  # the cel package raises ValueError/RuntimeError
                raise FilterError(f"invalid filter expression: {exc}") from exc

    def __call__(self, device: Device) -> Verdict:
        if self._program is None:
            return Verdict(True)
        try:
            result = self._program.execute(activation(device, self.driver))
        except Exception as exc:  # evaluation error: fail open
            detail = f"{type(exc).__name__}: {exc}"
            return Verdict(True, f"{device.name}: filter evaluation failed ({detail}); kept")
        if isinstance(result, bool):
            return Verdict(result)
        return Verdict(False, f"{device.name}: filter returned {type(result).__name__}; dropped")

    def apply(self, devices: list[Device]) -> tuple[list[Device], list[Device], list[str]]:
        """(kept, dropped, warnings)."""
        kept: list[Device] = []
        dropped: list[Device] = []
        warnings: list[str] = []
        for d in devices:
            v = self(d)
            (kept if v.keep else dropped).append(d)
            if v.warning:
                warnings.append(v.warning)
        return kept, dropped, warnings
