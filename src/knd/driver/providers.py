"""The daemon's cloud provider and profile provider, built from the options.

`build(opts, sysfs)` is cheap (nothing is contacted); `Providers.start()` detects and loads the
cloud (bounded: off a cloud well under a second, see knd.inventory.cloud.detect; on a cloud at
most `CLOUD_START_WAIT` before the daemon goes on and the load continues in the background).

`--profile-provider`:
* `cloud` (DraNet's default): the cloud provider resolves profiles if it can (only the webhook
  provider can); otherwise, when IPAM ranges are configured, knd's node-local IPAM does;
* `webhook`: DraNet's provider webhook at `--webhook-url`;
* `local`: knd's node-local IPAM (`--ipam-ranges`, `--ipam-configmap`), state in `ipam.db` next
  to the state file;
* `none`: a config with `profile` fails at prepare with a message saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from knd.driver.ipam import LocalIpam, parse_ranges
from knd.driver.options import DaemonOptions
from knd.driver.plan import ProfileProvider
from knd.driver.profiles import LocalProfiles, WebhookProfiles, owner_key
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud.base import HINT_WEBHOOK, canonical_hint
from knd.inventory.cloud.coreweave import NodeLabels
from knd.inventory.cloud.state import CloudState
from knd.inventory.cloud.webhook import WebhookClient

log = logging.getLogger(__name__)

CLOUD_START_WAIT = 3.0

ConfigMapReader = Callable[[str, str], Mapping[str, str]]


def ipam_path(state_path: Path) -> Path:
    return state_path.parent / "ipam.db"


@dataclass
class Providers:
    cloud: CloudState
    profiles: ProfileProvider | None
    ipam: LocalIpam  # node-local IPAM: `local` profiles and subInterface.ipRanges

    def release(self, claim_uid: str, device: str) -> None:
        """Free the node-local addresses of a claim's device (unprepare; never raises)."""
        try:
            self.ipam.release(owner_key(claim_uid, device))
        except Exception:
            log.exception("IPAM release of %s/%s failed", claim_uid, device)

    def start(self, wait: float = CLOUD_START_WAIT) -> None:
        self.cloud.start(wait)

    def stop(self) -> None:
        self.cloud.stop()
        self.ipam.close()


def build(
    opts: DaemonOptions,
    sysfs: SysfsRoot,
    read_configmap: ConfigMapReader | None = None,
    node_labels: NodeLabels | None = None,
) -> Providers:
    hint = canonical_hint(opts.cloud_provider_hint)
    cloud = CloudState(
        hint,
        sysfs=sysfs,
        endpoint_override=opts.cloud_metadata_endpoint,
        webhook_url=opts.webhook_url,
        node_labels=node_labels,
    )
    ipam = LocalIpam(ipam_path(opts.state_path))
    kind = opts.profile_provider
    has_ipam = bool(opts.ipam_ranges or opts.ipam_configmap)
    if kind == "cloud":
        kind = "webhook" if hint == HINT_WEBHOOK else ("local" if has_ipam else "none")
    if kind == "webhook":
        client = WebhookClient(opts.webhook_url)
        log.info("profile provider: webhook %s", opts.webhook_url)
        return Providers(cloud, WebhookProfiles(client, cloud.device_ids), ipam)
    if kind == "local":
        reader = None
        if opts.ipam_configmap and read_configmap is not None:
            namespace, name = opts.ipam_configmap.split("/", 1)

            def reader() -> Mapping[str, str]:
                assert read_configmap is not None
                return read_configmap(namespace, name)

        ranges = parse_ranges(opts.ipam_ranges)
        log.info("profile provider: node-local IPAM, profiles %s", sorted(ranges) or "(ConfigMap)")
        return Providers(cloud, LocalProfiles(ipam, ranges, reader), ipam)
    return Providers(cloud, None, ipam)
