"""DraNet's provider webhook ("bring your own provider"): an HTTP or unix-socket server on the
node that can act as a cloud provider (attributes, device config) and/or a profile provider.

Protocol (DraNet's, JSON over HTTP):
* `GET /health` → 200 `{"cloudProvider": bool, "profileProvider": bool}` (capabilities);
* `POST /GetDeviceAttributes` with the device ids `{"name", "mac_address", "pci_address"}` →
  `{qualifiedName: {"string"|"int"|"bool"|"version": value}}`;
* `POST /GetDeviceConfig` with the ids → a NetworkConfig (baseline, e.g. MTU);
* `POST /GetProfileConfig` with `{"device": ids, "claim_uid", "config"}` → the NetworkConfig the
  profile resolves to (e.g. allocated addresses); non-200 denies the claim;
* `POST /ReleaseProfileConfig` with the same body → 200 (best effort; idempotent).

Every call is bounded (`timeout`, 1 MiB); answers are decoded strictly: a garbage answer is an
error naming the call, never an exception from deep inside. A call for a capability the server
did not declare is refused locally (DraNet answers "501 Not Implemented" the same way).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from knd.api.config import NetworkConfig, decode
from knd.api.errors import ConfigError
from knd.host.http_fetch import Endpoint, FetchError, fetch
from knd.inventory.cloud.base import HINT_WEBHOOK, AttrValue, CloudError, DeviceIds

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # DraNet's client timeout
ATTRIBUTE_TIMEOUT = 2.0  # per scan call; a slow server must not stall discovery
_HEADERS = {"Content-Type": "application/json"}


class WebhookError(CloudError):
    """The webhook refused, failed, timed out or answered something unusable."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    cloud_provider: bool = False
    profile_provider: bool = False


def parse_attributes(data: Any) -> dict[str, AttrValue]:
    """A `{name: DeviceAttribute}` map → scalars; entries of other shapes are skipped."""
    if not isinstance(data, Mapping):
        raise WebhookError("webhook GetDeviceAttributes: answer is not a JSON object")
    out: dict[str, AttrValue] = {}
    for name, value in data.items():
        if not isinstance(name, str) or "/" not in name or not isinstance(value, Mapping):
            continue
        for key in ("string", "version", "bool", "int"):
            v = value.get(key)
            is_int = key == "int" and isinstance(v, int) and not isinstance(v, bool)
            is_bool = key == "bool" and isinstance(v, bool)
            is_text = key in ("string", "version") and isinstance(v, str)
            if isinstance(v, bool | int | str) and (is_int or is_bool or is_text):
                out[name] = v
                break
    return out


@dataclass(slots=True)
class WebhookClient:
    """Talks to one webhook URL (`http(s)://...` or `unix:///path`)."""

    url: str
    timeout: float = DEFAULT_TIMEOUT
    caps: Capabilities = field(default_factory=Capabilities)
    _endpoint: Endpoint | None = None

    def __post_init__(self) -> None:
        try:
            self._endpoint = Endpoint.parse(self.url)
        except FetchError as exc:
            raise WebhookError(f"--webhook-url: {exc}") from None

    def _call(self, method: str, path: str, body: Any, timeout: float | None) -> Any:
        assert self._endpoint is not None
        payload = None if body is None else json.dumps(body).encode()
        try:
            resp = fetch(
                self._endpoint,
                path,
                method=method,
                headers=_HEADERS if payload is not None else {},
                body=payload,
                timeout=self.timeout if timeout is None else timeout,
            )
        except FetchError as exc:
            raise WebhookError(f"webhook {path}: {exc}") from None
        if resp.status != 200:
            detail = resp.text().strip()[:300]
            raise WebhookError(f"webhook {path}: HTTP {resp.status}: {detail}")
        if not resp.body.strip():
            return None
        try:
            return json.loads(resp.body)
        except (ValueError, RecursionError):
            raise WebhookError(f"webhook {path}: answer is not JSON") from None

    def health(self, timeout: float | None = None) -> Capabilities:
        """GET /health; stores and returns the capabilities. Raises WebhookError."""
        data = self._call("GET", "/health", None, timeout)
        if not isinstance(data, Mapping):
            raise WebhookError("webhook /health: answer is not a JSON object of capabilities")
        self.caps = Capabilities(
            data.get("cloudProvider") is True, data.get("profileProvider") is True
        )
        return self.caps

    def _config(self, path: str, body: Any, timeout: float | None) -> NetworkConfig:
        data = self._call("POST", path, body, timeout)
        try:
            return decode(data)
        except ConfigError as exc:
            raise WebhookError(f"webhook {path}: answer is not a valid config: {exc}") from None

    def device_attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        if not self.caps.cloud_provider:
            raise WebhookError("webhook did not declare cloudProvider")
        data = self._call("POST", "/GetDeviceAttributes", ids.wire(), ATTRIBUTE_TIMEOUT)
        return parse_attributes(data if data is not None else {})

    def device_config(self, ids: DeviceIds) -> NetworkConfig:
        if not self.caps.cloud_provider:
            raise WebhookError("webhook did not declare cloudProvider")
        return self._config("/GetDeviceConfig", ids.wire(), ATTRIBUTE_TIMEOUT)

    def profile_config(
        self, ids: DeviceIds, claim_uid: str, config: NetworkConfig
    ) -> NetworkConfig:
        if not self.caps.profile_provider:
            raise WebhookError("webhook did not declare profileProvider")
        body = {"device": ids.wire(), "claim_uid": claim_uid, "config": config.to_json_obj()}
        return self._config("/GetProfileConfig", body, None)

    def release_profile(self, ids: DeviceIds, claim_uid: str, config: NetworkConfig) -> None:
        if not self.caps.profile_provider:
            raise WebhookError("webhook did not declare profileProvider")
        body = {"device": ids.wire(), "claim_uid": claim_uid, "config": config.to_json_obj()}
        self._call("POST", "/ReleaseProfileConfig", body, None)


class WebhookCloud:
    """The webhook as a CloudInstance: asks per device during scans, and keeps the last good
    answer per device, so an outage keeps what was published (and logs once per outage).
    After a failed call it is not asked again for `RETRY_AFTER` seconds (the cached answers
    serve), so a hanging webhook costs a scan one call timeout, not one per device."""

    name = HINT_WEBHOOK
    RETRY_AFTER = 30.0

    def __init__(self, client: WebhookClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._attrs: dict[DeviceIds, dict[str, AttrValue]] = {}
        self._configs: dict[DeviceIds, NetworkConfig | None] = {}
        self._failing = False
        self._retry_at = 0.0

    def _note(self, exc: WebhookError | None) -> None:
        with self._lock:
            if exc is not None and not self._failing:
                log.warning("webhook unavailable, keeping the last answers: %s", exc)
            elif exc is None and self._failing:
                log.info("webhook answers again")
            self._failing = exc is not None
            if exc is not None:
                self._retry_at = time.monotonic() + self.RETRY_AFTER

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        with self._lock:
            if self._failing and time.monotonic() < self._retry_at:
                return dict(self._attrs.get(ids, {}))
        try:
            attrs = self.client.device_attributes(ids)
        except WebhookError as exc:
            self._note(exc)
            with self._lock:
                return dict(self._attrs.get(ids, {}))
        self._note(None)
        with self._lock:
            self._attrs[ids] = attrs
        try:
            cfg: NetworkConfig | None = self.client.device_config(ids)
        except WebhookError as exc:
            log.info("webhook GetDeviceConfig for %s: %s", ids.name, exc)
        else:
            with self._lock:
                self._configs[ids] = cfg
        return dict(attrs)

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        with self._lock:
            return self._configs.get(ids)
