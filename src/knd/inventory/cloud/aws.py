"""AWS EC2: EFA device-group attributes on Trainium/Inferentia instances (DraNet's AWS provider).

DraNet publishes, only on Neuron instances (type family `trn*`/`inf*`) and only for PCI devices
bound to the `efa` driver, the device-group IDs of AWS's Neuron/EFA topology lookup:
`resource.aws.com/devicegroup1_id` (the EFA PCI address itself), and `devicegroup4_id`,
`devicegroup8_id`, `devicegroup16_id`: the first 16 hex digits of SHA-256 over the sorted, unique
EFA addresses of the Neuron devices in the same aligned group of 4/8/16. A Neuron device driver
plugin publishes the same IDs, so `matchAttribute` aligns a Neuron device with its EFA NICs.
The Neuron-index → EFA-address tables per instance family are AWS's published facts
(`aws_efa_maps.json`). No device config.

Metadata: IMDSv2 (`PUT /latest/api/token`, then the token header), falling back to IMDSv1 when
the token call is refused; the instance type comes from the identity document. Endpoint:
`--cloud-metadata-endpoint`, else `AWS_EC2_METADATA_SERVICE_ENDPOINT` (the AWS SDKs' variable).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from knd.api.config import NetworkConfig
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud.base import (
    HINT_AWS,
    LINK_LOCAL,
    AttrValue,
    CloudError,
    CloudStatusError,
    DeviceIds,
    endpoint,
    get,
    text_field,
)

PREFIX = "resource.aws.com"
GROUP_SIZES = (1, 4, 8, 16)
ENV = ("AWS_EC2_METADATA_SERVICE_ENDPOINT",)
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105 (a header name)
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 (a header name)
IDENTITY = "/latest/dynamic/instance-identity/document"
_FAMILY = re.compile(r"^([a-z]+)")


def group_attr(size: int) -> str:
    return f"{PREFIX}/devicegroup{size}_id"


@functools.cache
def _maps() -> dict[str, Any]:
    text = resources.files("knd.inventory.cloud").joinpath("aws_efa_maps.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def is_neuron(instance_type: str) -> bool:
    m = _FAMILY.match(instance_type.lower())
    return m is not None and m.group(1) in ("trn", "inf")


def efa_table(instance_type: str) -> list[str]:
    """Neuron index → EFA PCI address for an EFA-enabled type, else []."""
    maps = _maps()
    if instance_type not in maps["efaInstanceTypes"]:
        return []
    family = maps["families"].get(instance_type.split(".", 1)[0])
    table = maps["neuronToEfa"].get(family, []) if family else []
    return list(table)


def group_ids(table: list[str], efa_address: str) -> dict[str, str]:
    """The device-group attributes of one EFA device (empty when it is not in the table)."""
    if efa_address not in table:
        return {}
    neuron = table.index(efa_address)
    out = {group_attr(1): efa_address}
    for size in GROUP_SIZES[1:]:
        start = (neuron // size) * size
        members = sorted(set(table[start : start + size]))
        digest = hashlib.sha256(",".join(members).encode()).hexdigest()[:16]
        out[group_attr(size)] = digest
    return out


@dataclass(slots=True)
class AwsInstance:
    instance_type: str
    sysfs: SysfsRoot = field(default_factory=SysfsRoot)
    name: str = HINT_AWS

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        if not ids.pci_address or not is_neuron(self.instance_type):
            return {}
        if self.sysfs.link_name("bus", "pci", "devices", ids.pci_address, "driver") != "efa":
            return {}
        return dict(group_ids(efa_table(self.instance_type), ids.pci_address))

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        return None


def base_url(override: str = "") -> str:
    return endpoint(LINK_LOCAL, override, *ENV)


def _headers(base: str, timeout: float) -> dict[str, str]:
    try:
        resp = get(
            base,
            "/latest/api/token",
            {TOKEN_TTL_HEADER: "21600"},
            timeout,
            method="PUT",
            provider=HINT_AWS,
        )
    except CloudStatusError:
        return {}  # IMDSv2 refused: IMDSv1 (a timeout is not retried: detection stays bounded)
    return {TOKEN_HEADER: resp.text().strip()}


def identity(override: str, timeout: float) -> dict[str, Any]:
    base = base_url(override)
    resp = get(base, IDENTITY, _headers(base, timeout), timeout, provider=HINT_AWS)
    try:
        doc = json.loads(resp.body)
    except ValueError as exc:
        raise CloudError(f"AWS: identity document is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not text_field(doc, "instanceType"):
        raise CloudError("AWS: identity document has no instanceType")
    return doc


def probe(override: str, timeout: float) -> bool:
    try:
        identity(override, timeout)
    except CloudError:
        return False
    return True


def load(override: str = "", timeout: float = 2.0, sysfs: SysfsRoot | None = None) -> AwsInstance:
    doc = identity(override, timeout)
    return AwsInstance(text_field(doc, "instanceType"), sysfs or SysfsRoot())
