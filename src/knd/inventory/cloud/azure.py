"""Azure: `azure.dra.net/*` attributes and DraNet's per-NIC policy routing config, from IMDS.

Node-wide attributes (set ones only): `vmSize`, `placementGroupId`, `interconnectGroupId`,
`interconnectSubgroupId` (`/metadata/instance/compute`).

Device config, joined on the MAC (IMDS writes `000D3A...`; compared without separators or case):
the NIC at index i of `/metadata/instance/network` gets routing table 100+i, a rule
`from <subnet>/<prefix> lookup 100+i` and a default route in that table via the subnet's first
address (Azure's gateway). That keeps replies from a secondary NIC's address leaving by that
NIC once it is in the pod. A subnet whose address is not the network base is skipped with a
warning. (DraNet also adds an IPv6 rule/route when the host has an IPv6 default gateway on the
NIC; knd does not yet: IPv6 on Azure secondary NICs is rare and knd's scan does not keep the
gateway.)

Requests carry `Metadata: true`. Endpoint: `--cloud-metadata-endpoint`, else `IMDS_ENDPOINT`
(the variable Azure's identity SDKs read).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from knd.api.config import NetworkConfig, RouteConfig, RuleConfig
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


@dataclass(slots=True)
class AzureInstance:
    vm_size: str = ""
    placement_group_id: str = ""
    interconnect_group_id: str = ""
    interconnect_subgroup_id: str = ""
    nics: list[Nic] = field(default_factory=list)
    name: str = HINT_AZURE

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
                return _routing(index, nic)
        return None


def first_address(address: str, prefix: str) -> str:
    """The subnet's first usable address (Azure's gateway); ValueError when not a v4 base."""
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=True)
    if net.version != 4:
        raise ValueError(f"{address} is not IPv4")
    if net.num_addresses < 2:
        raise ValueError(f"{net} has no room for a gateway")
    return str(net.network_address + 1)


def _routing(index: int, nic: Nic) -> NetworkConfig | None:
    if not nic.subnet_address:
        return None
    table = TABLE_BASE + index
    try:
        gateway = first_address(nic.subnet_address, nic.subnet_prefix)
    except ValueError as exc:
        log.warning(
            "Azure: NIC %s subnet %s/%s: %s", nic.mac, nic.subnet_address, nic.subnet_prefix, exc
        )
        return None
    return NetworkConfig(
        rules=[RuleConfig(source=f"{nic.subnet_address}/{nic.subnet_prefix}", table=table)],
        routes=[RouteConfig(destination="0.0.0.0/0", gateway=gateway, table=table)],
    )


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
        nics.append(
            Nic(
                text_field(item, "macAddress"),
                text_field(first, "address"),
                text_field(first, "prefix"),
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
