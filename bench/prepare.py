"""Benchmark: NodePrepareResources latency for claims with 1 and 8 devices.

The full path as kubelet sees it, in three processes as on a node: the kubelet emulator (its own
process, as kubelet is) calls `v1.DRAPlugin/NodePrepareResources` over a unix socket; knd (this
process) GETs the claim from the API server emulator (its own process, on loopback, through
knd.kube.connection), resolves configs, locates each device and captures its host state
(netlink + sysfs: the real NetnsPlanBuilder, on 8 veth NICs created for the run; run as root),
builds the AttachPlans, writes each device's pending-restore record and commits the claim to
SQLite (WAL, synchronous=FULL) before answering, as the daemon's engine does. The emulated
kubelet keeps one gRPC connection to the plugin, as kubelet does, and times each call on its
side. Until 2026-12 all three shared one interpreter, so the emulators' threads competed with
knd's for one GIL (docs/kubelet.md, Benchmark).
`--placeholder` measures without host capture (no root needed). Every iteration uses a new
claim (no idempotent shortcut); unprepare runs between iterations, untimed.

Baseline in the same run: one plain GET of a claim of the same shape through knd's own client,
from knd's process (the API round trip prepare cannot avoid). Prints medians/p90 and ratios,
then one line `RESULT {json}` with prepare_1_ms, prepare_8_ms (medians), get_claim_ms, and the
ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from knd.driver.claim_api import KubeClaimApi
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.driver.prepare import PrepareEngine
from knd.driver.restore_records import RestoreRecords, records_dir_for
from knd.driver.store import StateStore
from knd.kube.connection import connect_url
from knd.kubelet.plugin import KubeletPlugin
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.kubelet import KubeletEmulator

DRIVER = "dra.net"


NICS = [f"kbp{i}" for i in range(8)]


def make_nics() -> None:
    with IPRoute() as ipr:
        for i, name in enumerate(NICS):
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
            idx = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address=f"10.77.{i}.1", prefixlen=24)


def drop_nics() -> None:
    with IPRoute() as ipr:
        for name in NICS:
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)


def make_claim(devices: int) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": DRIVER}}]}
        },
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "nic", "driver": DRIVER, "pool": "node", "device": NICS[i]}
                        for i in range(devices)
                    ],
                    "config": [
                        {
                            "source": "FromClass",
                            "opaque": {
                                "driver": DRIVER,
                                "parameters": {"interface": {"mtu": 9000}},
                            },
                        },
                        {
                            "source": "FromClaim",
                            "requests": ["nic"],
                            "opaque": {
                                "driver": DRIVER,
                                "parameters": {
                                    "interface": {"addresses": ["10.0.0.2/24"]},
                                    "routes": [
                                        {"destination": "10.1.0.0/16", "gateway": "10.0.0.1"}
                                    ],
                                },
                            },
                        },
                    ],
                }
            },
            "reservedFor": [{"resource": "pods", "name": "p", "uid": str(uuid.uuid4())}],
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


KINDS = ("get", "1", "8")
WARMUP = 5


def serve_api(conn: Connection, rounds: int) -> None:
    """Process A: the API server emulator with every round's claims created up front; sends
    (url, {kind: [(namespace, uid, name), ...]}) and serves until the parent says stop."""
    server = ApiServerEmulator().start()
    refs: dict[str, list[tuple[str, str, str]]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            meta = server.put_claim(make_claim(8 if kind == "8" else 1))["metadata"]
            refs[kind].append((meta["namespace"], meta["uid"], meta["name"]))
    conn.send((server.url, refs))
    with contextlib.suppress(EOFError):
        conn.recv()
    server.stop()


def run_kubelet(conn: Connection, kubelet_dir: str) -> None:
    """Process B: the kubelet emulator; times NodePrepareResources for each claim the parent
    sends (then unprepares it, untimed) and answers (ms, error)."""
    kubelet = KubeletEmulator(Path(kubelet_dir)).start()
    try:
        kubelet.wait_registered(DRIVER)
        conn.send("registered")
        while (ref := conn.recv()) is not None:
            t0 = time.perf_counter()
            resp = kubelet.prepare(DRIVER, [ref])
            elapsed = (time.perf_counter() - t0) * 1000
            kubelet.unprepare(DRIVER, [ref])
            conn.send((elapsed, resp.claims[ref[1]].error))
    finally:
        kubelet.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--placeholder", action="store_true", help="no host capture (no root)")
    args = parser.parse_args()
    real = not args.placeholder
    if real:
        drop_nics()
        make_nics()
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no forked threads
    api_conn, api_child = spawn.Pipe()
    api_proc = spawn.Process(target=serve_api, args=(api_child, args.iterations + WARMUP))
    api_proc.start()
    url, refs = api_conn.recv()
    work = Path(tempfile.mkdtemp(prefix="knd-bench-prepare-"))
    store = StateStore(work / "state.db")
    api = KubeClaimApi(connect_url(url), DRIVER)
    builder = NetnsPlanBuilder() if real else None
    engine = PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=api,
        events=api,
        plan_builder=builder,
        records=RestoreRecords(records_dir_for(store.path)),
    )
    print(f"plan builder: {'NetnsPlanBuilder (host capture on veths)' if real else 'placeholder'}")
    print("processes: kubelet emulator, knd (plugin + engine), API server emulator")
    plugin = KubeletPlugin(DRIVER, engine, work / "kubelet")
    plugin.start()
    kubelet_conn, kubelet_child = spawn.Pipe()
    kubelet_proc = spawn.Process(target=run_kubelet, args=(kubelet_child, str(work / "kubelet")))
    kubelet_proc.start()
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        assert kubelet_conn.recv() == "registered"
        for i in range(args.iterations + WARMUP):  # the first rounds warm up
            for kind in KINDS:
                namespace, uid, name = refs[kind][i]
                if kind == "get":
                    t0 = time.perf_counter()
                    api.get(namespace, name)
                    elapsed = (time.perf_counter() - t0) * 1000
                else:
                    kubelet_conn.send((namespace, uid, name))
                    elapsed, error = kubelet_conn.recv()
                    assert error == "", error
                if i >= WARMUP:
                    samples[kind].append(elapsed)
    finally:
        with contextlib.suppress(OSError):
            kubelet_conn.send(None)
        kubelet_proc.join(30)
        api_conn.close()
        api_proc.join(30)
        plugin.stop()
        store.close()
        if real:
            drop_nics()
    med = {k: statistics.median(v) for k, v in samples.items()}
    for k, v in samples.items():
        label = "GET claim (baseline)" if k == "get" else f"prepare, {k} device(s)"
        print(f"{label:24s} median {med[k]:7.2f} ms  p90 {pct(v, 0.9):7.2f} ms  n={len(v)}")
    r1 = med["1"] / med["get"]
    r8 = med["8"] / med["get"]
    print(
        f"prepare_1 / GET = {r1:.2f}x   prepare_8 / GET = {r8:.2f}x   "
        f"prepare_8 / prepare_1 = {med['8'] / med['1']:.2f}x"
    )
    result = {
        "prepare_1_ms": round(med["1"], 3),
        "prepare_8_ms": round(med["8"], 3),
        "get_claim_ms": round(med["get"], 3),
        "prepare_1_vs_get_ratio": round(r1, 3),
        "prepare_8_vs_get_ratio": round(r8, 3),
        "prepare_8_vs_1_ratio": round(med["8"] / med["1"], 3),
    }
    print("RESULT " + json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
