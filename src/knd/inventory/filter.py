"""The admin filter: one CEL expression over each device, in either of two languages.

* knd's form, the DRA device-selector environment: `device.driver` (the driver name) and
  `device.attributes[domain][id]` (qualified names split at the first `/`; the `dra.net` and
  `resource.kubernetes.io` domains always exist, possibly empty), like a DeviceClass selector.
* DraNet's form (its `--filter`): `attributes[qualified name]` is a `v1.DeviceAttribute` object
  with the Go field names `StringValue`, `IntValue`, `BoolValue`, `VersionValue` (and the list
  fields `StringValues`, `IntValues`, `BoolValues`, `VersionValues`). As in cel-go's native
  types, a field the attribute does not set reads as its zero value (`""`, `0`, `false`, `[]`);
  a name the device does not have is an evaluation error.

Which form: decided after parsing, by the free variables the expression references — `device`
is knd's, `attributes` is DraNet's, both is an error, neither (a constant) is knd's. No text
matching: `"attributes"` inside a string or a comprehension variable named `device` does not
count. The expression is compiled once (Rust CEL, the `cel` package loaded by
knd.inventory.cel_engine) and type-checked in its form's environment (knd.inventory.cel_check)
at start-up; a syntax or type error raises `FilterError` (start-up fails, exit 2).

Per device, DraNet's semantics (pkg/filter): `true` keeps it, `false` or any non-bool result
drops it, and an evaluation error (e.g. reading an attribute the device does not have — offline
scans lack netlink attributes) keeps it and returns a warning (fail-open). Cost: tens of µs
per device (conversion to CEL values dominates); DraNet's form hands the engine only the
DeviceAttribute fields the expression selects (all of them when it uses an attribute whole),
which keeps it within about 1.5x of knd's form instead of 4-5x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knd.api.attributes import DEFAULT_DRIVER_NAME, DRANET_DOMAIN, STANDARD_DOMAIN
from knd.inventory import cel_engine
from knd.inventory.cel_check import DYN, CheckError, Env, ObjectType, analyze, free_variables
from knd.inventory.model import AttrValue, Device

#: DraNet's default: do not publish veth interfaces.
DEFAULT_FILTER = f'device.attributes["{DRANET_DOMAIN}"].type != "veth"'


#: The form an expression is written in (see the module docstring).
KND_FORM = "knd"
DRANET_FORM = "dranet"

#: DraNet's v1.DeviceAttribute as its CEL environment exposes it (Go field names).
_SCALAR_FIELDS: dict[str, str] = {
    "IntValue": "int",
    "BoolValue": "bool",
    "StringValue": "string",
    "VersionValue": "string",
}
_LIST_FIELDS: dict[str, str] = {
    "IntValues": "int",
    "BoolValues": "bool",
    "StringValues": "string",
    "VersionValues": "string",
}
_DEVICE_ATTRIBUTE = ObjectType(
    "v1.DeviceAttribute",
    {**_SCALAR_FIELDS, **{k: ("list", v) for k, v in _LIST_FIELDS.items()}},
)
DRANET_ENV = Env(
    variables={"attributes": ("map", "string", _DEVICE_ATTRIBUTE.name)},
    objects={_DEVICE_ATTRIBUTE.name: _DEVICE_ATTRIBUTE},
)
_KND_DEVICE = ObjectType(
    "dra.Device",
    {
        "driver": "string",
        "attributes": ("map", "string", ("map", "string", DYN)),
        "capacity": ("map", "string", ("map", "string", DYN)),
    },
)
KND_ENV = Env(variables={"device": _KND_DEVICE.name}, objects={_KND_DEVICE.name: _KND_DEVICE})


class FilterError(ValueError):
    """The filter expression does not compile or type-check (the message says why)."""


def detect_form(expression: str) -> str:
    """`KND_FORM` or `DRANET_FORM`, from the free variables; raises FilterError when both."""
    try:
        free = free_variables(expression, {"device", "attributes"})
    except CheckError as exc:
        raise FilterError(f"invalid filter expression: {exc}") from exc
    if free == {"device", "attributes"}:
        raise FilterError(
            "invalid filter expression: it uses both `device` (knd's form, "
            'device.attributes["dra.net"].type) and `attributes` (DraNet\'s form, '
            'attributes["dra.net/type"].StringValue); write it in one of them'
        )
    return DRANET_FORM if "attributes" in free else KND_FORM


@dataclass(frozen=True, slots=True)
class Verdict:
    keep: bool
    warning: str | None = None


_ZERO: dict[str, Any] = {
    "IntValue": 0,
    "BoolValue": False,
    "StringValue": "",
    "VersionValue": "",
    **{name: () for name in _LIST_FIELDS},
}
ALL_FIELDS = frozenset(_ZERO)


def _set_field(value: AttrValue) -> tuple[str, Any]:
    if isinstance(value, bool):
        return "BoolValue", value
    if isinstance(value, int):
        return "IntValue", value
    if isinstance(value, tuple):
        return "IntValues", list(value)
    return "StringValue", value


def _dranet_attribute(value: AttrValue, fields: frozenset[str]) -> dict[str, Any]:
    """One attribute as DraNet's expression sees it: each of `fields`, unset ones zero."""
    out = {name: (list(_ZERO[name]) if name in _LIST_FIELDS else _ZERO[name]) for name in fields}
    name, v = _set_field(value)
    if name in fields:
        out[name] = v
    return out


def dranet_activation(device: Device, fields: frozenset[str] = ALL_FIELDS) -> dict[str, Any]:
    """The `attributes` variable DraNet's filter sees: qualified name → DeviceAttribute, with
    the `fields` the expression can read (all by default; fewer values cost less to convert)."""
    return {"attributes": {k: _dranet_attribute(v, fields) for k, v in device.attributes.items()}}


def activation(device: Device, driver: str) -> dict[str, Any]:
    """The `device` variable a DRA selector sees for this device."""
    domains: dict[str, dict[str, Any]] = {DRANET_DOMAIN: {}, STANDARD_DOMAIN: {}}
    for name, value in device.attributes.items():
        domain, sep, ident = name.partition("/")
        if not sep:
            domain, ident = driver, name
        domains.setdefault(domain, {})[ident] = list(value) if isinstance(value, tuple) else value
    return {"device": {"driver": driver, "attributes": domains, "capacity": {}}}


class AdminFilter:
    """A compiled admin filter. `AdminFilter("")` keeps everything."""

    def __init__(self, expression: str, driver: str = DEFAULT_DRIVER_NAME) -> None:
        self.expression = expression.strip()
        self.driver = driver
        self._program: Any = None
        self.form = KND_FORM
        self._fields = ALL_FIELDS
        if self.expression:
            try:
                self._program = cel_engine.compile(self.expression)
            except Exception as exc:  # the cel package raises ValueError/RuntimeError
                raise FilterError(f"invalid filter expression: {exc}") from exc
            self.form = detect_form(self.expression)
            env = DRANET_ENV if self.form == DRANET_FORM else KND_ENV
            try:
                analysis = analyze(self.expression, env)
            except CheckError as exc:
                raise FilterError(
                    f"filter expression ({self.form} form) does not type-check: {exc}"
                ) from exc
            needed = analysis.fields_needed(_DEVICE_ATTRIBUTE.name)
            self._fields = ALL_FIELDS if needed is None else needed

    def __call__(self, device: Device) -> Verdict:
        if self._program is None:
            return Verdict(True)
        try:
            if self.form == DRANET_FORM:
                result = self._program.execute(dranet_activation(device, self._fields))
            else:
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
