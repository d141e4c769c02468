"""Oracle Cloud (OKE): `oke.dra.net/*` RDMA topology attributes from IMDS v2 `/opc/v2/host/`.

Node-wide (the host endpoint has no per-NIC data): `hpcIslandId`, `networkBlockId`,
`localBlockId`, `gpuMemoryFabricId` from `rdmaTopologyData` (each the OCID's last segment, at
most 60 characters, so it fits the 64-character limit), and `rackId`. Without
`rdmaTopologyData` (shapes such as H100) only the top-level `networkBlockId` and `rackId` are
published. Requests carry `Authorization: Bearer Oracle`. Endpoint: `--cloud-metadata-endpoint`
(the OCI SDKs have no variable for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knd.api.config import NetworkConfig
from knd.inventory.cloud.base import (
    HINT_OKE,
    LINK_LOCAL,
    AttrValue,
    CloudError,
    DeviceIds,
    endpoint,
    get,
    get_json,
    text_field,
)

PREFIX = "oke.dra.net"
HPC_ISLAND_ID = f"{PREFIX}/hpcIslandId"
NETWORK_BLOCK_ID = f"{PREFIX}/networkBlockId"
LOCAL_BLOCK_ID = f"{PREFIX}/localBlockId"
RACK_ID = f"{PREFIX}/rackId"
GPU_MEMORY_FABRIC_ID = f"{PREFIX}/gpuMemoryFabricId"

HEADERS = {"Authorization": "Bearer Oracle"}
ROOT = "/opc/v2"
MAX_SUFFIX = 60


def ocid_suffix(value: str, field_name: str) -> str:
    """The unique last segment of an OCID, capped at 60 characters; CloudError if not an OCID."""
    if not value:
        return ""
    if "ocid" not in value or "." not in value:
        raise CloudError(f"OKE: {field_name} is not an OCID: {value[:80]!r}")
    return value.rsplit(".", 1)[1][-MAX_SUFFIX:]


@dataclass(frozen=True, slots=True)
class OkeInstance:
    hpc_island_id: str = ""
    network_block_id: str = ""
    local_block_id: str = ""
    rack_id: str = ""
    gpu_memory_fabric_id: str = ""
    name: str = HINT_OKE

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        pairs = (
            (HPC_ISLAND_ID, self.hpc_island_id),
            (NETWORK_BLOCK_ID, self.network_block_id),
            (LOCAL_BLOCK_ID, self.local_block_id),
            (RACK_ID, self.rack_id),
            (GPU_MEMORY_FABRIC_ID, self.gpu_memory_fabric_id),
        )
        return {k: v for k, v in pairs if v}

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        return None


def base_url(override: str = "") -> str:
    return endpoint(LINK_LOCAL, override)


def probe(override: str, timeout: float) -> bool:
    try:
        get(base_url(override), ROOT + "/instance/", HEADERS, timeout, provider=HINT_OKE)
    except CloudError:
        return False
    return True


def parse_host(data: Any) -> OkeInstance:
    """The instance from a `/opc/v2/host/` document; CloudError on a malformed OCID."""
    if not isinstance(data, dict):
        raise CloudError("OKE: /opc/v2/host/ is not a JSON object")
    rack = text_field(data, "rackId")
    topo = data.get("rdmaTopologyData")
    if not isinstance(topo, dict):
        return OkeInstance(network_block_id=text_field(data, "networkBlockId"), rack_id=rack)
    return OkeInstance(
        hpc_island_id=ocid_suffix(text_field(topo, "customerHPCIslandId"), "customerHPCIslandId"),
        network_block_id=ocid_suffix(
            text_field(topo, "customerNetworkBlock"), "customerNetworkBlock"
        ),
        local_block_id=ocid_suffix(text_field(topo, "customerLocalBlock"), "customerLocalBlock"),
        rack_id=rack,
        gpu_memory_fabric_id=ocid_suffix(
            text_field(topo, "customerGpuMemoryFabric"), "customerGpuMemoryFabric"
        ),
    )


def load(override: str = "", timeout: float = 2.0) -> OkeInstance:
    try:
        data = get_json(base_url(override), ROOT + "/host/", HEADERS, timeout, provider=HINT_OKE)
    except CloudError as exc:
        raise CloudError(f"{exc} (is TopologyData enabled for the tenancy?)") from None
    return parse_host(data)
