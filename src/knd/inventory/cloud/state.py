"""The node's cloud provider over the daemon's lifetime: detect, load (retrying), enrich scans,
and answer device configs for prepare — all from memory once loaded.

* `start(wait)`: detect (bounded, see knd.inventory.cloud.detect), then try to load for up to
  `wait` seconds; if that fails, keep retrying in a background thread with backoff (1 s doubling
  to 30 s) and call `on_ready` once loaded (the daemon rescans then).
* `enrich(device_name, attrs)`: the discovery hook: the provider's attributes for the device,
  joined on its MAC / PCI address / interface name. Cloud attributes never replace the ones
  discovery found.
* `device_config(device_name)`: the provider's config for a device seen in the last scan
  (Azure's routing, a webhook's baseline), or None. Never does I/O, so prepare never waits on a
  metadata server.
Instance metadata is read once: an outage after start-up changes nothing that was published.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from knd.api import attributes as attr
from knd.api.config import NetworkConfig
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud import detect as detection
from knd.inventory.cloud.base import HINT_NONE, AttrValue, CloudError, CloudInstance, DeviceIds
from knd.inventory.cloud.coreweave import NodeLabels

log = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0


class CloudState:
    def __init__(
        self,
        hint: str = "",
        *,
        sysfs: SysfsRoot | None = None,
        endpoint_override: str = "",
        webhook_url: str = "",
        on_ready: Callable[[], None] | None = None,
        request_timeout: float = 2.0,
        node_labels: NodeLabels | None = None,
    ) -> None:
        self.hint = hint
        self.sysfs = sysfs or SysfsRoot()
        self.endpoint_override = endpoint_override
        self.webhook_url = webhook_url
        self.on_ready = on_ready
        self.request_timeout = request_timeout
        self.node_labels = node_labels
        self.provider = HINT_NONE
        self.last_error = ""
        self._instance: CloudInstance | None = None
        self._ids: dict[str, DeviceIds] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def instance(self) -> CloudInstance | None:
        with self._lock:
            return self._instance

    def start(self, wait: float = 3.0) -> None:
        """Detect and load; returns within about `wait` s (+ detection) either way."""
        self.provider = self.hint or detection.detect(
            self.sysfs, self.endpoint_override, self.webhook_url, node_labels=self.node_labels
        )
        log.info("cloud provider: %s (%s)", self.provider, "hinted" if self.hint else "detected")
        if self.provider == HINT_NONE:
            return
        deadline_loaded = threading.Event()
        self._thread = threading.Thread(
            target=self._load_loop, args=(deadline_loaded,), name="cloud-load", daemon=True
        )
        self._thread.start()
        deadline_loaded.wait(wait)

    def stop(self) -> None:
        self._stop.set()

    def _load_loop(self, loaded: threading.Event) -> None:
        delay = BACKOFF_START
        while not self._stop.is_set():
            try:
                instance = detection.load(
                    self.provider,
                    self.sysfs,
                    self.endpoint_override,
                    self.webhook_url,
                    self.request_timeout,
                    self.node_labels,
                )
            except CloudError as exc:
                self.last_error = str(exc)
                log.warning("cloud provider %s not loaded yet: %s", self.provider, exc)
            except Exception as exc:  # never let a provider bug kill the thread silently
                self.last_error = repr(exc)
                log.exception("cloud provider %s failed to load", self.provider)
            else:
                with self._lock:
                    self._instance = instance
                self.last_error = ""
                loaded.set()
                log.info("cloud provider %s loaded", self.provider)
                if self.on_ready is not None:
                    self.on_ready()
                return
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX)

    def set_instance(self, instance: CloudInstance | None) -> None:
        """Install a provider directly (tests, embedding)."""
        with self._lock:
            self._instance = instance
            if instance is not None:
                self.provider = instance.name

    @staticmethod
    def ids_of(device_name: str, attrs: Mapping[str, AttrValue]) -> DeviceIds:
        ifname = attrs.get(attr.IF_NAME)
        mac = attrs.get(attr.MAC)
        pci = attrs.get(attr.PCI_ADDRESS)
        return DeviceIds(
            name=ifname if isinstance(ifname, str) and ifname else device_name,
            mac=mac if isinstance(mac, str) else "",
            pci_address=pci if isinstance(pci, str) else "",
        )

    def enrich(self, device_name: str, attrs: Mapping[str, AttrValue]) -> dict[str, AttrValue]:
        """Extra attributes for one discovered device (never overriding discovered ones)."""
        ids = self.ids_of(device_name, attrs)
        with self._lock:
            self._ids[device_name] = ids
            instance = self._instance
        if instance is None:
            return {}
        try:
            extra = instance.attributes(ids)
        except Exception:
            log.exception("cloud attributes for %s failed", device_name)
            return {}
        return {k: v for k, v in extra.items() if k not in attrs}

    def device_config(self, device_name: str) -> NetworkConfig | None:
        with self._lock:
            ids = self._ids.get(device_name)
            instance = self._instance
        if ids is None or instance is None:
            return None
        try:
            return instance.device_config(ids)
        except Exception:
            log.exception("cloud device config for %s failed", device_name)
            return None

    def device_ids(self, device_name: str) -> DeviceIds:
        """The identifiers of a device seen in a scan (just the name when never seen)."""
        with self._lock:
            return self._ids.get(device_name) or DeviceIds(name=device_name)
