"""Semantic validation of a decoded NetworkConfig: every DraNet rule plus knd's hardening.

Contract: `validate(cfg)` returns every problem found as FieldError(path, message) — an empty list
means valid. It never raises for any decoded config. Paths are JSON paths (`routes[1].gateway`).

Hardening beyond DraNet (pkg/apis/validation.go):
* interface names (pod-side name and the VRF device name) become netlink attributes and
  `/proc/sys/net/ipv{4,6}/conf/<name>/...` path components, so when set they must be 1-15 bytes
  of ASCII letters, digits, '-', '_', '.' and not '.' or '..' (DraNet allows any Unicode letter);
* every integer must fit the kernel type it ends up in, without wrapping (tables are uint32,
  GSO/GRO sizes int32, route scope uint8, ...), and an MTU is at most 262,140;
* VRF names are required to be valid interface names, not merely non-empty;
* no string anywhere in the config (keys included) may hold a control character: every pattern
  is applied with `fullmatch` (a `$` anchor lets a trailing newline through), and strings that
  no pattern covers (an IPv6 zone, a profile name) are checked for control characters.

Every bound, allowed value and name rule comes from the rule book `knd.api.rules`, which the
merge and the plan builder use too; this module only walks the config and names the paths.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

from knd.api import rules, subinterface
from knd.api.config import (
    EthtoolConfig,
    InterfaceConfig,
    NeighborConfig,
    NetworkConfig,
    RouteConfig,
    RuleConfig,
    VrfConfig,
)
from knd.api.errors import FieldError
from knd.api.rules import (
    interface_name_problem,
    is_valid_interface_name,
    parse_cidr,
    parse_ip,
    parse_mac,
)

#: Unicode "Cc" (C0/C1 controls, DEL) and "Cf" (format: bidi overrides, zero-width joiners).
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf"})

__all__ = [
    "interface_name_problem",
    "is_valid_interface_name",
    "parse_cidr",
    "parse_ip",
    "parse_mac",
    "validate",
    "validate_rdma_only",
]


def _problem(path: str, problem: str | None) -> Iterator[FieldError]:
    if problem is not None:
        yield FieldError(path, problem)


def _validate_name(path: str, name: str | None, required: bool = False) -> Iterator[FieldError]:
    if name is None or name == "":
        if required:
            yield FieldError(path, "cannot be empty")
        return
    problem = interface_name_problem(name)
    if problem:
        yield FieldError(path, problem)


def _validate_vrf(path: str, vrf: VrfConfig) -> Iterator[FieldError]:
    yield from _validate_name(f"{path}.name", vrf.name, required=True)
    yield from _problem(f"{path}.table", rules.vrf_table_problem(vrf.table))


def _validate_interface(path: str, iface: InterfaceConfig) -> Iterator[FieldError]:
    yield from _validate_name(f"{path}.name", iface.name)
    for i, addr in enumerate(iface.addresses or []):
        if parse_cidr(addr) is None:
            yield FieldError(f"{path}.addresses[{i}]", f"invalid IP CIDR {addr!r}")
    if iface.dhcp and iface.addresses:
        yield FieldError(f"{path}.dhcp", "dhcp and addresses are mutually exclusive")
    yield from _problem(f"{path}.mtu", rules.mtu_problem(iface.mtu))
    if iface.hardware_addr is not None and parse_mac(iface.hardware_addr) is None:
        yield FieldError(
            f"{path}.hardwareAddr", f"invalid hardware address {iface.hardware_addr!r}"
        )
    for field, value in (
        ("gsoMaxSize", iface.gso_max_size),
        ("groMaxSize", iface.gro_max_size),
        ("gsoIPv4MaxSize", iface.gso_ipv4_max_size),
        ("groIPv4MaxSize", iface.gro_ipv4_max_size),
    ):
        yield from _problem(f"{path}.{field}", rules.offload_size_problem(value))
    yield from _problem(f"{path}.arpIgnore", rules.arp_ignore_problem(iface.arp_ignore))
    yield from _problem(f"{path}.arpAnnounce", rules.arp_announce_problem(iface.arp_announce))
    if iface.vrf is not None:
        yield from _validate_vrf(f"{path}.vrf", iface.vrf)


def _validate_route(path: str, route: RouteConfig) -> Iterator[FieldError]:
    dst_family: int | None = None
    if not route.destination:
        yield FieldError(f"{path}.destination", "cannot be empty")
    else:
        parsed = parse_cidr(route.destination)
        if parsed is None:
            yield FieldError(
                f"{path}.destination",
                f"invalid CIDR {route.destination!r} (host routes use /32 or /128)",
            )
        else:
            dst_family = parsed[0].version
    scope = rules.effective_scope(route.scope)
    if scope not in rules.ROUTE_SCOPES:
        yield FieldError(
            f"{path}.scope",
            f"invalid scope {route.scope}: only universe (0) or link (253) allowed",
        )
    for field, value in (("gateway", route.gateway), ("source", route.source)):
        if not value:
            continue
        ip = parse_ip(value)
        if ip is None:
            yield FieldError(f"{path}.{field}", f"invalid IP address {value!r}")
        elif dst_family is not None and ip.version != dst_family:
            yield FieldError(
                f"{path}.{field}",
                f"{value!r} must be the same IP family as destination {route.destination!r}",
            )
    if not route.gateway and scope != rules.RT_SCOPE_LINK:
        yield FieldError(f"{path}.gateway", "must be specified for universe-scope routes")
    yield from _problem(f"{path}.table", rules.table_problem(route.table))


def _validate_rule(path: str, rule: RuleConfig) -> Iterator[FieldError]:
    yield from _problem(f"{path}.priority", rules.rule_priority_problem(rule.priority))
    yield from _problem(f"{path}.table", rules.table_problem(rule.table))
    families: dict[str, int] = {}
    for field, value in (("source", rule.source), ("destination", rule.destination)):
        if not value:
            continue
        parsed = parse_cidr(value)
        if parsed is None:
            yield FieldError(f"{path}.{field}", f"invalid CIDR {value!r}")
        else:
            families[field] = parsed[0].version
    if len(set(families.values())) > 1:
        yield FieldError(path, "source and destination must be the same IP family")


def _validate_neighbor(path: str, neigh: NeighborConfig) -> Iterator[FieldError]:
    if not neigh.destination:
        yield FieldError(f"{path}.destination", "cannot be empty")
    elif parse_ip(neigh.destination) is None:
        yield FieldError(f"{path}.destination", f"invalid IP address {neigh.destination!r}")
    if not neigh.hardware_addr:
        yield FieldError(f"{path}.hardwareAddr", "cannot be empty")
    elif parse_mac(neigh.hardware_addr) is None:
        yield FieldError(
            f"{path}.hardwareAddr", f"invalid hardware address {neigh.hardware_addr!r}"
        )


def _validate_ethtool(path: str, eth: EthtoolConfig) -> Iterator[FieldError]:
    for field, mapping in (("features", eth.features), ("privateFlags", eth.private_flags)):
        for name in mapping or {}:
            yield from _problem(f"{path}.{field}", rules.ethtool_name_problem(name))


def _control_char_errors(path: str, value: object) -> Iterator[FieldError]:
    """Every string (mapping keys included) under `value` that holds a control character."""
    if isinstance(value, str):
        bad = next((c for c in value if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
        if bad is not None:
            yield FieldError(path, f"must not contain control character {bad!r}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _control_char_errors(path, key)
            yield from _control_char_errors(f"{path}.{key}" if path else str(key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _control_char_errors(f"{path}[{i}]", item)


#: What to do when a container's CPUs and the NICs' NUMA CPUs do not overlap (docs/config.md).
NUMA_NO_OVERLAP = ("error", "keep")


def _iter_errors(cfg: NetworkConfig) -> Iterator[FieldError]:
    yield from _control_char_errors("", cfg.model_dump(by_alias=True, exclude_none=True))
    if cfg.profile is not None and not cfg.profile.strip():
        yield FieldError("profile", "cannot be blank when set")
    if cfg.interface is not None:
        yield from _validate_interface("interface", cfg.interface)
    for i, route in enumerate(cfg.routes or []):
        yield from _validate_route(f"routes[{i}]", route)
    if cfg.rules:
        if cfg.interface is not None and cfg.interface.vrf is not None:
            yield FieldError("rules", "rules are not supported when interface.vrf is set")
        for i, rule in enumerate(cfg.rules):
            yield from _validate_rule(f"rules[{i}]", rule)
    for i, neigh in enumerate(cfg.neighbors or []):
        yield from _validate_neighbor(f"neighbors[{i}]", neigh)
    if cfg.ethtool is not None:
        yield from _validate_ethtool("ethtool", cfg.ethtool)
    yield from subinterface.problems(cfg)
    if cfg.numa is not None and cfg.numa.on_no_overlap not in (None, *NUMA_NO_OVERLAP):
        yield FieldError("numa.onNoOverlap", f"must be one of {', '.join(NUMA_NO_OVERLAP)}")


def validate(cfg: NetworkConfig) -> list[FieldError]:
    """Every problem in `cfg` (apply `with_defaults` first, as DraNet does)."""
    return list(_iter_errors(cfg))


_RDMA_ONLY_FORBIDDEN_INTERFACE = (
    "name",
    "addresses",
    "dhcp",
    "mtu",
    "hardwareAddr",
    "gsoMaxSize",
    "groMaxSize",
    "gsoIPv4MaxSize",
    "groIPv4MaxSize",
    "disableEbpfPrograms",
    "forwarding",
    "arpIgnore",
    "arpAnnounce",
    "vrf",
)


def validate_rdma_only(cfg: NetworkConfig) -> list[FieldError]:
    """Problems for a config applied to an RDMA-only device (one without a netdev).

    Such a device has nothing to name, address or route: any interface field, route, rule,
    neighbor or ethtool setting is an error, and so is an `ethtool` object even when empty
    (DraNet's rule: the object's presence is the error). `profile` remains allowed.
    """
    errors: list[FieldError] = []
    reason = "not supported for an RDMA-only device (it has no network interface)"
    if cfg.interface is not None:
        data = cfg.interface.model_dump(by_alias=True, exclude_none=True)
        for field in _RDMA_ONLY_FORBIDDEN_INTERFACE:
            if field in data and data[field] not in ("", []):
                errors.append(FieldError(f"interface.{field}", reason))
    for field in ("routes", "rules", "neighbors"):
        if getattr(cfg, field):
            errors.append(FieldError(field, reason))
    if cfg.ethtool is not None:
        errors.append(FieldError("ethtool", reason))
    return errors
