"""Benchmark: one scrape of per-pod NIC counters, knd's collector vs two naive exporters.

Setup: one pod netns holding N veth ends (default 8), tracked by `NicTelemetry`. Timed per
scrape (interleaved runs, order alternating):
- knd: `NicTelemetry.collect()` (held netns fd + socket, one raw RTM_GETLINK per NIC);
- pyroute2: a new NetnsWorker thread per scrape entering the netns, `IPRoute().get_links()`
  (stats64 decoded by pyroute2), then the thread exits;
- iproute2: `ip -s -j -n <pod> link show` in a subprocess per scrape, JSON parsed.
Needs root. Prints p50s and ratios, then `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import time

from pyroute2 import IPRoute, netns

from knd.driver.nic_telemetry import NicTelemetry, TrackedNic
from knd.netns.nsfd import NetnsWorker, open_netns


def _pyroute2_scrape(path: str) -> int:
    fd = open_netns(path)
    try:
        with NetnsWorker(fd) as worker:

            def read() -> int:
                with IPRoute() as ipr:
                    return sum(
                        (link.get("IFLA_STATS64") or {}).get("rx_bytes", 0)
                        for link in ipr.get_links()
                    )

            return worker.call(read)
    finally:
        os.close(fd)


def _iproute2_scrape(name: str) -> int:
    out = subprocess.run(
        ["ip", "-s", "-j", "-n", name, "link", "show"], capture_output=True, check=True
    ).stdout
    return sum(link.get("stats64", {}).get("rx", {}).get("bytes", 0) for link in json.loads(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nics", type=int, default=8)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    name = f"knb{secrets.token_hex(3)}"
    netns.create(name)
    path = f"/run/netns/{name}"
    try:
        nics = []
        with IPRoute() as ipr:
            for i in range(args.nics):
                a, b = f"{name}a{i}", f"{name}b{i}"
                ipr.link("add", ifname=a, kind="veth", peer={"ifname": b, "net_ns_fd": name})
                nics.append(TrackedNic("claim", f"dev{i}", b, None))
        telemetry = NicTelemetry()
        telemetry.track("uid", "ns", "pod", path, nics)
        list(telemetry.collect())  # the held socket is made on the first scrape
        times: dict[str, list[float]] = {"knd": [], "pyroute2": [], "iproute2": []}
        order = list(times)
        for run in range(args.runs):
            for which in order if run % 2 == 0 else reversed(order):
                t0 = time.perf_counter()
                if which == "knd":
                    list(telemetry.collect())
                elif which == "pyroute2":
                    _pyroute2_scrape(path)
                else:
                    _iproute2_scrape(name)
                times[which].append((time.perf_counter() - t0) * 1000)
        telemetry.close()
        p50 = {k: statistics.median(v) for k, v in times.items()}
        for k, v in p50.items():
            print(f"{k:9s} p50 {v:.3f} ms per scrape of {args.nics} NICs")
        result = {
            "nics": args.nics,
            "knd_p50_ms": round(p50["knd"], 3),
            "pyroute2_p50_ms": round(p50["pyroute2"], 3),
            "iproute2_p50_ms": round(p50["iproute2"], 3),
            "pyroute2_ratio": round(p50["pyroute2"] / p50["knd"], 1),
            "iproute2_ratio": round(p50["iproute2"] / p50["knd"], 1),
        }
        print("RESULT " + json.dumps(result))
    finally:
        with IPRoute() as ipr:
            for i in range(args.nics):
                for idx in ipr.link_lookup(ifname=f"{name}a{i}"):
                    ipr.link("del", index=idx)
        netns.remove(name)


if __name__ == "__main__":
    main()
