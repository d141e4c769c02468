"""Azure: `azure.dra.net/*` attributes and DraNet's per-NIC policy routing config, from IMDS.

Node-wide attributes (set ones only): `vmSize`, `placementGroupId`, `interconnectGroupId`,
`interconnectSubgroupId` (`/metadata/instance/compute`).

Device config, joined on the MAC (IMDS writes `000D3A...`; compared without separators or case):
the NIC at index i of `/metadata/instance/network` gets routing table 100+i, a rule
`from <subnet>/<prefix> lookup 100+i` and a default route in that table via the subnet's first
address (Azure's gateway). That keeps replies from a secondary NIC's address leaving by that
NIC once it is in the pod. A subnet whose address is not the network base is skipped with a
warning. IPv6, as DraNet does it: when the NIC's first IMDS IPv6 address is set and not
link-local, and the host's main table has an IPv6 default route through the NIC (looked up by
the interface name when the config is asked for, i.e. at prepare, while the NIC is still in the
host; a local netlink read, never the metadata server), the same table gets a rule
`from <address>/128` and `::/0 via <that gateway>` (Azure's is link-local, `fe80::1234:5678:9abc`).

Requests carry `Metadata: true`. Endpoint: `--cloud-metadata-endpoint`, else `IMDS_ENDPOINT`
(the variable Azure's identity SDKs read).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from knd.api.config import NetworkConfig, RouteConfig, RuleConfig
from knd.host.netlink import AF_INET6, NetlinkError, default_gateway
from knd.inventory.cloud.base import (
    HINT_AZURE,
    LINK_LOCAL,
    AttrValue,
    CloudError,
    DeviceIds,
    endpoint,
    get,
    get_json,
    normalize_mac,
    text_field,
)

log = logging.getLogger(__name__)

PREFIX = "azure.dra.net"
VM_SIZE = f"{PREFIX}/vmSize"
PLACEMENT_GROUP_ID = f"{PREFIX}/placementGroupId"
INTERCONNECT_GROUP_ID = f"{PREFIX}/interconnectGroupId"
INTERCONNECT_SUBGROUP_ID = f"{PREFIX}/interconnectSubgroupId"

API_VERSION = "2025-11-11"
HEADERS = {"Metadata": "true"}
ENV = ("IMDS_ENDPOINT",)
ROOT = "/metadata/instance"
TABLE_BASE = 100


@dataclass(frozen=True, slots=True)
class Nic:
    mac: str
    subnet_address: str = ""
    subnet_prefix: str = ""
    ipv6_address: str = ""


def host_ipv6_gateway(ifname: str) -> str:
    """The host's main-table IPv6 default gateway through `ifname`; '' when none or unreadable."""
    try:
        return default_gateway(ifname, AF_INET6)
    except NetlinkError as exc:
        log.warning("Azure: no IPv6 gateway for %s: %s", ifname, exc)
        return ""


@dataclass(slots=True)
class AzureInstance:
    vm_size: str = ""
    placement_group_id: str = ""
    interconnect_group_id: str = ""
    interconnect_subgroup_id: str = ""
    nics: list[Nic] = field(default_factory=list)
    name: str = HINT_AZURE
    #: interface name → its IPv6 default gateway ('' when none); tests inject a table.
    ipv6_gateway: Callable[[str], str] = host_ipv6_gateway

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        pairs = (
            (VM_SIZE, self.vm_size),
            (PLACEMENT_GROUP_ID, self.placement_group_id),
            (INTERCONNECT_GROUP_ID, self.interconnect_group_id),
            (INTERCONNECT_SUBGROUP_ID, self.interconnect_subgroup_id),
        )
        return {k: v for k, v in pairs if v}

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        if not ids.mac:
            return None
        want = normalize_mac(ids.mac)
        for index, nic in enumerate(self.nics):
            if normalize_mac(nic.mac) == want:
                return _routing(index, nic, lambda: self.ipv6_gateway(ids.name))
        return None


def first_address(address: str, prefix: str) -> str:
    """The subnet's first usable address (Azure's gateway); ValueError when not a v4 base."""
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=True)
    if net.version != 4:
        raise ValueError(f"{address} is not IPv4")
    if net.num_addresses < 2:
        raise ValueError(f"{net} has no room for a gateway")
    return str(net.network_address + 1)


def _routing(index: int, nic: Nic, ipv6_gateway: Callable[[], str]) -> NetworkConfig | None:
    table = TABLE_BASE + index
    rules: list[RuleConfig] = []
    routes: list[RouteConfig] = []
    if nic.subnet_address:
        try:
            gateway = first_address(nic.subnet_address, nic.subnet_prefix)
        except ValueError as exc:
            log.warning(
                "Azure: NIC %s subnet %s/%s: %s",
                nic.mac,
                nic.subnet_address,
                nic.subnet_prefix,
                exc,
            )
        else:
            source = f"{nic.subnet_address}/{nic.subnet_prefix}"
            rules.append(RuleConfig(source=source, table=table))
            routes.append(RouteConfig(destination="0.0.0.0/0", gateway=gateway, table=table))
    address = _global_ipv6(nic.ipv6_address)
    if address:
        gateway6 = ipv6_gateway()
        if gateway6:
            rules.append(RuleConfig(source=f"{address}/128", table=table))
            routes.append(RouteConfig(destination="::/0", gateway=gateway6, table=table))
    if not rules and not routes:
        return None
    return NetworkConfig(rules=rules, routes=routes)


def _global_ipv6(text: str) -> str:
    """`text` when it is an IPv6 address that is not link-local; else ''."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return ""
    if addr.version != 6 or addr.is_link_local:
        return ""
    return str(addr)


def base_url(override: str = "") -> str:
    return endpoint(LINK_LOCAL, override, *ENV)


def probe(override: str, timeout: float) -> bool:
    path = f"{ROOT}?api-version={API_VERSION}&format=text"
    try:
        get(base_url(override), path, HEADERS, timeout, provider=HINT_AZURE)
    except CloudError:
        return False
    return True


def _nics(data: Any) -> list[Nic]:
    nics: list[Nic] = []
    items = data.get("interface") if isinstance(data, dict) else None
    for item in items if isinstance(items, list) else []:
        ipv4 = item.get("ipv4") if isinstance(item, dict) else None
        subnets = ipv4.get("subnet") if isinstance(ipv4, dict) else None
        first = subnets[0] if isinstance(subnets, list) and subnets else {}
        ipv6 = item.get("ipv6") if isinstance(item, dict) else None
        addrs6 = ipv6.get("ipAddress") if isinstance(ipv6, dict) else None
        first6 = addrs6[0] if isinstance(addrs6, list) and addrs6 else {}
        nics.append(
            Nic(
                text_field(item, "macAddress"),
                text_field(first, "address"),
                text_field(first, "prefix"),
                text_field(first6, "privateIpAddress"),
            )
        )
    return nics


def load(override: str = "", timeout: float = 2.0) -> AzureInstance:
    base = base_url(override)
    compute = get_json(
        base,
        f"{ROOT}/compute?api-version={API_VERSION}&format=json",
        HEADERS,
        timeout,
        provider=HINT_AZURE,
    )
    instance = AzureInstance(
        vm_size=text_field(compute, "vmSize"),
        placement_group_id=text_field(compute, "placementGroupId"),
        interconnect_group_id=text_field(compute, "interconnectGroupId"),
        interconnect_subgroup_id=text_field(compute, "interconnectSubgroupId"),
    )
    try:
        network = get_json(
            base,
            f"{ROOT}/network?api-version={API_VERSION}&format=json",
            HEADERS,
            timeout,
            provider=HINT_AZURE,
        )
        instance.nics = _nics(network)
    except CloudError as exc:  # attributes still work without the routing config
        log.warning("Azure: no network metadata, no per-NIC routing: %s", exc)
    return instance
