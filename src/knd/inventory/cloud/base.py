"""What every cloud provider offers the inventory and prepare: the device-identifier join, the
provider protocol, and the per-cloud metadata endpoint resolution.

A provider is built once at start-up from the instance metadata (`load`), then answers from
memory: `attributes(ids)` during each inventory scan and `device_config(ids)` for prepare. Only
the webhook provider talks to the network after start-up, and it caches its last good answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from knd.api.config import NetworkConfig
from knd.host.http_fetch import FetchError, Response, fetch
from knd.inventory.model import AttrValue as ModelAttrValue

AttrValue = ModelAttrValue

HINT_GCE = "GCE"
HINT_AWS = "AWS"
HINT_AZURE = "AZURE"
HINT_OKE = "OKE"
HINT_ALIBABA = "ALIBABA"
HINT_CKS = "CKS"
HINT_WEBHOOK = "webhook"
HINT_NONE = "NONE"
#: DraNet's `--cloud-provider-hint` values (an empty hint means: detect).
HINTS = (
    HINT_GCE,
    HINT_AWS,
    HINT_AZURE,
    HINT_OKE,
    HINT_ALIBABA,
    HINT_CKS,
    HINT_WEBHOOK,
    HINT_NONE,
)

#: Metadata server address every provider but GCE and Alibaba listens on.
LINK_LOCAL = "http://169.254.169.254"


class CloudError(Exception):
    """Metadata could not be read or understood (the message names the provider and URL)."""


class CloudStatusError(CloudError):
    """The server answered, with a status other than 200."""


def canonical_hint(value: str) -> str:
    """The canonical spelling of a hint (case-insensitive; `none`/"" → NONE/""); ValueError."""
    if value == "":
        return ""
    for hint in HINTS:
        if value.lower() == hint.lower():
            return hint
    raise ValueError(f"unknown cloud provider hint {value!r} (one of {', '.join(HINTS)})")


@dataclass(frozen=True, slots=True)
class DeviceIds:
    """Local identifiers a provider can join its metadata on (DraNet's DeviceIdentifiers)."""

    name: str
    mac: str = ""
    pci_address: str = ""

    def wire(self) -> dict[str, str]:
        out = {"name": self.name}
        if self.mac:
            out["mac_address"] = self.mac
        if self.pci_address:
            out["pci_address"] = self.pci_address
        return out


class CloudInstance(Protocol):
    """A loaded provider. Both calls answer from memory and never raise."""

    @property
    def name(self) -> str: ...

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]: ...

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None: ...


def normalize_mac(mac: str) -> str:
    """Lower-case hex digits only: `00-0D-3A-..`, `000D3A..` and `00:0d:3a:..` compare equal."""
    return "".join(c for c in mac.lower() if c in "0123456789abcdef")


def endpoint(provider_default: str, override: str = "", *env_names: str) -> str:
    """The base URL a provider uses: `override` (the flag) > the first set SDK variable > default.

    A variable whose value has no scheme (GCE_METADATA_HOST is `host[:port]`) gets `http://`.
    """
    for raw in (override, *(os.environ.get(n, "") for n in env_names)):
        value = raw.strip()
        if value:
            return value if "://" in value else "http://" + value
    return provider_default


def get(
    base: str,
    path: str,
    headers: Mapping[str, str],
    timeout: float,
    *,
    method: str = "GET",
    provider: str,
) -> Response:
    """One metadata request; non-200 answers and transport failures become CloudError."""
    try:
        resp = fetch(base, path, method=method, headers=headers, timeout=timeout)
    except FetchError as exc:
        raise CloudError(f"{provider}: {exc}") from None
    if not resp.ok:
        raise CloudStatusError(f"{provider}: {base}{path}: HTTP {resp.status}")
    return resp


def get_json(
    base: str, path: str, headers: Mapping[str, str], timeout: float, *, provider: str
) -> Any:
    resp = get(base, path, headers, timeout, provider=provider)
    try:
        return json.loads(resp.body)
    except (ValueError, RecursionError) as exc:
        raise CloudError(f"{provider}: {base}{path}: not JSON: {exc}") from None


def text_field(obj: Any, key: str) -> str:
    """obj[key] when obj is a mapping and the value a string; else ''."""
    if isinstance(obj, Mapping):
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return ""
