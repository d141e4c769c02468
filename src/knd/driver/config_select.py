"""Which opaque configs apply to an allocated device, and the merged NetworkConfig.

Sources: `status.allocation.devices.config[]` of the claim (the scheduler copies DeviceClass
configs there with `source: FromClass`, then the claim's own with `source: FromClaim`). An entry
applies to a result when its `opaque.driver` is ours and its `requests` is empty or names the
result's request (`req` or the parent `req` of `req/sub`). Applicable configs are decoded
strictly, merged in order (class before claim; later wins) and validated. Unlike DraNet (first
valid config wins, invalid ones silently skipped), a broken config is an error naming the entry
and the field, so the user learns about it.

MERGE/VALIDATION STAND-IN: knd.api.merge / knd.api.validation were not in this worktree yet;
`merge_configs` and `basic_problems` below are minimal local versions. At integration, replace
their bodies with `knd.api.merge.merge_configs` and `knd.api.validation.validate`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from knd.api.config import NetworkConfig, decode
from knd.api.errors import ConfigError
from knd.driver.errors import ClaimError

_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5,19}$")
_SOURCE_ORDER = {"FromClass": 0, "FromClaim": 1}


def base_request(request: str) -> str:
    """`req/sub` → `req` (kubelet wants base request names; configs may name either)."""
    return request.split("/", 1)[0]


def applicable_configs(
    allocation: Mapping[str, Any], driver: str, request: str
) -> list[tuple[int, str, Any]]:
    """(index in allocation.devices.config, source, parameters) for our driver and request."""
    entries = (allocation.get("devices") or {}).get("config") or []
    found: list[tuple[int, str, Any]] = []
    for i, entry in enumerate(entries):
        opaque = entry.get("opaque") or {}
        if opaque.get("driver") != driver:
            continue
        requests = entry.get("requests") or []
        if requests and request not in requests and base_request(request) not in requests:
            continue
        found.append((i, str(entry.get("source", "")), opaque.get("parameters")))
    found.sort(key=lambda t: (_SOURCE_ORDER.get(t[1], 2), t[0]))
    return found


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_configs(*configs: NetworkConfig) -> NetworkConfig:
    """Later wins: objects merge field by field, scalars and lists are replaced (stand-in)."""
    merged: dict[str, Any] = {}
    for cfg in configs:
        merged = _deep_merge(merged, cfg.to_json_obj())
    return decode(merged)


def basic_problems(cfg: NetworkConfig) -> list[str]:
    """The checks that protect the host (names become netlink attributes) (stand-in)."""
    problems: list[str] = []
    iface = cfg.interface
    if iface is not None:
        if iface.name is not None and (not _IFNAME.match(iface.name) or iface.name in (".", "..")):
            problems.append(
                "interface.name: must be 1-15 characters of letters, digits, '-', '_', '.'"
            )
        for j, addr in enumerate(iface.addresses or []):
            if "/" not in addr:
                problems.append(f"interface.addresses[{j}]: {addr!r} is not in CIDR notation")
                continue
            try:
                ipaddress.ip_interface(addr)
            except ValueError:
                problems.append(f"interface.addresses[{j}]: {addr!r} is not in CIDR notation")
        if iface.dhcp and iface.addresses:
            problems.append("interface.dhcp: cannot be combined with interface.addresses")
        if iface.mtu is not None and iface.mtu < 68:
            problems.append("interface.mtu: must be at least 68")
        if iface.hardware_addr is not None and not _MAC.match(iface.hardware_addr):
            problems.append("interface.hardwareAddr: not a MAC address")
        if (
            iface.vrf is not None
            and iface.vrf.name is not None
            and not _IFNAME.match(iface.vrf.name)
        ):
            problems.append("interface.vrf.name: must be a valid interface name")
    for j, route in enumerate(cfg.routes or []):
        try:
            ipaddress.ip_network(route.destination or "", strict=False)
        except ValueError:
            problems.append(f"routes[{j}].destination: must be a CIDR")
    return problems


def resolve_config(
    allocation: Mapping[str, Any], driver: str, request: str, device_label: str
) -> NetworkConfig:
    """The merged, validated config for one allocated device; ClaimError names the culprit."""
    configs: list[NetworkConfig] = []
    for index, source, params in applicable_configs(allocation, driver, request):
        where = (
            f"status.allocation.devices.config[{index}] ({source or 'unknown source'}) "
            f"for device {device_label}"
        )
        try:
            cfg = decode(params)
        except ConfigError as exc:
            raise ClaimError(f"{where}: {exc}") from exc
        problems = basic_problems(cfg)
        if problems:
            raise ClaimError(f"{where}: {'; '.join(problems)}")
        configs.append(cfg)
    merged = merge_configs(*configs)
    problems = basic_problems(merged)
    if problems:
        raise ClaimError(f"merged config for device {device_label}: {'; '.join(problems)}")
    return merged
