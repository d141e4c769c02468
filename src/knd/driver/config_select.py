"""The merged, final NetworkConfig of one allocated device, with errors that name the culprit.

Sources: `status.allocation.devices.config[]` of the claim (the scheduler copies DeviceClass
configs there with `source: FromClass`, then the claim's own with `source: FromClaim`). Which
entries apply and how they merge is knd.api.merge (class < claim, later wins, lists merged);
defaults and validation are knd.api.check.finalize. Unlike DraNet (first valid config wins,
invalid ones silently skipped), a broken config is an error naming the config entry, the JSON
field and the device, so the user learns about it.
"""

from __future__ import annotations

from knd.api.check import finalize
from knd.api.claims import Allocation
from knd.api.config import NetworkConfig
from knd.api.errors import ConfigError
from knd.api.merge import ConfigEntry, merge_configs, resolve_request_config
from knd.driver.errors import ClaimError

__all__ = ["base_request", "merge_configs", "resolve_config"]


def base_request(request: str) -> str:
    """`req/sub` → `req` (kubelet wants base request names)."""
    return request.split("/", 1)[0]


def resolve_config(
    allocation: Allocation,
    driver: str,
    request: str,
    device_label: str,
    provider: NetworkConfig | None = None,
) -> NetworkConfig:
    """Decode, merge (over `provider`), default and validate the configs for one device."""
    raw = (allocation.get("devices") or {}).get("config") or []
    entries = [ConfigEntry.from_api(obj, index=i) for i, obj in enumerate(raw)]
    try:
        merged = resolve_request_config(entries, driver, request, provider)
        return finalize(merged)
    except ConfigError as exc:
        raise ClaimError(
            f"device {device_label}: invalid config in status.allocation.devices.config: {exc}"
        ) from exc
