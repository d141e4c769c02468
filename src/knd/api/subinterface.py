"""Rules for `subInterface` (a macvlan/ipvlan child of the device, shared between pods).

Contract: `problems(cfg)` returns every FieldError of the sub-interface part of a config (empty
when there is none or it is valid); pure, never raises.

* `type` is required: `macvlan` or `ipvlan`;
* `mode`: macvlan `bridge` (default), `private`, `vepa`, `passthru`; ipvlan `l2` (default),
  `l3`, `l3s`; `flag` (ipvlan only): `bridge` (default), `private`, `vepa`;
* `ipRanges[]`: `subnet` is a CIDR without host bits; `start`/`end`, when set, are addresses of
  that subnet with start <= end; at most 16 ranges;
* the device's own properties cannot be set through a child (DraNet rejects them the same way):
  `interface.{mtu, hardwareAddr, gsoMaxSize, groMaxSize, gsoIPv4MaxSize, groIPv4MaxSize,
  arpIgnore, arpAnnounce, dhcp, vrf, disableEbpfPrograms}` and `ethtool`.
"""

from __future__ import annotations

import ipaddress

from knd.api.config import IpRangeConfig, NetworkConfig, SubInterfaceConfig
from knd.api.errors import FieldError

MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
IPVLAN_MODES = ("l2", "l3", "l3s")
IPVLAN_FLAGS = ("bridge", "private", "vepa")
TYPES = ("macvlan", "ipvlan")
MAX_RANGES = 16
_FORBIDDEN = (
    "mtu",
    "hardwareAddr",
    "gsoMaxSize",
    "groMaxSize",
    "gsoIPv4MaxSize",
    "groIPv4MaxSize",
    "arpIgnore",
    "arpAnnounce",
    "dhcp",
    "vrf",
    "disableEbpfPrograms",
)


def default_mode(kind: str) -> str:
    return "bridge" if kind == "macvlan" else "l2"


def _kind_problems(sub: SubInterfaceConfig) -> list[FieldError]:
    errors: list[FieldError] = []
    if sub.type not in TYPES:
        errors.append(FieldError("subInterface.type", f"must be one of {', '.join(TYPES)}"))
    modes = MACVLAN_MODES if sub.type == "macvlan" else IPVLAN_MODES
    if sub.mode is not None and sub.type in TYPES and sub.mode not in modes:
        errors.append(FieldError("subInterface.mode", f"must be one of {', '.join(modes)}"))
    if sub.flag is not None:
        if sub.type != "ipvlan":
            errors.append(FieldError("subInterface.flag", "is only valid for type ipvlan"))
        elif sub.flag not in IPVLAN_FLAGS:
            errors.append(
                FieldError("subInterface.flag", f"must be one of {', '.join(IPVLAN_FLAGS)}")
            )
    return errors


def _range_problems(path: str, r: IpRangeConfig) -> list[FieldError]:
    try:
        net = ipaddress.ip_network(r.subnet or "", strict=True)
    except ValueError as exc:
        return [FieldError(f"{path}.subnet", f"must be a CIDR network: {exc}")]
    errors: list[FieldError] = []
    bounds = []
    for name, value in (("start", r.start), ("end", r.end)):
        if value is None:
            continue
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            errors.append(FieldError(f"{path}.{name}", "must be an IP address"))
            continue
        if addr not in net:
            errors.append(FieldError(f"{path}.{name}", f"must be inside {net}"))
        else:
            bounds.append(addr)
    if r.start and r.end and len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
        errors.append(FieldError(path, "start must not be after end"))
    return errors


def _device_property_problems(cfg: NetworkConfig) -> list[FieldError]:
    """The device's own properties cannot be set through a child."""
    errors: list[FieldError] = []
    if cfg.interface is not None:
        data = cfg.interface.model_dump(by_alias=True, exclude_none=True)
        for field in _FORBIDDEN:
            if field in data and data[field] not in (False, "", []):
                errors.append(FieldError(f"interface.{field}", "not supported with subInterface"))
    if cfg.ethtool is not None and (cfg.ethtool.features or cfg.ethtool.private_flags):
        errors.append(FieldError("ethtool", "not supported with subInterface"))
    return errors


def problems(cfg: NetworkConfig) -> list[FieldError]:
    sub = cfg.sub_interface
    if sub is None:
        return []
    errors = _kind_problems(sub)
    ranges = sub.ip_ranges or []
    if len(ranges) > MAX_RANGES:
        errors.append(FieldError("subInterface.ipRanges", f"at most {MAX_RANGES} ranges"))
    for i, r in enumerate(ranges[:MAX_RANGES]):
        errors += _range_problems(f"subInterface.ipRanges[{i}]", r)
    return errors + _device_property_problems(cfg)
