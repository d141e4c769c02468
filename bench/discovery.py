"""Discovery and publishing benchmark.

1. Scan: 256 veth interfaces (128 pairs) in a throwaway netns `ki-bench-*` + the GPU-node sysfs
   fixture tree (8 RoCE NICs, gVNIC): full `Inventory.scan()` (netlink snapshot, sysfs, attributes,
   limits, admin filter). Baseline in the same run: the bare pyroute2 link+address dumps (the
   floor any netlink-based scan pays) and `ip -j addr show` (a shell-out scan).
2. Publish: 1024 devices through the slice publisher to the API server emulator (knd.lab, real
   REST paths, schema validation) with knd's REST client: slices created, API writes for an
   unchanged republish and for one changed NIC; baseline, run in the same process against the
   same server: a publisher that rewrites every slice (one update per slice, as a publisher
   without stable assignment and diffing does), for the same one-NIC change.

Needs root (netns). The scan must discover all 256 veths (else the run fails). Prints per-step
numbers and ratios and ends with `RESULT {json}` (keys scan_ms, veths_scanned,
slices_for_1024, writes_unchanged, writes_one_change, rewrite_all_writes, rewrite_all_ms,
one_change_ms, one_change_write_ratio). Goal: scan ≤ 100 ms for 256 interfaces; 0 writes
unchanged; 1 write per changed NIC.
"""

from __future__ import annotations

import json
import logging
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyroute2 import IPRoute

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.sysfs import write_gpu_node

from knd.host.netlink import LiveNetlink
from knd.host.sysfs import SysfsRoot
from knd.inventory.filter import DEFAULT_FILTER, AdminFilter
from knd.inventory.model import Device
from knd.inventory.scanner import Inventory
from knd.kube.connection import connect_url
from knd.kube.publisher import SlicePublisher
from knd.kube.slice_client import RestSliceClient
from knd.lab.apiserver import ApiServerEmulator

PAIRS = 128
ROUNDS = 20


def timed(fn: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Median milliseconds of `fn` over `rounds` runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def make_netns() -> str:
    ns = f"ki-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    batch = "".join(
        f"link add kb{i}a type veth peer name kb{i}b\n"
        f"addr add 10.{i // 250}.{i % 250}.1/24 dev kb{i}a\n"
        f"link set kb{i}a up\nlink set kb{i}b up\n"
        for i in range(PAIRS)
    )
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)
    return ns


def bench_scan(ns: str, sysfs_root: Path) -> dict[str, float]:
    inv = Inventory(
        sysfs=SysfsRoot(sysfs_root),
        netlink=LiveNetlink(netns=ns),
        admin_filter=AdminFilter(DEFAULT_FILTER),
    )
    result = inv.scan()
    n_links = len(result.discovery.devices)
    veths = sum(
        1
        for d in result.discovery.devices
        if str(d.attributes.get("dra.net/ifName", "")).startswith("kb")
    )
    if veths != 2 * PAIRS:
        raise SystemExit(f"the scan found {veths} of the {2 * PAIRS} veths: not a valid run")
    scan_ms = timed(inv.scan)

    def raw_dump() -> None:
        with IPRoute(netns=ns) as ipr:
            list(ipr.get_links())
            list(ipr.get_addr())

    def ip_json() -> None:
        subprocess.run(
            ["ip", "-n", ns, "-j", "-d", "addr", "show"], check=True, capture_output=True
        )

    dump_ms = timed(raw_dump)
    ip_ms = timed(ip_json)
    print(f"scan: {n_links} devices discovered ({veths} veths + fixture PCI NICs)")
    print(f"  knd Inventory.scan          {scan_ms:8.2f} ms/scan")
    ratio = scan_ms / dump_ms
    print(f"  baseline pyroute2 dumps     {dump_ms:8.2f} ms  (scan/dump ratio {ratio:.2f})")
    print(f"  baseline ip -j -d addr show {ip_ms:8.2f} ms  (scan/ip ratio {scan_ms / ip_ms:.2f})")
    return {
        "scan_ms": scan_ms,
        "dump_ms": dump_ms,
        "ip_ms": ip_ms,
        "devices": n_links,
        "veths": veths,
    }


def devices(n: int, changed: int | None = None) -> list[Device]:
    out = []
    for i in range(n):
        bdf = f"0000:{i // 32:02x}:{(i % 32) // 8:02x}.{i % 8}"
        out.append(
            Device(
                "pci-" + bdf.replace(":", "-").replace(".", "-"),
                {
                    "dra.net/ifName": f"ens{i}",
                    "dra.net/pciAddress": bdf,
                    "dra.net/mtu": 9000 if i == changed else 1500,
                    "dra.net/rdma": True,
                    "dra.net/numaNode": i % 2,
                    "resource.kubernetes.io/pcieRoot": f"pci0000:{i // 128:02x}",
                    "resource.kubernetes.io/pciBusID": bdf,
                },
            )
        )
    return out


def rewrite_all(client: RestSliceClient, node: str, changed: list[Device]) -> tuple[int, float]:
    """The baseline publisher: update every slice of the node with its devices (the same
    split as knd's, so only the write strategy differs); (writes, ms)."""
    t = time.perf_counter()
    by_name = {d.name: d for d in changed}
    writes = 0
    for obj in client.list_slices(node):
        spec = obj["spec"]
        spec["devices"] = [by_name[d["name"]].wire() for d in spec["devices"]]
        client.update_slice(obj)
        writes += 1
    return writes, (time.perf_counter() - t) * 1000


def bench_publish() -> dict[str, float]:
    with ApiServerEmulator() as srv:
        srv.add_node("bench-node")
        client = RestSliceClient(connect_url(srv.url))
        pub = SlicePublisher(client, "bench-node")
        t = time.perf_counter()
        first = pub.publish(devices(1024))
        first_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        unchanged = pub.publish(devices(1024))
        unchanged_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        one = pub.publish(devices(1024, changed=700))
        one_ms = (time.perf_counter() - t) * 1000
        slices = len(srv.slices())
        # the baseline, same server, same change (back and forth so it is a real change)
        naive, naive_ms = rewrite_all(client, "bench-node", devices(1024, changed=701))
        mtus = [
            d["attributes"]["dra.net/mtu"]["int"]
            for sl in srv.slices()
            for d in sl["spec"]["devices"]
            if d["name"] == devices(1024)[701].name
        ]
        assert mtus == [9000], f"the baseline did not write the change: {mtus}"
    print(f"publish: 1024 devices -> {slices} slices")
    print(f"  first publish    {first.writes:3d} writes  {first_ms:8.1f} ms")
    print(f"  unchanged        {unchanged.writes:3d} writes  {unchanged_ms:8.1f} ms (reads only)")
    ratio = one.writes / naive
    print(f"  one changed NIC  {one.writes:3d} writes  {one_ms:8.1f} ms")
    print(
        f"  baseline rewrite-all: {naive} writes  {naive_ms:8.1f} ms "
        f"(write ratio {ratio:.3f}, time ratio {one_ms / naive_ms:.3f})"
    )
    return {
        "slices": slices,
        "unchanged": unchanged.writes,
        "one": one.writes,
        "one_ms": one_ms,
        "naive": naive,
        "naive_ms": naive_ms,
        "generation_after_one_change": one.generation,
    }


def main() -> int:
    # fixture NICs have no netdev in the bench netns, so DraNet's default filter (reads
    # dra.net/type) warns for them on every scan: keep the output to the numbers
    logging.getLogger("knd.inventory").setLevel(logging.ERROR)
    ns = make_netns()
    try:
        with tempfile.TemporaryDirectory(prefix="ki-bench-") as tmp:
            root = write_gpu_node(Path(tmp) / "sys")
            scan = bench_scan(ns, root)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    pub = bench_publish()
    result = {
        "scan_ms": round(scan["scan_ms"], 2),
        "slices_for_1024": pub["slices"],
        "writes_unchanged": pub["unchanged"],
        "writes_one_change": pub["one"],
        "veths_scanned": scan["veths"],
        "rewrite_all_writes": pub["naive"],
        "rewrite_all_ms": round(pub["naive_ms"], 1),
        "one_change_ms": round(pub["one_ms"], 1),
        "one_change_write_ratio": round(pub["one"] / pub["naive"], 4),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
