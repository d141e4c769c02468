"""CoreWeave Kubernetes Service (CKS): `coreweave.dra.net/*` attributes from the Node's labels.

CKS has no instance metadata server for this; it labels each Node with its InfiniBand fabric
placement, and DraNet's CKS provider (hint `CKS`) reads those labels. knd does the same, with
DraNet's attribute names (all strings):

| attribute | Node label |
|---|---|
| `fabricFlavor` | `backend.coreweave.cloud/flavor` |
| `fabric` | `backend.coreweave.cloud/fabric` |
| `superpod` | `backend.coreweave.cloud/superpod` |
| `leafgroup` | `backend.coreweave.cloud/leafgroup` |
| `leafgroupName` | `backend.coreweave.cloud/leafgroup-name` |
| `rack` | `node.coreweave.cloud/rack` |
| `speedCurrent`, `speedExpected` | `backend.coreweave.cloud/speed.{current,expected}` |
| `instanceType` | `node.kubernetes.io/instance-type` |
| `leafSwitch` (per device) | `backend.coreweave.cloud/neighbors.expected.<rdma dev>.device` |

Every device gets the node-wide ones (set, non-empty labels only); `leafSwitch` joins on the
device's RDMA device: the one behind its PCI address (`/sys/class/infiniband/*/device`, read
through the sysfs root, so `knd inventory --sysfs-root` works offline), else the interface
name when it is CKS's `ibpN` naming. A value longer than an attribute allows (64) is skipped.

A node is on CKS when its Node carries `cks.coreweave.com/cluster`. The labels are read once, at
load, through a callable the caller provides (the daemon: a GET of its Node; `knd inventory`:
`--node-labels FILE`), so this module never talks to the API server itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from knd.api.config import NetworkConfig
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud.base import HINT_CKS, AttrValue, CloudError, DeviceIds

log = logging.getLogger(__name__)

PREFIX = "coreweave.dra.net"
LEAF_SWITCH = f"{PREFIX}/leafSwitch"
CLUSTER_LABEL = "cks.coreweave.com/cluster"
NEIGHBOR_PREFIX = "backend.coreweave.cloud/neighbors.expected."
NEIGHBOR_SUFFIX = ".device"
MAX_VALUE = 64

#: attribute → the Node label it copies (DraNet's table).
NODE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    (f"{PREFIX}/fabricFlavor", "backend.coreweave.cloud/flavor"),
    (f"{PREFIX}/fabric", "backend.coreweave.cloud/fabric"),
    (f"{PREFIX}/superpod", "backend.coreweave.cloud/superpod"),
    (f"{PREFIX}/leafgroup", "backend.coreweave.cloud/leafgroup"),
    (f"{PREFIX}/leafgroupName", "backend.coreweave.cloud/leafgroup-name"),
    (f"{PREFIX}/rack", "node.coreweave.cloud/rack"),
    (f"{PREFIX}/speedCurrent", "backend.coreweave.cloud/speed.current"),
    (f"{PREFIX}/speedExpected", "backend.coreweave.cloud/speed.expected"),
    (f"{PREFIX}/instanceType", "node.kubernetes.io/instance-type"),
)

#: Reads the node's labels; raises on any failure (API down, no such Node).
NodeLabels = Callable[[], Mapping[str, str]]


def normalize_pci(address: str) -> str:
    """`0000:18:00.0` and `18:00.0` compare equal (DraNet drops the default domain)."""
    text = address.strip().lower()
    return text[5:] if text.startswith("0000:") else text


@dataclass(slots=True)
class CoreWeaveInstance:
    labels: Mapping[str, str] = field(default_factory=dict)
    #: normalized PCI address → RDMA device name
    rdma_by_pci: Mapping[str, str] = field(default_factory=dict)
    name: str = HINT_CKS

    def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
        out: dict[str, AttrValue] = {}
        for attribute, label in NODE_ATTRIBUTES:
            _put(out, attribute, self.labels.get(label, ""))
        rdma = self.rdma_by_pci.get(normalize_pci(ids.pci_address), "") if ids.pci_address else ""
        if not rdma and ids.name.startswith("ibp"):
            rdma = ids.name
        if rdma:
            _put(out, LEAF_SWITCH, self.labels.get(NEIGHBOR_PREFIX + rdma + NEIGHBOR_SUFFIX, ""))
        return out

    def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
        return None  # the labels describe placement, not addressing


def _put(out: dict[str, AttrValue], attribute: str, value: str) -> None:
    if not value:
        return
    if len(value) > MAX_VALUE:
        log.warning("CKS: %s skipped: value longer than %d characters", attribute, MAX_VALUE)
        return
    out[attribute] = value


def rdma_devices_by_pci(sysfs: SysfsRoot) -> dict[str, str]:
    """Normalized PCI address → RDMA device, from `class/infiniband/*/device` (first name wins)."""
    found: dict[str, str] = {}
    for name in sorted(sysfs.listdir("class", "infiniband")):
        target = sysfs.realpath("class", "infiniband", name, "device")
        if target is not None:
            found.setdefault(normalize_pci(target.name), name)
    return found


def labels_of(node: object) -> dict[str, str]:
    """`metadata.labels` of a Node object (string values only); ValueError when malformed."""
    meta = node.get("metadata") if isinstance(node, Mapping) else None
    if not isinstance(meta, Mapping):
        raise ValueError("not a Node object (no metadata)")
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ValueError("metadata.labels is not a map")
    return {str(k): v for k, v in labels.items() if isinstance(v, str)}


def read_labels(node_labels: NodeLabels | None) -> dict[str, str]:
    """The Node's labels (string values only); CloudError when they cannot be read."""
    if node_labels is None:
        raise CloudError(f"{HINT_CKS}: the Node's labels are not available (no API server)")
    try:
        labels = node_labels()
    except Exception as exc:
        raise CloudError(f"{HINT_CKS}: reading the Node's labels: {exc}") from None
    if not isinstance(labels, Mapping):
        raise CloudError(f"{HINT_CKS}: the Node's labels are not a mapping")
    return {str(k): v for k, v in labels.items() if isinstance(v, str)}


def probe(node_labels: NodeLabels | None) -> bool:
    """True when the Node carries the CKS cluster label."""
    try:
        return bool(read_labels(node_labels).get(CLUSTER_LABEL))
    except CloudError:
        return False


def load(node_labels: NodeLabels | None, sysfs: SysfsRoot | None = None) -> CoreWeaveInstance:
    labels = read_labels(node_labels)
    if not labels.get(CLUSTER_LABEL):
        raise CloudError(f"{HINT_CKS}: the Node has no {CLUSTER_LABEL} label: not a CKS node")
    rdma = rdma_devices_by_pci(sysfs or SysfsRoot())
    log.info(
        "CKS: cluster %s, fabric %r, superpod %r, leafgroup %r, RDMA devices %s",
        labels[CLUSTER_LABEL],
        labels.get("backend.coreweave.cloud/fabric", ""),
        labels.get("backend.coreweave.cloud/superpod", ""),
        labels.get("backend.coreweave.cloud/leafgroup", ""),
        sorted(rdma.values()),
    )
    return CoreWeaveInstance(labels, rdma)
