"""Build an AttachPlan from the merged claim config and captured host state (pure function).

Runs at prepare time (45 s budget, no OS access here): `build_plan(device, pod_uid, config,
host_state, rdma_mode=..., lease=...)`. The config must satisfy the rule book
(`knd.api.validation.validate`; a config that does not is refused here with the same field
paths, unless the caller says it ran `finalize` already): the builder only normalises values
through `knd.api.rules` and never re-states a bound, so what `knd config validate` accepts
builds a plan for any device that exists and offers the ethtool names asked for.

Host data fills what the config leaves empty, as DraNet does: the host's global addresses are
copied when none are configured (or the DHCP lease is used), host routes of every table, the
rules pointing at those tables (not with a VRF) and permanent neighbours are replicated after
the configured ones. Routes are de-duplicated by (destination, table) keeping the configured
entry, neighbours by destination (the rule book's identities, which the merge uses too);
link-scope routes come first (gateways must be reachable when later routes are added); with a
VRF every route goes to the VRF table. Ethtool names are translated to kernel names here.

Each part of the pod side (addresses, VRF, sysctls, routes, rules, neighbours, ethtool) is one
pure function from config and host data to tuples; `build_plan` only composes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from knd.api import rules as book
from knd.api.config import (
    EthtoolConfig,
    InterfaceConfig,
    NeighborConfig,
    NetworkConfig,
    RouteConfig,
    RuleConfig,
)
from knd.api.defaults import default_vrf_table
from knd.api.errors import FieldError
from knd.api.validation import validate, validate_rdma_only
from knd.netns.errors import PlanError
from knd.netns.ethtool_names import translate
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import (
    SCOPE_LINK,
    AttachPlan,
    DhcpBinding,
    HostSide,
    Neighbor,
    PodSide,
    RdmaPlan,
    Route,
    Rule,
    Sysctl,
    Toggle,
    Vrf,
    check_plan,
)

RDMA_MODES = frozenset({"shared", "exclusive"})
INFINITE_LEASE = 0xFFFFFFFF


def _refuse(errors: list[FieldError], prefix: str) -> None:
    if errors:
        raise PlanError(prefix + "; ".join(map(str, errors)))


def _lease_cidr(value: str) -> str:
    """A lease's address as `ip/prefix`; the lease came off the network, so it is checked."""
    if book.parse_cidr(value) is None:
        raise PlanError(f"dhcp lease: invalid CIDR {value!r}")
    return book.canonical_address(value)


def _lease_network(value: str) -> str:
    if book.parse_cidr(value) is None:
        raise PlanError(f"dhcp route: invalid destination {value!r}")
    return book.canonical_network(value)


# ---------------------------------------------------------------------------------- parts


def plan_rdma(state: HostState, rdma_mode: str) -> RdmaPlan | None:
    """The RDMA part: the link and char devices; the link moves only in exclusive mode."""
    if state.rdma_link is None and not state.rdma_char_devices:
        return None
    return RdmaPlan(
        link=state.rdma_link,
        char_devices=state.rdma_char_devices,
        move_link=rdma_mode == "exclusive" and state.rdma_link is not None,
    )


def plan_addresses(
    iface: InterfaceConfig, host: HostSide, lease: DhcpLease | None
) -> tuple[str, ...]:
    """The lease's address with `dhcp`, else the configured ones, else the host's."""
    if iface.dhcp:
        if lease is None:
            raise PlanError("interface.dhcp is set but no DHCP lease was obtained")
        return (_lease_cidr(lease.address),)
    if iface.addresses:
        return tuple(book.canonical_address(a) for a in iface.addresses)
    return host.addresses


def plan_vrf(iface: InterfaceConfig) -> Vrf | None:
    """The VRF device, its table defaulted from its name as `with_defaults` does."""
    if iface.vrf is None or not iface.vrf.name:
        return None
    return Vrf(name=iface.vrf.name, table=iface.vrf.table or default_vrf_table(iface.vrf.name))


def plan_sysctls(iface: InterfaceConfig) -> tuple[Sysctl, ...]:
    """The per-interface sysctls the config sets (ARP behaviour, forwarding in both families)."""
    sysctls: list[Sysctl] = []
    if iface.arp_ignore is not None:
        sysctls.append(Sysctl("ipv4", "arp_ignore", iface.arp_ignore))
    if iface.arp_announce is not None:
        sysctls.append(Sysctl("ipv4", "arp_announce", iface.arp_announce))
    if iface.forwarding is not None:
        sysctls.append(Sysctl("ipv4", "forwarding", int(iface.forwarding)))
        sysctls.append(Sysctl("ipv6", "forwarding", int(iface.forwarding)))
    return tuple(sysctls)


def _lease_routes(lease: DhcpLease | None) -> list[Route]:
    """RFC 3442: option 121 present → option 3 (the router) is ignored."""
    if lease is None:
        return []
    if lease.routes:
        return [Route(destination=_lease_network(d), gateway=g) for d, g in lease.routes]
    if lease.router:
        router = book.parse_ip(lease.router)
        if router is None:
            raise PlanError(f"dhcp lease: invalid router {lease.router!r}")
        default = "0.0.0.0/0" if router.version == 4 else "::/0"
        return [Route(destination=default, gateway=str(router))]
    return []


def _configured_route(rc: RouteConfig) -> Route:
    return Route(
        destination=book.canonical_network(rc.destination or ""),
        gateway=book.canonical_ip(rc.gateway) if rc.gateway else None,
        source=book.canonical_ip(rc.source) if rc.source else None,
        scope=book.effective_scope(rc.scope),
        table=book.effective_table(rc.table),
    )


def plan_routes(
    configured: Iterable[RouteConfig],
    lease: DhcpLease | None,
    host_routes: Iterable[Route],
    addresses: Iterable[str],
    vrf: Vrf | None,
) -> tuple[Route, ...]:
    """Configured (and DHCP) routes first, then the host's, de-duplicated by (destination,
    table) keeping the first; every route in the VRF's table with a VRF; link scope first.
    A host route's preferred source is dropped unless the pod has that address."""
    # Addresses, destinations and neighbours are all in one spelling here (configured ones were
    # canonicalised above, the host's come from the kernel), so the rule book's identities
    # (`route_key`, `neighbor_key`) reduce to plain equality: no second parse on this path.
    pod_ips = {a.partition("/")[0] for a in addresses}
    from_host = [
        r if r.source is None or r.source in pod_ips else dataclasses.replace(r, source=None)
        for r in host_routes
    ]
    candidates = [*_lease_routes(lease), *map(_configured_route, configured), *from_host]
    routes: list[Route] = []
    seen: set[tuple[str, int]] = set()
    if vrf is not None:
        candidates = [dataclasses.replace(r, table=vrf.table) for r in candidates]
    for r in candidates:
        key = (r.destination, r.table)  # == book.route_key(...) for canonical destinations
        if key not in seen:
            seen.add(key)
            routes.append(r)
    routes.sort(key=lambda r: 0 if r.scope == SCOPE_LINK else 1)  # stable
    return tuple(routes)


def _configured_rule(rc: RuleConfig) -> Rule:
    source = book.canonical_network(rc.source) if rc.source else None
    destination = book.canonical_network(rc.destination) if rc.destination else None
    family = 4
    for selector in (source, destination):
        parsed = book.parse_cidr(selector) if selector else None
        if parsed is not None:
            family = parsed[0].version
    return Rule(
        table=book.effective_table(rc.table),
        priority=rc.priority,
        source=source,
        destination=destination,
        family=family,
    )


def plan_rules(
    configured: Iterable[RuleConfig], host_rules: Iterable[Rule], vrf: Vrf | None
) -> tuple[Rule, ...]:
    """Configured rules, then the host's not already there; none of the host's with a VRF
    (the rule book refuses configured rules with a VRF)."""
    rules = [_configured_rule(rc) for rc in configured]
    if vrf is None:
        rules += [r for r in host_rules if r not in rules]
    return tuple(rules)


def plan_neighbors(
    configured: Iterable[NeighborConfig], host_neighbors: Iterable[Neighbor]
) -> tuple[Neighbor, ...]:
    """Configured neighbours, then the host's for the destinations not configured."""
    neighbors = [
        Neighbor(book.canonical_ip(nc.destination or ""), _mac(nc.hardware_addr or ""))
        for nc in configured
    ]
    seen = {n.destination for n in neighbors}  # canonical: == book.neighbor_key(...)
    neighbors += [n for n in host_neighbors if n.destination not in seen]
    return tuple(neighbors)


def plan_ethtool(
    eth: EthtoolConfig | None, state: HostState
) -> tuple[dict[str, bool], dict[str, bool]]:
    """Kernel feature names and private flags to set, {name: on}. PlanError for a name this
    device does not offer (the one refusal that depends on the device)."""
    if eth is None:
        return {}, {}
    features = translate(eth.features or {}, state.features)
    private_flags: dict[str, bool] = {}
    for name, enable in (eth.private_flags or {}).items():
        if name not in state.private_flags:
            raise PlanError(f"unknown ethtool private flag {name!r} for this device")
        private_flags[name] = enable
    return features, private_flags


def _mac(value: str) -> str:
    mac = book.canonical_mac(value)
    if mac is None:  # validate() refused it already; a direct caller gets the same words
        raise PlanError(f"invalid hardware address {value!r}")
    return mac


def _toggles(values: dict[str, bool]) -> tuple[Toggle, ...]:
    return tuple(Toggle(k, v) for k, v in sorted(values.items()))


def host_restore_side(
    host: HostSide, state: HostState, features: dict[str, bool], private_flags: dict[str, bool]
) -> HostSide:
    """The host side with the host's current value of each toggle the pod changes: ethtool
    state stays with the device across netns moves, so detach sets these back."""
    current = {t.name: t.enable for t in state.feature_values}
    current_flags = {t.name: t.enable for t in state.private_flag_values}
    return dataclasses.replace(
        host,
        features=_toggles({k: current[k] for k in features if k in current}),
        private_flags=_toggles({k: current_flags[k] for k in private_flags if k in current_flags}),
    )


def _binding(lease: DhcpLease) -> DhcpBinding:
    """What the daemon needs to renew the lease later (an infinite lease is never renewed)."""
    lease_time = lease.lease_time
    return DhcpBinding(
        address=_lease_cidr(lease.address),
        server=lease.server,
        lease_time=None if lease_time is None or lease_time >= INFINITE_LEASE else lease_time,
        obtained_at=lease.obtained_at or 0,
    )


# ---------------------------------------------------------------------------------- plan


def build_plan(
    device_name: str,
    pod_uid: str,
    config: NetworkConfig,
    host_state: HostState,
    *,
    rdma_mode: str = "shared",
    lease: DhcpLease | None = None,
    validated: bool = False,
) -> AttachPlan:
    """The fully resolved plan for one (pod, device). Raises PlanError naming the problem.

    `validated=True` says the caller already ran the rule book on `config` (prepare's
    `knd.api.check.finalize` does): validating again would cost about as much as the build."""
    if rdma_mode not in RDMA_MODES:
        raise PlanError(f"unknown RDMA netns mode {rdma_mode!r}")
    if not validated:
        _refuse(validate(config), "invalid config: ")
    rdma = plan_rdma(host_state, rdma_mode)
    host = host_state.host
    if host is None:
        if rdma is None:
            raise PlanError(f"device {device_name} has neither a netdev nor an RDMA link")
        _refuse(validate_rdma_only(config), "RDMA-only device: ")
        plan = AttachPlan(pod_uid=pod_uid, device=device_name, host=None, pod=None, rdma=rdma)
        check_plan(plan)
        return plan

    iface = config.interface or InterfaceConfig()
    addresses = plan_addresses(iface, host, lease)
    vrf = plan_vrf(iface)
    features, private_flags = plan_ethtool(config.ethtool, host_state)
    pod = PodSide(
        name=iface.name or host.name,
        mtu=iface.mtu,
        mac=_mac(iface.hardware_addr) if iface.hardware_addr else None,
        gso_max_size=iface.gso_max_size,
        gro_max_size=iface.gro_max_size,
        gso_ipv4_max_size=iface.gso_ipv4_max_size,
        gro_ipv4_max_size=iface.gro_ipv4_max_size,
        addresses=addresses,
        routes=plan_routes(config.routes or (), lease, host.routes, addresses, vrf),
        rules=plan_rules(config.rules or (), host.rules, vrf),
        neighbors=plan_neighbors(config.neighbors or (), host.neighbors),
        vrf=vrf,
        sysctls=plan_sysctls(iface),
        features=_toggles(features),
        private_flags=_toggles(private_flags),
        disable_ebpf=bool(iface.disable_ebpf_programs),
        dhcp=_binding(lease) if iface.dhcp and lease is not None else None,
    )
    host = host_restore_side(host, host_state, features, private_flags)
    plan = AttachPlan(pod_uid=pod_uid, device=device_name, host=host, pod=pod, rdma=rdma)
    check_plan(plan)
    return plan
