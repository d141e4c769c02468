"""AttachPlan: everything attach/detach need for one (pod, device), fully resolved at prepare.

A plan is built by `knd.netns.builder.build_plan` from the merged claim config and the host
state captured at prepare time, persisted as JSON (`to_json`), and executed later by
`knd.netns.attach` without any discovery. Frozen dataclasses; tuples instead of lists.

`from_json` is strict (unknown or missing fields, wrong types → PlanError) and re-checks every
value that later becomes a netlink attribute or a `/proc/sys` path component, because a
persisted plan may have been edited by hand. Format version: `PLAN_VERSION`.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from knd.api import rules as book
from knd.netns.errors import PlanError
from knd.netns.sysctl import INTERFACE_KEYS, check_ifname

PLAN_VERSION = 1
MAIN_TABLE = book.MAIN_TABLE
LOCAL_TABLE = book.LOCAL_TABLE
DEFAULT_TABLE = book.DEFAULT_TABLE
SCOPE_UNIVERSE = book.RT_SCOPE_UNIVERSE
SCOPE_LINK = book.RT_SCOPE_LINK
SCOPE_HOST = book.RT_SCOPE_HOST

#: The BIG TCP size fields of HostSide and PodSide (IFLA_{GSO,GRO}{,_IPV4}_MAX_SIZE).
SIZE_FIELDS = ("gso_max_size", "gro_max_size", "gso_ipv4_max_size", "gro_ipv4_max_size")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5,19}")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PCI = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


@dataclass(frozen=True, slots=True)
class Route:
    """A route; `destination` is a CIDR (`0.0.0.0/0` for default)."""

    destination: str
    gateway: str | None = None
    source: str | None = None
    scope: int = SCOPE_UNIVERSE
    table: int = MAIN_TABLE

    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.destination, strict=False).version


@dataclass(frozen=True, slots=True)
class Rule:
    """A policy-routing rule (priority/src/dst/table only, as DraNet)."""

    table: int
    priority: int | None = None
    source: str | None = None
    destination: str | None = None
    family: int = 4


@dataclass(frozen=True, slots=True)
class Neighbor:
    """A permanent neighbour entry."""

    destination: str
    hardware_addr: str


@dataclass(frozen=True, slots=True)
class Vrf:
    name: str
    table: int


@dataclass(frozen=True, slots=True)
class Sysctl:
    """A per-interface sysctl: net.<family>.conf.<ifname>.<key> = value."""

    family: str
    key: str
    value: int


@dataclass(frozen=True, slots=True)
class Toggle:
    """An ethtool feature or private flag, by kernel name."""

    name: str
    enable: bool


@dataclass(frozen=True, slots=True)
class CharDevice:
    """A device node to hand to the containers (type `c`)."""

    path: str
    type: str
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class RdmaPlan:
    link: str | None
    char_devices: tuple[CharDevice, ...] = ()
    move_link: bool = False  # exclusive netns mode: move the RDMA device with the netdev


@dataclass(frozen=True, slots=True)
class HostSide:
    """What the interface looked like in the host at prepare time (what detach restores).

    The GSO/GRO sizes are the host's values (None: the kernel did not report it); `features`
    and `private_flags` hold the host's value of each ethtool toggle the pod side changes
    (those stay with the device across netns moves, so detach must set them back)."""

    name: str
    ifindex: int
    mac: str
    mtu: int
    up: bool
    alias: str | None = None
    perm_mac: str | None = None
    addresses: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    gso_max_size: int | None = None
    gro_max_size: int | None = None
    gso_ipv4_max_size: int | None = None
    gro_ipv4_max_size: int | None = None
    features: tuple[Toggle, ...] = ()
    private_flags: tuple[Toggle, ...] = ()
    #: The PCI address (`0000:8a:00.0`) of a PCI device: with `perm_mac`, how the device is
    #: found again when its name changed (never by name alone).
    pci_address: str | None = None


@dataclass(frozen=True, slots=True)
class DhcpBinding:
    """The DHCPv4 lease behind the pod address `address` (from `interface.dhcp`): who granted
    it, for how long (seconds; None = infinite) and when (epoch seconds). The daemon renews it
    from the pod netns (knd.driver.leases)."""

    address: str
    server: str | None = None
    lease_time: int | None = None
    obtained_at: int = 0


@dataclass(frozen=True, slots=True)
class PodSide:
    """The interface as it must be in the pod."""

    name: str
    mtu: int | None = None
    mac: str | None = None
    gso_max_size: int | None = None
    gro_max_size: int | None = None
    gso_ipv4_max_size: int | None = None
    gro_ipv4_max_size: int | None = None
    addresses: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    vrf: Vrf | None = None
    sysctls: tuple[Sysctl, ...] = ()
    features: tuple[Toggle, ...] = ()
    private_flags: tuple[Toggle, ...] = ()
    disable_ebpf: bool = False
    dhcp: DhcpBinding | None = None


#: Sub-interface kinds and their modes (knd.api.subinterface checks the claim side).
SUB_MODES = {"macvlan": ("bridge", "private", "vepa", "passthru"), "ipvlan": ("l2", "l3", "l3s")}
IPVLAN_FLAGS = ("bridge", "private", "vepa")


@dataclass(frozen=True, slots=True)
class SubInterface:
    """The pod gets a `kind` child of the host device (which never moves), in `mode`."""

    kind: str
    mode: str
    flag: str | None = None  # ipvlan only


#: Upper bound on CPU and NUMA node numbers in a plan (the kernel's NR_CPUS maximum).
MAX_CPU = 8192


@dataclass(frozen=True, slots=True)
class CpuPlacement:
    """`numa.alignCpus` (knd only): the device's NUMA node, that node's online CPUs, and the
    CPUs online on the node as a whole (how CreateContainer tells an unpinned container), all
    read from sysfs at prepare. `on_no_overlap`: `error` or `keep` (docs/config.md)."""

    nodes: tuple[int, ...]
    cpus: tuple[int, ...]
    online_cpus: tuple[int, ...]
    on_no_overlap: str = "error"


@dataclass(frozen=True, slots=True)
class AttachPlan:
    pod_uid: str
    device: str
    host: HostSide | None  # None for an RDMA-only device
    pod: PodSide | None
    rdma: RdmaPlan | None = None
    version: int = PLAN_VERSION
    sub: SubInterface | None = None  # a child of `host` instead of moving it
    placement: CpuPlacement | None = None  # absent in plans written before it existed

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, compact)."""
        return json.dumps(_encode(self), sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-shaped value `to_json` writes (equal to `json.loads(plan.to_json())`)."""
        encoded: dict[str, Any] = _encode(self)
        return encoded

    @classmethod
    def from_json(cls, text: str | bytes) -> AttachPlan:
        """Strictly decode and check a plan; PlanError on any problem."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc
        plan = _decode(cls, data, "plan")
        assert isinstance(plan, AttachPlan)
        check_plan(plan)
        return plan


# ---------------------------------------------------------------------------------- codec

T = TypeVar("T")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):
        return value
    kind = type(value)
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: _encode(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _decode_dataclass(tp: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"{path}: must be an object")
    hints = _HINTS.get(tp)
    if hints is None:
        hints = _HINTS[tp] = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = set(data) - set(fields)
    if unknown:
        raise PlanError(f"{path}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _decode(hints[name], data[name], f"{path}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PlanError(f"{path}.{name}: missing")
    return tp(**kwargs)


#: JSON scalar types by Python type; `bool` is not an `int` here.
_SCALARS: dict[Any, tuple[type, str]] = {
    bool: (bool, "a boolean"),
    int: (int, "an integer"),
    str: (str, "a string"),
}


def _decode_scalar(tp: Any, data: Any, path: str) -> Any:
    if tp not in _SCALARS:
        raise PlanError(f"{path}: unsupported type {tp!r}")  # pragma: no cover
    want, what = _SCALARS[tp]
    if not isinstance(data, want) or (want is int and isinstance(data, bool)):
        raise PlanError(f"{path}: must be {what}")
    return data


def _decode(tp: Any, data: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], data, path)
    if origin is tuple:
        if not isinstance(data, list):
            raise PlanError(f"{path}: must be a list")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_decode(item_tp, v, f"{path}[{i}]") for i, v in enumerate(data))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, path)
    return _decode_scalar(tp, data, path)


# ---------------------------------------------------------------------------------- checks


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise PlanError(msg)


def check_mac(mac: str, what: str) -> None:
    _check(bool(_MAC.fullmatch(mac)), f"{what}: invalid MAC {mac!r}")


@functools.lru_cache(maxsize=4096)
def _version(value: str, cidr: bool) -> int | None:
    """The IP version of an address (`cidr`: an interface `ip/prefix`), None when invalid;
    remembered (bounded): a plan's addresses come back at every check."""
    try:
        return (ipaddress.ip_interface(value) if cidr else ipaddress.ip_address(value)).version
    except ValueError:
        return None


def _check_ip(value: str, what: str) -> int:
    version = (_version if type(value) is str else _version.__wrapped__)(value, False)
    if version is None:
        raise PlanError(f"{what}: invalid IP {value!r}")
    return version


def _check_cidr(value: str, what: str) -> int:
    version = (_version if type(value) is str else _version.__wrapped__)(value, True)
    if version is None:
        raise PlanError(f"{what}: invalid CIDR {value!r}")
    return version


def _check_table(table: int, what: str) -> None:
    _check(0 < table < 2**32, f"{what}: table {table} out of range")


def check_route(r: Route, what: str) -> None:
    fam = _check_cidr(r.destination, f"{what}.destination")
    _check(r.scope in (SCOPE_UNIVERSE, SCOPE_LINK, SCOPE_HOST), f"{what}: bad scope {r.scope}")
    if r.gateway is not None:
        _check(_check_ip(r.gateway, f"{what}.gateway") == fam, f"{what}: gateway family")
    if r.source is not None:
        _check(_check_ip(r.source, f"{what}.source") == fam, f"{what}: source family")
    _check_table(r.table, what)


def check_rule(r: Rule, what: str) -> None:
    _check(r.family in (4, 6), f"{what}: bad family")
    _check_table(r.table, what)
    if r.priority is not None:
        _check(0 <= r.priority < 2**32, f"{what}: bad priority")
    for sel in (r.source, r.destination):
        if sel is not None:
            _check(_check_cidr(sel, what) == r.family, f"{what}: selector family")


def check_neighbor(n: Neighbor, what: str) -> None:
    _check_ip(n.destination, f"{what}.destination")
    check_mac(n.hardware_addr, f"{what}.hardwareAddr")


def _check_common(
    addresses: tuple[str, ...],
    routes: tuple[Route, ...],
    rules: tuple[Rule, ...],
    neighbors: tuple[Neighbor, ...],
    side: str,
) -> None:
    for i, a in enumerate(addresses):
        _check_cidr(a, f"{side}.addresses[{i}]")
    for i, r in enumerate(routes):
        check_route(r, f"{side}.routes[{i}]")
    for i, ru in enumerate(rules):
        check_rule(ru, f"{side}.rules[{i}]")
    for i, n in enumerate(neighbors):
        check_neighbor(n, f"{side}.neighbors[{i}]")


def _check_sub(sub: SubInterface, plan: AttachPlan) -> None:
    modes = SUB_MODES.get(sub.kind)
    _check(modes is not None, f"sub.kind {sub.kind!r} is not macvlan or ipvlan")
    _check(modes is None or sub.mode in modes, f"sub.mode {sub.mode!r}")
    _check(
        sub.flag is None or (sub.kind == "ipvlan" and sub.flag in IPVLAN_FLAGS),
        f"sub.flag {sub.flag!r}",
    )
    _check(plan.host is not None, "a sub-interface plan needs its parent (host)")
    _check(plan.rdma is None or not plan.rdma.move_link, "a shared parent's RDMA stays")


def _check_placement(pl: CpuPlacement) -> None:
    _check(pl.on_no_overlap in ("error", "keep"), "placement.on_no_overlap: error or keep")
    for what, values in (("nodes", pl.nodes), ("cpus", pl.cpus), ("online_cpus", pl.online_cpus)):
        _check(
            all(0 <= v < MAX_CPU for v in values) and len(values) <= MAX_CPU,
            f"placement.{what} out of range",
        )


def _check_host(h: HostSide) -> None:
    _check(h.ifindex > 0, "host.ifindex must be > 0")
    check_mac(h.mac, "host.mac")
    if h.perm_mac is not None:
        check_mac(h.perm_mac, "host.perm_mac")
    if h.pci_address is not None:
        _check(bool(_PCI.fullmatch(h.pci_address)), f"host.pci_address: invalid {h.pci_address!r}")
    _check(book.mtu_problem(h.mtu) is None, f"host.mtu: {book.mtu_problem(h.mtu)}")
    for attr in SIZE_FIELDS:
        v = getattr(h, attr)  # the kernel's value: its unsigned int
        _check(v is None or 0 < v <= book.UINT32_MAX, f"host.{attr} out of range")
    _check_common(h.addresses, h.routes, h.rules, h.neighbors, "host")


def _check_pod(p: PodSide) -> None:
    _check(book.mtu_problem(p.mtu) is None, f"pod.mtu: {book.mtu_problem(p.mtu)}")
    if p.mac is not None:
        check_mac(p.mac, "pod.mac")
    for attr in SIZE_FIELDS:
        problem = book.offload_size_problem(getattr(p, attr))
        _check(problem is None, f"pod.{attr}: {problem}")
    _check_common(p.addresses, p.routes, p.rules, p.neighbors, "pod")
    if p.vrf is not None:
        check_ifname(p.vrf.name)
        problem = book.vrf_table_problem(p.vrf.table)
        _check(problem is None, f"pod.vrf.table: {problem}")
    for s in p.sysctls:
        _check((s.family, s.key) in INTERFACE_KEYS, f"pod.sysctls: {s.family}/{s.key}")
        _check(0 <= s.value <= book.MAX_SYSCTL_VALUE, "pod.sysctls: value out of range")
    if p.dhcp is not None:
        _check_dhcp(p.dhcp)


def _check_dhcp(d: DhcpBinding) -> None:
    _check(_check_cidr(d.address, "pod.dhcp.address") == 4, "pod.dhcp: not IPv4")
    if d.server is not None:
        _check(_check_ip(d.server, "pod.dhcp.server") == 4, "pod.dhcp: not IPv4")
    _check(d.obtained_at >= 0, "pod.dhcp.obtained_at out of range")
    lt = d.lease_time
    _check(lt is None or 0 <= lt < 2**32, "pod.dhcp.lease_time out of range")


def _check_rdma(rdma: RdmaPlan) -> None:
    if rdma.link is not None:
        _check(bool(_NAME.fullmatch(rdma.link)), "rdma.link is invalid")
    for c in rdma.char_devices:
        _check(c.path.startswith("/dev/") and ".." not in c.path, f"bad char device {c.path}")
        _check(c.type == "c" and c.major >= 0 and c.minor >= 0, "bad char device numbers")


def check_plan(plan: AttachPlan) -> None:
    """Re-validate a plan; PlanError names the field."""
    _check(plan.version == PLAN_VERSION, f"unsupported plan version {plan.version}")
    _check(bool(plan.pod_uid) and bool(plan.device), "pod_uid and device are required")
    _check((plan.host is None) == (plan.pod is None), "host and pod sides go together")
    _check(plan.host is not None or plan.rdma is not None, "plan has nothing to do")
    if plan.sub is not None:
        _check_sub(plan.sub, plan)
    if plan.placement is not None:
        _check_placement(plan.placement)
    if plan.host is not None and plan.pod is not None:
        h, p = plan.host, plan.pod
        try:
            check_ifname(h.name)
            check_ifname(p.name)
        except PlanError as exc:
            raise PlanError(f"plan interface name: {exc}") from None
        _check_host(h)
        _check_pod(p)
        for t in (*p.features, *p.private_flags, *h.features, *h.private_flags):
            _check(bool(_NAME.fullmatch(t.name)), f"ethtool name {t.name!r} is invalid")
    if plan.rdma is not None:
        _check_rdma(plan.rdma)


__all__ = [
    "MAIN_TABLE",
    "PLAN_VERSION",
    "SCOPE_LINK",
    "SCOPE_UNIVERSE",
    "AttachPlan",
    "CharDevice",
    "DhcpBinding",
    "HostSide",
    "Neighbor",
    "PodSide",
    "RdmaPlan",
    "Route",
    "Rule",
    "SubInterface",
    "Sysctl",
    "Toggle",
    "Vrf",
    "check_plan",
]
