"""Build an AttachPlan from the merged claim config and captured host state (pure function).

Runs at prepare time (45 s budget, no OS access here): `build_plan(device, pod_uid, config,
host_state, rdma_mode=..., lease=...)`. Host data fills what the config leaves empty, as
DraNet does: the host's global addresses are copied when none are configured (or the DHCP
lease is used), host routes of every table, the rules pointing at those tables (not with a VRF)
and permanent neighbours are replicated after the configured ones. Routes are de-duplicated by
(destination, table) keeping the configured entry, neighbours by destination; link-scope
routes come first (gateways must be reachable when later routes are added); with a VRF every
route goes to the VRF table. Ethtool names are translated to kernel names here.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from knd.api.config import InterfaceConfig, NetworkConfig
from knd.api.defaults import default_vrf_table
from knd.netns.errors import PlanError
from knd.netns.ethtool_names import translate
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import (
    MAIN_TABLE,
    SCOPE_LINK,
    SCOPE_UNIVERSE,
    AttachPlan,
    DhcpBinding,
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

ARP_IGNORE_VALUES = frozenset({0, 1, 2, 3, 8})
ARP_ANNOUNCE_VALUES = frozenset({0, 1, 2})
RDMA_MODES = frozenset({"shared", "exclusive"})


def _cidr(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_interface(value))
    except ValueError as exc:
        raise PlanError(f"{what}: invalid CIDR {value!r}") from exc


def _network(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as exc:
        raise PlanError(f"{what}: invalid destination {value!r}") from exc


def _mac(value: str) -> str:
    return value.strip().lower().replace("-", ":")


def _has_netdev_config(config: NetworkConfig) -> bool:
    iface = config.interface
    iface_set = iface is not None and any(
        v is not None for v in iface.model_dump(exclude_none=True).values()
    )
    return bool(iface_set or config.routes or config.rules or config.neighbors or config.ethtool)


def _addresses(iface: InterfaceConfig, state: HostState, lease: DhcpLease | None) -> list[str]:
    assert state.host is not None
    if iface.dhcp:
        if iface.addresses:
            raise PlanError("interface.dhcp and interface.addresses are mutually exclusive")
        if lease is None:
            raise PlanError("interface.dhcp is set but no DHCP lease was obtained")
        return [_cidr(lease.address, "dhcp lease")]
    if iface.addresses:
        return [_cidr(a, f"interface.addresses[{i}]") for i, a in enumerate(iface.addresses)]
    return list(state.host.addresses)


INFINITE_LEASE = 0xFFFFFFFF


def _binding(lease: DhcpLease) -> DhcpBinding:
    """What the daemon needs to renew the lease later (an infinite lease is never renewed)."""
    lease_time = lease.lease_time
    return DhcpBinding(
        address=_cidr(lease.address, "dhcp lease"),
        server=lease.server,
        lease_time=None if lease_time is None or lease_time >= INFINITE_LEASE else lease_time,
        obtained_at=lease.obtained_at or 0,
    )


def _configured_routes(config: NetworkConfig, lease: DhcpLease | None) -> list[Route]:
    routes: list[Route] = []
    if lease is not None:
        if lease.routes:  # RFC 3442: option 121 present → option 3 is ignored
            routes += [
                Route(destination=_network(d, "dhcp route"), gateway=g) for d, g in lease.routes
            ]
        elif lease.router:
            fam = ipaddress.ip_address(lease.router).version
            routes.append(
                Route(destination="0.0.0.0/0" if fam == 4 else "::/0", gateway=lease.router)
            )
    for i, rc in enumerate(config.routes or []):
        what = f"routes[{i}]"
        if not rc.destination:
            raise PlanError(f"{what}.destination is required")
        scope = SCOPE_UNIVERSE if rc.scope is None else rc.scope
        if scope not in (SCOPE_UNIVERSE, SCOPE_LINK):
            raise PlanError(f"{what}.scope must be 0 or 253")
        if rc.gateway is None and scope != SCOPE_LINK:
            raise PlanError(f"{what}.gateway is required unless scope is link (253)")
        routes.append(
            Route(
                destination=_network(rc.destination, what),
                gateway=rc.gateway,
                source=rc.source,
                scope=scope,
                table=rc.table or MAIN_TABLE,
            )
        )
    return routes


def build_plan(
    device_name: str,
    pod_uid: str,
    config: NetworkConfig,
    host_state: HostState,
    *,
    rdma_mode: str = "shared",
    lease: DhcpLease | None = None,
) -> AttachPlan:
    """The fully resolved plan for one (pod, device). Raises PlanError naming the problem."""
    if rdma_mode not in RDMA_MODES:
        raise PlanError(f"unknown RDMA netns mode {rdma_mode!r}")
    rdma: RdmaPlan | None = None
    if host_state.rdma_link is not None or host_state.rdma_char_devices:
        rdma = RdmaPlan(
            link=host_state.rdma_link,
            char_devices=host_state.rdma_char_devices,
            move_link=rdma_mode == "exclusive" and host_state.rdma_link is not None,
        )
    host = host_state.host
    if host is None:
        if rdma is None:
            raise PlanError(f"device {device_name} has neither a netdev nor an RDMA link")
        if _has_netdev_config(config):
            raise PlanError(
                "RDMA-only device: interface, routes, rules, neighbors and ethtool "
                "settings are not allowed"
            )
        plan = AttachPlan(pod_uid=pod_uid, device=device_name, host=None, pod=None, rdma=rdma)
        check_plan(plan)
        return plan

    iface = config.interface or InterfaceConfig()
    addresses = _addresses(iface, host_state, lease)

    vrf: Vrf | None = None
    if iface.vrf is not None:
        if not iface.vrf.name:
            raise PlanError("interface.vrf.name is required")
        vrf = Vrf(name=iface.vrf.name, table=iface.vrf.table or default_vrf_table(iface.vrf.name))

    sysctls: list[Sysctl] = []
    if iface.arp_ignore is not None:
        if iface.arp_ignore not in ARP_IGNORE_VALUES:
            raise PlanError("interface.arpIgnore must be one of 0, 1, 2, 3, 8")
        sysctls.append(Sysctl("ipv4", "arp_ignore", iface.arp_ignore))
    if iface.arp_announce is not None:
        if iface.arp_announce not in ARP_ANNOUNCE_VALUES:
            raise PlanError("interface.arpAnnounce must be 0, 1 or 2")
        sysctls.append(Sysctl("ipv4", "arp_announce", iface.arp_announce))
    if iface.forwarding is not None:
        sysctls.append(Sysctl("ipv4", "forwarding", int(iface.forwarding)))
        sysctls.append(Sysctl("ipv6", "forwarding", int(iface.forwarding)))

    # Routes: configured (and DHCP) first, then the host's; dedupe by (destination, table).
    # A host route's preferred source only makes sense if the pod has that address.
    pod_ips = {str(ipaddress.ip_interface(a).ip) for a in addresses}
    host_routes = [
        r
        if r.source is None or r.source in pod_ips
        else Route(r.destination, r.gateway, None, r.scope, r.table)
        for r in host.routes
    ]
    routes: list[Route] = []
    seen: set[tuple[str, int]] = set()
    for given in [*_configured_routes(config, lease), *host_routes]:
        r = given
        if vrf is not None:
            r = Route(r.destination, r.gateway, r.source, r.scope, vrf.table)
        key = (r.destination, r.table)
        if key not in seen:
            seen.add(key)
            routes.append(r)
    routes.sort(key=lambda r: 0 if r.scope == SCOPE_LINK else 1)  # stable

    rules: list[Rule] = []
    if config.rules and vrf is not None:
        raise PlanError("rules cannot be combined with interface.vrf")
    for i, rc in enumerate(config.rules or []):
        fam = 4
        for sel in (rc.source, rc.destination):
            if sel:
                fam = ipaddress.ip_network(_network(sel, f"rules[{i}]")).version
        rules.append(
            Rule(
                table=rc.table or MAIN_TABLE,
                priority=rc.priority,
                source=_network(rc.source, f"rules[{i}].source") if rc.source else None,
                destination=(
                    _network(rc.destination, f"rules[{i}].destination") if rc.destination else None
                ),
                family=fam,
            )
        )
    if vrf is None:
        rules += [r for r in host.rules if r not in rules]

    neighbors: list[Neighbor] = []
    seen_dst: set[str] = set()
    for i, nc in enumerate(config.neighbors or []):
        if not nc.destination or not nc.hardware_addr:
            raise PlanError(f"neighbors[{i}]: destination and hardwareAddr are required")
        neighbors.append(Neighbor(nc.destination, _mac(nc.hardware_addr)))
        seen_dst.add(nc.destination)
    neighbors += [n for n in host.neighbors if n.destination not in seen_dst]

    eth = config.ethtool
    features = translate(eth.features or {}, host_state.features) if eth else {}
    private_flags: dict[str, bool] = {}
    for name, enable in ((eth.private_flags or {}) if eth else {}).items():
        if name not in host_state.private_flags:
            raise PlanError(f"unknown ethtool private flag {name!r} for this device")
        private_flags[name] = enable

    # Ethtool state stays with the device across netns moves: detach sets these back.
    current = {t.name: t.enable for t in host_state.feature_values}
    current_flags = {t.name: t.enable for t in host_state.private_flag_values}
    host = dataclasses.replace(
        host,
        features=tuple(Toggle(k, current[k]) for k in sorted(features) if k in current),
        private_flags=tuple(
            Toggle(k, current_flags[k]) for k in sorted(private_flags) if k in current_flags
        ),
    )
    pod = PodSide(
        name=iface.name or host.name,
        mtu=iface.mtu,
        mac=_mac(iface.hardware_addr) if iface.hardware_addr else None,
        gso_max_size=iface.gso_max_size,
        gro_max_size=iface.gro_max_size,
        gso_ipv4_max_size=iface.gso_ipv4_max_size,
        gro_ipv4_max_size=iface.gro_ipv4_max_size,
        addresses=tuple(addresses),
        routes=tuple(routes),
        rules=tuple(rules),
        neighbors=tuple(neighbors),
        vrf=vrf,
        sysctls=tuple(sysctls),
        features=tuple(Toggle(k, v) for k, v in sorted(features.items())),
        private_flags=tuple(Toggle(k, v) for k, v in sorted(private_flags.items())),
        disable_ebpf=bool(iface.disable_ebpf_programs),
        dhcp=_binding(lease) if iface.dhcp and lease is not None else None,
    )
    plan = AttachPlan(pod_uid=pod_uid, device=device_name, host=host, pod=pod, rdma=rdma)
    check_plan(plan)
    return plan
