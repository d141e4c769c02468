"""Profile providers: what a config's `profile` resolves to, at prepare (never in NRI hooks).

* `local` (`LocalProfiles`): knd's node-local IPAM. A profile names a list of ranges (from
  `--ipam-ranges`, or a key of the `--ipam-configmap` ConfigMap, whose value is the same
  `RANGE[,RANGE...]` list); resolving allocates one address per IP family for the claim's
  device (`interface.addresses`); unprepare releases them.
* `webhook` (`WebhookProfiles`): DraNet's `POST /GetProfileConfig` / `/ReleaseProfileConfig`
  with the device ids, the claim UID and the merged config; bounded by the client's timeout
  (10 s, well inside kubelet's 45 s for a prepare call).
Every failure is a `ProfileError` naming the profile, the device and the cause; prepare turns
it into the claim's error, its Warning Event and a `Ready=False` device condition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from knd.api.config import InterfaceConfig, NetworkConfig
from knd.driver.errors import ClaimError
from knd.driver.ipam import IpamError, IpRange, LocalIpam, parse_range_list
from knd.inventory.cloud.base import DeviceIds
from knd.inventory.cloud.webhook import WebhookClient, WebhookError

log = logging.getLogger(__name__)

CONFIGMAP_TTL = 30.0
PROFILE_FAILED_REASON = "ProfileResolutionFailed"


class ProfileError(ClaimError):
    """A profile could not be resolved for a device."""


def owner_key(claim_uid: str, device_name: str) -> str:
    return f"{claim_uid}/{device_name}"


class LocalProfiles:
    """Node-local IPAM profiles (see the module docstring)."""

    def __init__(
        self,
        ipam: LocalIpam,
        static: Mapping[str, list[IpRange]],
        configmap: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.ipam = ipam
        self.static = dict(static)
        self.configmap = configmap
        self._cache: tuple[float, dict[str, list[IpRange]]] | None = None
        self._lock = threading.Lock()

    def _dynamic(self) -> dict[str, list[IpRange]]:
        if self.configmap is None:
            return {}
        with self._lock:
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < CONFIGMAP_TTL:
                return self._cache[1]
            try:
                data = self.configmap()
            except Exception as exc:
                if self._cache is not None:  # an API outage keeps the last good ranges
                    log.warning("IPAM ConfigMap unreadable, using the last copy: %s", exc)
                    return self._cache[1]
                raise ProfileError(f"IPAM ConfigMap unreadable: {exc}") from exc
            parsed: dict[str, list[IpRange]] = {}
            for name, value in data.items():
                try:
                    parsed[name] = parse_range_list(str(value), name)
                except IpamError as exc:
                    log.warning("IPAM ConfigMap key %r ignored: %s", name, exc)
            self._cache = (now, parsed)
            return parsed

    def ranges(self, profile: str) -> list[IpRange] | None:
        if profile in self.static:
            return self.static[profile]
        return self._dynamic().get(profile)

    def resolve(
        self,
        claim_uid: str,
        device_name: str,
        profile: str,
        config: NetworkConfig | None = None,
    ) -> NetworkConfig:
        ranges = self.ranges(profile)
        if ranges is None:
            raise ProfileError(
                f"profile {profile!r} is not a node-local IPAM profile of this node "
                "(--ipam-ranges / --ipam-configmap)"
            )
        try:
            addresses = self.ipam.allocate(owner_key(claim_uid, device_name), ranges)
        except IpamError as exc:
            raise ProfileError(f"profile {profile!r}: {exc}") from exc
        log.info("IPAM %s: %s for %s", profile, ", ".join(addresses), device_name)
        return NetworkConfig(interface=InterfaceConfig(addresses=addresses))

    def release(self, claim_uid: str, device_name: str, profile: str) -> None:
        freed = self.ipam.release(owner_key(claim_uid, device_name))
        if freed:
            log.info("IPAM %s: released %s", profile, ", ".join(freed))


class WebhookProfiles:
    """Profiles resolved by DraNet's provider webhook."""

    def __init__(self, client: WebhookClient, ids: Callable[[str], DeviceIds]) -> None:
        self.client = client
        self.ids = ids

    def _ready(self) -> None:
        if not self.client.caps.profile_provider:
            try:  # the webhook may have started after knd: ask again
                self.client.health()
            except WebhookError as exc:
                raise ProfileError(f"profile provider webhook unavailable: {exc}") from exc
            if not self.client.caps.profile_provider:
                raise ProfileError("the webhook's /health declares profileProvider=false")

    def resolve(
        self,
        claim_uid: str,
        device_name: str,
        profile: str,
        config: NetworkConfig | None = None,
    ) -> NetworkConfig:
        self._ready()
        base = config or NetworkConfig(profile=profile)
        try:
            return self.client.profile_config(self.ids(device_name), claim_uid, base)
        except WebhookError as exc:
            raise ProfileError(f"profile {profile!r}: {exc}") from exc

    def release(self, claim_uid: str, device_name: str, profile: str) -> None:
        try:
            self._ready()
            self.client.release_profile(
                self.ids(device_name), claim_uid, NetworkConfig(profile=profile)
            )
        except (WebhookError, ProfileError) as exc:  # best effort, as DraNet: the provider GCs
            log.warning("releasing profile %s of %s/%s: %s", profile, claim_uid, device_name, exc)
