"""Which cloud this node runs on, decided quickly, and loading that cloud's provider.

Detection (no hint, or an empty one), in this order:
1. `GCE_METADATA_HOST` set → GCE (as Google's SDKs decide);
2. the DMI identity in sysfs (`class/dmi/id/{sys_vendor,product_name,chassis_asset_tag}`):
   free, offline, and what the clouds document for telling their VMs apart;
3. otherwise every metadata server is probed at once, each with `probe_timeout` (0.3 s by
   default), and the first that answers in DraNet's order (GCE, AWS, AZURE, OKE, ALIBABA, CKS
   — the Node's `cks.coreweave.com/cluster` label, when the caller can read the Node's labels —
   then the webhook's `/health`) wins. Off a cloud this costs at most one probe timeout (DraNet
   probes one after another with several seconds each).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud import alibaba, aws, azure, coreweave, gce, oke
from knd.inventory.cloud.base import (
    HINT_ALIBABA,
    HINT_AWS,
    HINT_AZURE,
    HINT_CKS,
    HINT_GCE,
    HINT_NONE,
    HINT_OKE,
    HINT_WEBHOOK,
    CloudError,
    CloudInstance,
)
from knd.inventory.cloud.webhook import WebhookClient, WebhookCloud

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.3
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def from_dmi(sysfs: SysfsRoot) -> str:
    """The cloud the DMI identity names, or "" when it names none."""

    def read(name: str) -> str:
        return (sysfs.read("class", "dmi", "id", name) or "").strip()

    vendor, product, asset = read("sys_vendor"), read("product_name"), read("chassis_asset_tag")
    if vendor == "Google" or product == "Google Compute Engine":
        return HINT_GCE
    if vendor == "Amazon EC2" or read("bios_vendor") == "Amazon EC2":
        return HINT_AWS
    if asset == AZURE_ASSET_TAG:
        return HINT_AZURE
    if asset == "OracleCloud.com":
        return HINT_OKE
    if vendor == "Alibaba Cloud" or product.startswith("Alibaba Cloud ECS"):
        return HINT_ALIBABA
    return ""


def detect(
    sysfs: SysfsRoot,
    endpoint_override: str = "",
    webhook_url: str = "",
    probe_timeout: float = PROBE_TIMEOUT,
    environ: Mapping[str, str] | None = None,
    node_labels: coreweave.NodeLabels | None = None,
) -> str:
    """The detected provider hint, or NONE (see the module docstring). Bounded by about
    `probe_timeout` plus thread start-up."""
    env = os.environ if environ is None else environ
    if env.get("GCE_METADATA_HOST", "").strip():
        return HINT_GCE
    by_dmi = from_dmi(sysfs)
    if by_dmi:
        log.info("cloud provider from DMI: %s", by_dmi)
        return by_dmi
    probes: list[tuple[str, Callable[[], bool]]] = [
        (HINT_GCE, lambda: gce.probe(endpoint_override, probe_timeout)),
        (HINT_AWS, lambda: aws.probe(endpoint_override, probe_timeout)),
        (HINT_AZURE, lambda: azure.probe(endpoint_override, probe_timeout)),
        (HINT_OKE, lambda: oke.probe(endpoint_override, probe_timeout)),
        (HINT_ALIBABA, lambda: alibaba.probe(endpoint_override, probe_timeout)),
    ]
    if node_labels is not None:
        probes.append((HINT_CKS, lambda: coreweave.probe(node_labels)))
    if webhook_url:
        probes.append((HINT_WEBHOOK, lambda: _webhook_up(webhook_url, probe_timeout)))
    answers: dict[str, bool] = {}

    def run(name: str, probe: Callable[[], bool]) -> None:
        try:
            answers[name] = probe()
        except Exception:  # a probe must never take detection down
            log.exception("cloud probe %s failed", name)
            answers[name] = False

    threads = [
        threading.Thread(target=run, args=p, name=f"probe-{p[0]}", daemon=True) for p in probes
    ]
    for t in threads:
        t.start()
    for t in threads:
        # Each probe bounds itself (a token call plus a read at most); the join bound is a backstop.
        t.join(timeout=3 * probe_timeout + 0.2)
    for name, _ in probes:
        if answers.get(name):
            return name
    return HINT_NONE


def _webhook_up(url: str, timeout: float) -> bool:
    try:
        WebhookClient(url).health(timeout)
    except CloudError:
        return False
    return True


def load(
    hint: str,
    sysfs: SysfsRoot,
    endpoint_override: str = "",
    webhook_url: str = "",
    timeout: float = 2.0,
    node_labels: coreweave.NodeLabels | None = None,
) -> CloudInstance | None:
    """Build the provider `hint` names (None for NONE, or a webhook without cloudProvider).

    One attempt; raises CloudError (the caller retries)."""
    if hint == HINT_GCE:
        return gce.load(endpoint_override, timeout)
    if hint == HINT_AWS:
        return aws.load(endpoint_override, timeout, sysfs)
    if hint == HINT_AZURE:
        return azure.load(endpoint_override, timeout)
    if hint == HINT_OKE:
        return oke.load(endpoint_override, timeout)
    if hint == HINT_ALIBABA:
        return alibaba.load(endpoint_override, timeout, sysfs)
    if hint == HINT_CKS:
        return coreweave.load(node_labels, sysfs)
    if hint == HINT_WEBHOOK:
        if not webhook_url:
            raise CloudError("--cloud-provider-hint=webhook needs --webhook-url")
        client = WebhookClient(webhook_url)
        caps = client.health(timeout)
        if not caps.cloud_provider:
            raise CloudError(
                "--cloud-provider-hint=webhook: the webhook's /health declares cloudProvider=false"
            )
        return WebhookCloud(client)
    return None
