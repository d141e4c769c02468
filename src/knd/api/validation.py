"""Semantic validation of a decoded NetworkConfig: every DraNet rule plus knd's hardening.

Contract: `validate(cfg)` returns every problem found as FieldError(path, message) — an empty list
means valid. It never raises for any decoded config. Paths are JSON paths (`routes[1].gateway`).

Hardening beyond DraNet (pkg/apis/validation.go):
* interface names (pod-side name and the VRF device name) become netlink attributes and
  `/proc/sys/net/ipv{4,6}/conf/<name>/...` path components, so when set they must be 1-15 bytes
  of ASCII letters, digits, '-', '_', '.' and not '.' or '..' (DraNet allows any Unicode letter);
* every integer must fit the kernel type it ends up in, without wrapping (tables are uint32,
  MTU and GSO/GRO sizes int32/uint32, route scope uint8, ...);
* VRF names are required to be valid interface names, not merely non-empty;
* no string anywhere in the config (keys included) may hold a control character: every pattern
  is applied with `fullmatch` (a `$` anchor lets a trailing newline through), and strings that
  no pattern covers (an IPv6 zone, a profile name) are checked for control characters.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterator

from knd.api import subinterface
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

MIN_MTU = 68
MAX_INTERFACE_NAME_LEN = 15
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RESERVED_TABLES = frozenset({253, 254, 255})
MAX_RULE_PRIORITY = 32767
ARP_IGNORE_VALUES = (0, 1, 2, 3, 8)
ARP_ANNOUNCE_MAX = 2
#: ethtool feature / private-flag names become genetlink string attributes; the kernel's own
#: names are short ASCII words (ETH_GSTRING_LEN is 32 bytes including the NUL).
MAX_ETHTOOL_NAME_LEN = 31

_IFNAME = re.compile(r"[A-Za-z0-9_.\-]+")
_ETHTOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_MAC = re.compile(
    r"(?:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2})+"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4})+)"
)
#: Unicode "Cc" (C0/C1 controls, DEL) and "Cf" (format: bidi overrides, zero-width joiners).
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf"})
_MAC_LENGTHS = (6, 8, 20)  # EUI-48, EUI-64, 20-octet IP over InfiniBand link-layer address

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def interface_name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable interface name, or None when it is.

    The empty string is not checked here (it means "keep the host name" where allowed).
    """
    raw = name.encode("utf-8", errors="replace")
    if len(raw) > MAX_INTERFACE_NAME_LEN:
        return f"name {name!r} exceeds maximum length of {MAX_INTERFACE_NAME_LEN} bytes"
    if name in (".", ".."):
        return f"name {name!r} cannot be '.' or '..'"
    if not _IFNAME.fullmatch(name) or not name.isascii():
        return (
            f"name {name!r} may only contain ASCII letters, digits, '-', '_' and '.' "
            "(it becomes a netlink attribute and a /proc/sys path component)"
        )
    return None


def is_valid_interface_name(name: str) -> bool:
    """True when `name` is a non-empty, safe interface name."""
    return bool(name) and interface_name_problem(name) is None


def parse_mac(value: str) -> bytes | None:
    """Parse a hardware address as Go's net.ParseMAC does (':' '-' or '.' forms, 6/8/20
    octets); None when invalid."""
    if not _MAC.fullmatch(value):
        return None
    digits = re.sub(r"[:.\-]", "", value)
    raw = bytes.fromhex(digits)
    return raw if len(raw) in _MAC_LENGTHS else None


def parse_cidr(value: str) -> tuple[IPAddress, IPNetwork] | None:
    """Parse `ip/prefix` (host bits allowed, as Go's net.ParseCIDR); None when invalid."""
    if "/" not in value:
        return None
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return None
    addr_part, _, prefix = value.partition("/")
    if not prefix.isdigit() or prefix != str(int(prefix)) or "%" in addr_part:
        return None
    return iface.ip, iface.network


def parse_ip(value: str) -> IPAddress | None:
    """Parse a bare IP address (no zone, no prefix); None when invalid."""
    if "%" in value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _int_range(
    path: str, value: int | None, low: int, high: int, what: str
) -> Iterator[FieldError]:
    if value is not None and not low <= value <= high:
        yield FieldError(path, f"must be {what} ({low}..{high}), got {value}")


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
    if vrf.table is not None:
        if not 0 < vrf.table <= UINT32_MAX:
            yield FieldError(
                f"{path}.table", f"must be a positive integer up to {UINT32_MAX}, got {vrf.table}"
            )
        elif vrf.table in RESERVED_TABLES:
            yield FieldError(f"{path}.table", f"cannot use reserved table ID {vrf.table}")


def _validate_interface(path: str, iface: InterfaceConfig) -> Iterator[FieldError]:
    yield from _validate_name(f"{path}.name", iface.name)
    for i, addr in enumerate(iface.addresses or []):
        if parse_cidr(addr) is None:
            yield FieldError(f"{path}.addresses[{i}]", f"invalid IP CIDR {addr!r}")
    if iface.dhcp and iface.addresses:
        yield FieldError(f"{path}.dhcp", "dhcp and addresses are mutually exclusive")
    yield from _int_range(f"{path}.mtu", iface.mtu, MIN_MTU, INT32_MAX, "an MTU")
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
        yield from _int_range(f"{path}.{field}", value, 1, INT32_MAX, "a positive size")
    if iface.arp_ignore is not None and iface.arp_ignore not in ARP_IGNORE_VALUES:
        yield FieldError(
            f"{path}.arpIgnore", f"must be one of 0, 1, 2, 3, 8, got {iface.arp_ignore}"
        )
    yield from _int_range(f"{path}.arpAnnounce", iface.arp_announce, 0, ARP_ANNOUNCE_MAX, "0-2")
    if iface.vrf is not None:
        yield from _validate_vrf(f"{path}.vrf", iface.vrf)


def _family(ip: IPAddress | None) -> int | None:
    return None if ip is None else ip.version


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
    scope = route.scope or RT_SCOPE_UNIVERSE
    if scope not in (RT_SCOPE_UNIVERSE, RT_SCOPE_LINK):
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
    if not route.gateway and scope != RT_SCOPE_LINK:
        yield FieldError(f"{path}.gateway", "must be specified for universe-scope routes")
    yield from _int_range(f"{path}.table", route.table, 0, UINT32_MAX, "a routing table ID")


def _validate_rule(path: str, rule: RuleConfig) -> Iterator[FieldError]:
    yield from _int_range(f"{path}.priority", rule.priority, 0, MAX_RULE_PRIORITY, "a priority")
    yield from _int_range(f"{path}.table", rule.table, 0, UINT32_MAX, "a routing table ID")
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
            if not name or len(name) > MAX_ETHTOOL_NAME_LEN or not _ETHTOOL_NAME.fullmatch(name):
                yield FieldError(
                    f"{path}.{field}",
                    f"invalid name {name!r}: 1-{MAX_ETHTOOL_NAME_LEN} ASCII letters, digits, "
                    "'-', '_' or '.'",
                )


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
