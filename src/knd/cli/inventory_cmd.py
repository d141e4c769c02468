"""`knd inventory`: discover this machine's network devices the way knd would publish them.

* default (`-o table`): a table (name, ifName, pcieRoot, NUMA, RDMA, type, state; filtered
  devices marked) and the excluded interfaces with the reason; `-o wide` adds PCI address, MAC,
  MTU, encapsulation, SR-IOV, virtual and PCI vendor/device; `-o name` prints device names;
* `-o json|yaml`: the discovered devices (before the admin filter) in resource.k8s.io/v1 wire form,
  as one `kind: List`;
* `--slices`: the ResourceSlices that would be published (after the filter), as one `kind: List`
  (YAML unless `-o json`; `-o table|wide` summarises them, `-o name` lists `driver/pool/device`).
  `knd explain CLAIM --slices FILE` reads this output as it reads `kubectl get resourceslices`;
* `--sysfs-root DIR`: fully offline from a sysfs tree (no netlink: no addresses, link kinds,
  routes, hence no uplink exclusion).
* cloud attributes (`gce.dra.net/*`, `azure.dra.net/*`, ...) are included when a cloud provider
  is hinted (`--cloud-provider-hint`) or detected (DMI identity, then a short metadata probe;
  `--cloud-provider-hint NONE` skips it); the table lists them per device below the devices.
  CKS (CoreWeave) reads the Node's labels, here from `--node-labels FILE` (`kubectl get node
  NAME -o yaml` output, or a plain label map; at most 1 MiB).
Exit codes: 0 ok, 1 bad filter expression or netlink failure, 2 a `--sysfs-root` that is missing
or not a sysfs tree (no `class/` and `devices/`).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from knd.api import attributes as attr
from knd.cli import output
from knd.host.files import read_bounded
from knd.host.netlink import LiveNetlink, NetlinkError
from knd.host.sysfs import SysfsRoot, sysfs_tree_problem
from knd.inventory.cloud.base import HINT_NONE, canonical_hint
from knd.inventory.cloud.coreweave import labels_of
from knd.inventory.cloud.state import CloudState
from knd.inventory.discover import Options
from knd.inventory.filter import DEFAULT_FILTER, AdminFilter, FilterError
from knd.inventory.scanner import Inventory, ScanResult
from knd.inventory.slices import assign, node_owner, slice_object

LABELS_FILE_LIMIT = 1 << 20


def register(sub: Any) -> None:
    """Register `knd inventory` on the top-level sub-parser collection."""
    p: argparse.ArgumentParser = sub.add_parser(
        "inventory", help="discover network devices and show what would be published"
    )
    p.add_argument("--sysfs-root", type=Path, help="read this sysfs tree offline (no netlink)")
    p.add_argument("-o", "--output", choices=output.FORMATS, default=None)
    p.add_argument("--slices", action="store_true", help="print the ResourceSlices to publish")
    p.add_argument("--filter", default=DEFAULT_FILTER, help="admin CEL filter ('' keeps all)")
    p.add_argument("--driver-name", default=attr.DEFAULT_DRIVER_NAME)
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname())
    p.add_argument("--pci-ids", type=Path, help="pci.ids database (default: the system's)")
    p.add_argument(
        "--move-ib-interfaces",
        default=True,
        action=argparse.BooleanOptionalAction,
        help="publish IPoIB interfaces (default true)",
    )
    p.add_argument(
        "--cloud-provider-hint",
        default="",
        help="GCE, AWS, AZURE, OKE, ALIBABA, CKS, webhook or NONE (default: detect)",
    )
    p.add_argument("--cloud-metadata-endpoint", default="", help="metadata server base URL")
    p.add_argument("--webhook-url", default="", help="provider webhook (http(s):// or unix://)")
    p.add_argument(
        "--node-labels",
        type=Path,
        help="the Node's labels for CKS: a Node object or a label map (JSON/YAML file)",
    )
    p.add_argument(
        "--cloud-wait",
        type=float,
        default=5.0,
        help="seconds to wait for the cloud metadata (default 5)",
    )
    p.add_argument(
        "--device-shares",
        type=int,
        default=0,
        help="publish devices with a netdev as shareable by N claims, as knd driver does",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log warnings to stderr")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.verbose:  # the table shows warnings; keep stderr for errors
        logging.getLogger("knd.inventory").setLevel(logging.ERROR)
    try:
        admin_filter = AdminFilter(args.filter, args.driver_name)
    except FilterError as exc:
        print(f"knd inventory: {exc}", file=sys.stderr)
        return 1
    offline = args.sysfs_root is not None
    problem = sysfs_tree_problem(args.sysfs_root) if offline else None
    if problem is not None:
        print(f"knd inventory: --sysfs-root {problem}", file=sys.stderr)
        return 2
    sysfs = SysfsRoot(args.sysfs_root) if offline else SysfsRoot()
    try:
        hint = canonical_hint(args.cloud_provider_hint)
    except ValueError as exc:
        print(f"knd inventory: --cloud-provider-hint: {exc}", file=sys.stderr)
        return 1
    cloud = CloudState(
        hint,
        sysfs=sysfs,
        endpoint_override=args.cloud_metadata_endpoint,
        webhook_url=args.webhook_url,
        node_labels=_labels_file(args.node_labels) if args.node_labels else None,
    )
    cloud.start(wait=args.cloud_wait)
    cloud.stop()  # one scan: no background retries
    if cloud.provider != HINT_NONE and cloud.instance is None:
        print(
            f"knd inventory: cloud provider {cloud.provider}: no metadata: {cloud.last_error}",
            file=sys.stderr,
        )
    inv = Inventory(
        sysfs=sysfs,
        netlink=None if offline else LiveNetlink(),
        admin_filter=admin_filter,
        options=Options(
            move_ib_interfaces=args.move_ib_interfaces,
            enrich=cloud.enrich,
            shares=max(0, args.device_shares),
        ),
        pci_ids_path=args.pci_ids,
    )
    try:
        result = inv.scan()
    except NetlinkError as exc:
        print(f"knd inventory: {exc}", file=sys.stderr)
        return 1
    fmt = args.output or ("yaml" if args.slices else "table")
    if args.slices:
        sys.stdout.write(
            slices_output(planned_slices(result, args.node_name, args.driver_name), fmt)
        )
    elif fmt in ("json", "yaml"):
        sys.stdout.write(
            output.dumps(output.as_list(d.wire() for d in result.discovery.devices), fmt)
        )
    elif fmt == "name":
        sys.stdout.writelines(f"{d.name}\n" for d in result.discovery.devices)
    else:
        print(
            table(
                result,
                wide=fmt == "wide",
                cloud=cloud.provider if cloud.instance is not None else "",
            )
        )
    return 0


def planned_slices(result: ScanResult, node: str, driver: str) -> list[dict[str, Any]]:
    planned = assign(result.published)
    owner = node_owner(node, "<node-uid>")
    return [slice_object(node, driver, p, 1, len(planned), owner) for p in planned]


def slices_output(objs: list[dict[str, Any]], fmt: str) -> str:
    """The planned slices in `fmt` (see the module docstring)."""
    if fmt in ("json", "yaml"):
        return output.dumps(output.as_list(objs), fmt)
    if fmt == "name":
        return "".join(
            f"{s['spec']['driver']}/{s['spec']['pool']['name']}/{d['name']}\n"
            for s in objs
            for d in s["spec"]["devices"]
        )
    header = ["NAME", "DRIVER", "NODE", "POOL", "DEVICES"]
    rows = []
    for s in objs:
        spec = s["spec"]
        names = [d["name"] for d in spec["devices"]]
        row = [s["metadata"]["generateName"], spec["driver"], spec["nodeName"]]
        row += [spec["pool"]["name"], str(len(names))]
        if fmt == "wide":
            row.append(",".join(names) or "-")
        rows.append(row)
    if fmt == "wide":
        header.append("DEVICE-NAMES")
    return output.table(header, rows) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


#: Extra `-o wide` columns: header and attribute.
_WIDE = (
    ("PCIADDRESS", attr.PCI_ADDRESS),
    ("MAC", attr.MAC),
    ("MTU", attr.MTU),
    ("ENCAP", attr.ENCAPSULATION),
    ("SRIOV", attr.SRIOV),
    ("VIRTUAL", attr.VIRTUAL),
    ("VENDOR", attr.PCI_VENDOR),
    ("PCIDEVICE", attr.PCI_DEVICE),
)


_OWN_DOMAINS = (attr.DRANET_DOMAIN + "/", attr.STANDARD_DOMAIN + "/")


def table(result: ScanResult, wide: bool = False, cloud: str = "") -> str:
    filtered = {d.name for d in result.filtered}
    header = ["NAME", "IFNAME", "PCIEROOT", "NUMA", "RDMA", "TYPE", "STATE", "PUBLISH"]
    if wide:
        header += [h for h, _ in _WIDE]
    rows: list[list[str]] = []
    for d in result.discovery.devices:
        rdma = d.get(attr.RDMA_DEVICE) or d.get(attr.RDMA)
        row = [
            d.name,
            _cell(d.get(attr.IF_NAME)),
            _cell(d.get(attr.STD_PCIE_ROOT)),
            _cell(d.get(attr.STD_NUMA_NODE)),
            _cell(rdma),
            _cell(d.get(attr.TYPE)),
            _cell(d.get(attr.STATE)),
            "filtered" if d.name in filtered else "yes",
        ]
        if wide:
            row += [_cell(d.get(a)) for _, a in _WIDE]
        rows.append(row)
    lines = output.table(header, rows).split("\n")
    mode = "offline (sysfs only)" if result.discovery.offline else "live (sysfs + netlink)"
    lines.insert(0, f"# {len(result.published)} device(s) to publish, {mode}")
    if result.discovery.excluded:
        lines.append("")
        lines.append("EXCLUDED  REASON")
        w = max(len(e.subject) for e in result.discovery.excluded)
        for e in result.discovery.excluded:
            lines.append(f"{e.subject.ljust(max(w, 8))}  {e.reason}")
    if cloud:
        lines.append("")
        lines.append(f"CLOUD ({cloud})")
        for d in result.discovery.devices:
            extra = {k: v for k, v in d.attributes.items() if not k.startswith(_OWN_DOMAINS)}
            if extra:
                pairs = " ".join(f"{k}={_cell(v)}" for k, v in sorted(extra.items()))
                lines.append(f"{d.name}  {pairs}")
    for warning in result.discovery.warnings + result.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _labels_file(path: Path) -> Callable[[], Mapping[str, str]]:
    """A reader of `--node-labels`: `metadata.labels` of a Node object, or a plain label map."""

    def read() -> Mapping[str, str]:
        from knd.api.documents import parse_documents  # noqa: PLC0415 (YAML: not in the daemon)

        try:
            data = read_bounded(path, LABELS_FILE_LIMIT, pipe_idle_s=5.0)
        except OSError as exc:
            raise ValueError(f"--node-labels {path}: {exc}") from None
        docs = parse_documents(data, str(path))
        doc = docs[0] if len(docs) == 1 else None
        if not isinstance(doc, dict):
            raise ValueError(f"--node-labels {path}: want one Node object or one label map")
        if "metadata" in doc:
            try:
                return labels_of(doc)
            except ValueError as exc:
                raise ValueError(f"--node-labels {path}: {exc}") from None
        return {str(k): v for k, v in doc.items() if isinstance(v, str)}

    return read
