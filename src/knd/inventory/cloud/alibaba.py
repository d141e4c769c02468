"""Alibaba Cloud ECS: `alibaba.dra.net/instanceType` (string) on every device and
`alibaba.dra.net/erdma` (bool, true) on PCI devices that back an `erdma*` RDMA device.

Metadata: token (`PUT /latest/api/token` with a TTL header), then the token header on reads.
eRDMA devices come from `/sys/class/infiniband/erdma*/device` (read through the sysfs root, so
`knd inventory --sysfs-root` works offline). Endpoint: `--cloud-metadata-endpoint` (Alibaba's SDKs
have no variable for it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from knd.api.config import NetworkConfig
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud.base import (
    HINT_ALIBABA,
    AttrValue,
    CloudError,
    DeviceIds,
    endpoint,
    get,
)

log = logging.getLogger(__name__)

PREFIX = "alibaba.dra.net"
INSTANCE_TYPE = f"{PREFIX}/instanceType"
ERDMA = f"{PREFIX}/erdma"

DEFAULT_ENDPOINT = "http://100.100.100.200"
TOKEN_TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"  # noqa: S105 (a header name)
TOKEN_HEADER = "X-aliyun-ecs-metadata-token"  # noqa: S105 (a header name)


@dataclass(slots=True)
class AlibabaInstance:
    instance_type: str = ""
    erdma_pci: frozenset[str] = field(default_factory=frozenset)
    name: str = HINT_ALIBABA

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        out: dict[str, AttrValue] = {}
        if self.instance_type:
            out[INSTANCE_TYPE] = self.instance_type
        if ids.pci_address and ids.pci_address in self.erdma_pci:
            out[ERDMA] = True
        return out

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        return None


def base_url(override: str = "") -> str:
    return endpoint(DEFAULT_ENDPOINT, override)


def erdma_pci_addresses(sysfs: SysfsRoot) -> frozenset[str]:
    found = set()
    for name in sysfs.listdir("class", "infiniband"):
        if name.startswith("erdma"):
            target = sysfs.realpath("class", "infiniband", name, "device")
            if target is not None:
                found.add(target.name)
    return frozenset(found)


def _read(base: str, path: str, timeout: float) -> str:
    token = (
        get(
            base,
            "/latest/api/token",
            {TOKEN_TTL_HEADER: "21600"},
            timeout,
            method="PUT",
            provider=HINT_ALIBABA,
        )
        .text()
        .strip()
    )
    return get(base, path, {TOKEN_HEADER: token}, timeout, provider=HINT_ALIBABA).text().strip()


def probe(override: str, timeout: float) -> bool:
    try:
        _read(base_url(override), "/latest/meta-data/instance-id", timeout)
    except CloudError:
        return False
    return True


def load(
    override: str = "", timeout: float = 2.0, sysfs: SysfsRoot | None = None
) -> AlibabaInstance:
    instance_type = _read(base_url(override), "/latest/meta-data/instance/instance-type", timeout)
    erdma = erdma_pci_addresses(sysfs or SysfsRoot())
    log.info("Alibaba: instance type %s, eRDMA on %s", instance_type, sorted(erdma))
    return AlibabaInstance(instance_type, erdma)
