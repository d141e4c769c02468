"""Google Compute Engine: `gce.dra.net/*` attributes from the metadata server.

Node-wide: `machineType` (last path element of `instance/machine-type`) and, when
`instance/attributes/physical_host` is `/block/subBlock/host`, `block`, `subBlock`, `host`.
Per NIC, joined on the MAC: `networkName` and `networkProjectNumber` (int) from the NIC's
`projects/<number>/networks/<name>`, and `ipAliases` (comma-joined). No device config.
Every request carries `Metadata-Flavor: Google` (the server refuses requests without it).
Endpoint: `--cloud-metadata-endpoint`, else `GCE_METADATA_HOST` (the Google SDKs' variable).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from knd.api.config import NetworkConfig
from knd.inventory.cloud.base import (
    HINT_GCE,
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

PREFIX = "gce.dra.net"
MACHINE_TYPE = f"{PREFIX}/machineType"
BLOCK = f"{PREFIX}/block"
SUB_BLOCK = f"{PREFIX}/subBlock"
HOST = f"{PREFIX}/host"
NETWORK_NAME = f"{PREFIX}/networkName"
NETWORK_PROJECT_NUMBER = f"{PREFIX}/networkProjectNumber"
IP_ALIASES = f"{PREFIX}/ipAliases"

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENV = ("GCE_METADATA_HOST",)
HEADERS = {"Metadata-Flavor": "Google"}
ROOT = "/computeMetadata/v1/"
_NETWORK = re.compile(r"^projects/(\d+)/networks/(\S+)$")


@dataclass(frozen=True, slots=True)
class Nic:
    mac: str
    network: str
    ip_aliases: tuple[str, ...] = ()


@dataclass(slots=True)
class GceInstance:
    machine_type: str
    topology: str = ""
    nics: dict[str, Nic] = field(default_factory=dict)  # normalized MAC -> NIC
    name: str = HINT_GCE

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        out: dict[str, AttrValue] = {}
        if self.machine_type:
            out[MACHINE_TYPE] = self.machine_type
        parts = self.topology.strip("/").split("/", 2) if self.topology else []
        if len(parts) == 3 and all(parts):
            out[BLOCK], out[SUB_BLOCK], out[HOST] = parts
        nic = self.nics.get(normalize_mac(ids.mac)) if ids.mac else None
        if nic is None:
            return out
        if nic.ip_aliases:
            out[IP_ALIASES] = ",".join(nic.ip_aliases)
        m = _NETWORK.match(nic.network)
        if m:
            out[NETWORK_PROJECT_NUMBER] = int(m.group(1))
            out[NETWORK_NAME] = m.group(2)
        elif nic.network:
            log.warning("GCE: cannot parse network %r of NIC %s", nic.network, nic.mac)
        return out

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        return None


def base_url(override: str = "") -> str:
    return endpoint(DEFAULT_ENDPOINT, override, *ENV)


def probe(override: str, timeout: float) -> bool:
    """True when a GCE metadata server answers at the endpoint."""
    try:
        get(base_url(override), ROOT + "instance/id", HEADERS, timeout, provider=HINT_GCE)
    except CloudError:
        return False
    return True


def _nics(raw: Any) -> dict[str, Nic]:
    if not isinstance(raw, list):
        raise CloudError("GCE: instance/network-interfaces is not a JSON list")
    nics: dict[str, Nic] = {}
    for item in raw:
        mac = text_field(item, "mac")
        if not mac:
            continue
        aliases = item.get("ipAliases") if isinstance(item, dict) else None
        alias_list = (
            tuple(a for a in aliases if isinstance(a, str)) if isinstance(aliases, list) else ()
        )
        nics[normalize_mac(mac)] = Nic(mac, text_field(item, "network"), alias_list)
    return nics


def load(override: str = "", timeout: float = 2.0) -> GceInstance:
    """Read the instance's metadata once; raises CloudError."""
    base = base_url(override)
    machine = get(base, ROOT + "instance/machine-type", HEADERS, timeout, provider=HINT_GCE)
    nics = get_json(
        base,
        ROOT + "instance/network-interfaces/?recursive=true&alt=json",
        HEADERS,
        timeout,
        provider=HINT_GCE,
    )
    instance = GceInstance(machine.text().strip().rsplit("/", 1)[-1], nics=_nics(nics))
    try:
        topo = get(
            base, ROOT + "instance/attributes/physical_host", HEADERS, timeout, provider=HINT_GCE
        )
        instance.topology = topo.text().strip()
    except CloudError as exc:  # not every VM has a physical host
        log.info("GCE: no physical_host topology (%s)", exc)
    return instance
