"""The rule book of the claim config: each bound, each allowed value and each key, once.

Every consumer of a config field asks here: `knd.api.validation` (behind `knd config validate`
and prepare's `finalize`), `knd.api.merge` (which entries are duplicates), the plan builder
`knd.netns.builder` (normalising values and de-duplicating against host data) and the plan
checker `knd.netns.plan.check_plan` (re-checking a persisted plan). When two of them disagreed,
a config passed `knd config validate` and then failed at prepare under an internal field name
(an MTU of 300,000 did); keeping the rules here makes that impossible by construction, and
`tests/unit/test_config_plan_properties.py` shows it for every generated config.

Pure, no I/O; every function is total (never raises) unless it says otherwise.

Conventions:
* an empty string means "not set" for every optional string field (DraNet's Go zero value);
* integer bounds are inclusive (`low..high`) and fit the kernel type the value ends up in.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# ------------------------------------------------------------------------------- integers

INT32_MAX: Final = 2**31 - 1
UINT32_MAX: Final = 2**32 - 1

#: IPv4's minimum MTU; the kernel refuses a smaller one on any device carrying IPv4.
MIN_MTU: Final = 68
#: 4 * 65535: above the largest MTU a real driver offers (IPoIB connected mode 65520,
#: loopback 65536), with room. The per-device maximum is the kernel's to enforce at attach.
MAX_MTU: Final = 4 * 65535
#: BIG TCP sizes (IFLA_{GSO,GRO}{,_IPV4}_MAX_SIZE): the kernel stores them as unsigned int but
#: refuses more than INT32_MAX (GSO_MAX_SIZE is a signed quantity).
MIN_OFFLOAD_SIZE: Final = 1
MAX_OFFLOAD_SIZE: Final = INT32_MAX

RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_LINK: Final = 253
RT_SCOPE_HOST: Final = 254
#: The scopes a configured route may have (DraNet: universe or link).
ROUTE_SCOPES: Final = (RT_SCOPE_UNIVERSE, RT_SCOPE_LINK)

DEFAULT_TABLE: Final = 253
MAIN_TABLE: Final = 254
LOCAL_TABLE: Final = 255
#: Tables a VRF may not take: the kernel's own default, main and local tables.
RESERVED_TABLES: Final = frozenset({DEFAULT_TABLE, MAIN_TABLE, LOCAL_TABLE})
#: A configured route's or rule's table: 0 (meaning main) up to the kernel's uint32.
MAX_TABLE: Final = UINT32_MAX
#: A configured rule's priority (DraNet's bound); rules captured from the host may use the
#: kernel's whole uint32 range.
MAX_RULE_PRIORITY: Final = 32767

#: `interface.arpIgnore` / `interface.arpAnnounce`: the values the kernel documents.
ARP_IGNORE_VALUES: Final = (0, 1, 2, 3, 8)
ARP_ANNOUNCE_VALUES: Final = (0, 1, 2)
#: Largest value any per-interface sysctl of a plan may carry.
MAX_SYSCTL_VALUE: Final = INT32_MAX


def int_problem(value: int | None, low: int, high: int, what: str) -> str | None:
    """Why `value` is outside `low..high`, or None (None means not set: no problem)."""
    if value is not None and not low <= value <= high:
        return f"must be {what} ({low}..{high}), got {value}"
    return None


def mtu_problem(mtu: int | None) -> str | None:
    """`interface.mtu` (and the plan's pod and host MTU)."""
    return int_problem(mtu, MIN_MTU, MAX_MTU, "an MTU")


def offload_size_problem(size: int | None) -> str | None:
    """`interface.{gso,gro}{,IPv4}MaxSize`."""
    return int_problem(size, MIN_OFFLOAD_SIZE, MAX_OFFLOAD_SIZE, "a positive size")


def table_problem(table: int | None) -> str | None:
    """A configured route's or rule's `table` (0 or unset means main)."""
    return int_problem(table, 0, MAX_TABLE, "a routing table ID")


def vrf_table_problem(table: int | None) -> str | None:
    """`interface.vrf.table`: positive, uint32, not a reserved table (unset: a default)."""
    if table is None:
        return None
    if not 0 < table <= UINT32_MAX:
        return f"must be a positive integer up to {UINT32_MAX}, got {table}"
    if table in RESERVED_TABLES:
        return f"cannot use reserved table ID {table}"
    return None


def rule_priority_problem(priority: int | None) -> str | None:
    """A configured rule's `priority`."""
    return int_problem(priority, 0, MAX_RULE_PRIORITY, "a priority")


def arp_ignore_problem(value: int | None) -> str | None:
    if value is not None and value not in ARP_IGNORE_VALUES:
        allowed = ", ".join(map(str, ARP_IGNORE_VALUES))
        return f"must be one of {allowed}, got {value}"
    return None


def arp_announce_problem(value: int | None) -> str | None:
    return int_problem(value, ARP_ANNOUNCE_VALUES[0], ARP_ANNOUNCE_VALUES[-1], "0-2")


def effective_table(table: int | None) -> int:
    """The table a configured route or rule lands in: unset and 0 both mean main."""
    return table or MAIN_TABLE


def effective_scope(scope: int | None) -> int:
    """A configured route's scope: unset means universe."""
    return RT_SCOPE_UNIVERSE if scope is None else scope


# ------------------------------------------------------------------------------- names

MAX_INTERFACE_NAME_LEN: Final = 15
#: ethtool feature / private-flag names become genetlink string attributes; the kernel's own
#: names are short ASCII words (ETH_GSTRING_LEN is 32 bytes including the NUL).
MAX_ETHTOOL_NAME_LEN: Final = 31

_IFNAME = re.compile(r"[A-Za-z0-9_.\-]+")
_ETHTOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def interface_name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable interface name, or None when it is.

    Names (the pod-side name, the VRF device name) become netlink attributes and
    `/proc/sys/net/ipv{4,6}/conf/<name>/...` path components: 1-15 bytes of ASCII letters,
    digits, '-', '_' and '.', not '.' or '..'. The empty string is not checked here (it means
    "keep the host name" where allowed).
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


def ethtool_name_problem(name: str) -> str | None:
    """An `ethtool.features` / `ethtool.privateFlags` key (user or kernel spelling)."""
    if not name or len(name) > MAX_ETHTOOL_NAME_LEN or not _ETHTOOL_NAME.fullmatch(name):
        return (
            f"invalid name {name!r}: 1-{MAX_ETHTOOL_NAME_LEN} ASCII letters, digits, "
            "'-', '_' or '.'"
        )
    return None


# ------------------------------------------------------------------------------- addresses

_MAC = re.compile(
    r"(?:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2})+"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4})+)"
)
#: EUI-48, EUI-64, 20-octet IP over InfiniBand link-layer address.
MAC_LENGTHS: Final = (6, 8, 20)


def parse_mac(value: str) -> bytes | None:
    """Parse a hardware address as Go's net.ParseMAC does (':' '-' or '.' forms, 6/8/20
    octets); None when invalid."""
    if not _MAC.fullmatch(value):
        return None
    raw = bytes.fromhex(re.sub(r"[:.\-]", "", value))
    return raw if len(raw) in MAC_LENGTHS else None


def canonical_mac(value: str) -> str | None:
    """A valid hardware address in the kernel's spelling (`02:aa:...`, lower case), else None."""
    raw = parse_mac(value)
    return None if raw is None else ":".join(f"{b:02x}" for b in raw)


#: Longest text `parse_cidr`/`parse_ip` remember (an IPv6 address with an IPv4 tail and a
#: prefix is 49 characters); longer input is parsed (and refused) without being remembered.
_CACHED_TEXT: Final = 64


def parse_cidr(value: str) -> tuple[IPAddress, IPNetwork] | None:
    """Parse `ip/prefix` (host bits allowed, as Go's net.ParseCIDR); None when invalid.
    Answers are remembered (bounded): the same texts come back for every claim and plan."""
    if type(value) is not str or len(value) > _CACHED_TEXT:
        return _parse_cidr(value)
    return _parse_cidr_cached(value)


def _parse_cidr(value: str) -> tuple[IPAddress, IPNetwork] | None:
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


_parse_cidr_cached = functools.lru_cache(maxsize=4096)(_parse_cidr)


def parse_ip(value: str) -> IPAddress | None:
    """Parse a bare IP address (no zone, no prefix); None when invalid (remembered, bounded,
    as `parse_cidr`)."""
    if type(value) is not str or len(value) > _CACHED_TEXT:
        return _parse_ip(value)
    return _parse_ip_cached(value)


def _parse_ip(value: str) -> IPAddress | None:
    if "%" in value:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


_parse_ip_cached = functools.lru_cache(maxsize=4096)(_parse_ip)


def canonical_address(value: str) -> str:
    """`interface.addresses[]` in one spelling (`ip/prefix`, host bits kept); the value itself
    when it does not parse (validation reports it)."""
    parsed = parse_cidr(value)
    return value if parsed is None else f"{parsed[0]}/{parsed[1].prefixlen}"


def canonical_network(value: str) -> str:
    """A route destination or rule selector as the kernel keeps it (host bits cleared); the
    value itself when it does not parse (validation reports it)."""
    parsed = parse_cidr(value)
    return value if parsed is None else str(parsed[1])


def canonical_ip(value: str) -> str:
    """A bare IP address in one spelling; the value itself when it does not parse."""
    ip = parse_ip(value)
    return value if ip is None else str(ip)


# ------------------------------------------------------------------------------- identity

#: What makes two list entries "the same" — for merge (a later source replaces an earlier
#: entry) and for the plan builder (a configured entry hides the host's copy).


def route_key(destination: str, table: int | None) -> tuple[str, int]:
    """Routes are the same when they have one destination network in one table."""
    return canonical_network(destination), effective_table(table)


def neighbor_key(destination: str) -> str:
    """Neighbours are the same when they name one IP address."""
    return canonical_ip(destination)


def rule_key(
    priority: int | None, source: str | None, destination: str | None, table: int | None
) -> tuple[int | None, str | None, str | None, int]:
    """Rules are the same when priority, selectors and table all are."""
    src = canonical_network(source) if source else None
    dst = canonical_network(destination) if destination else None
    return priority, src, dst, effective_table(table)


def address_key(address: str) -> str:
    """Addresses are the same when they are one `ip/prefix`."""
    return canonical_address(address)
