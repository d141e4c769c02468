"""`knd driver` resource use: idle RSS and CPU with 64 published devices, and RSS across 500 pod
lifecycles (leak check).

Setup (root): 64 veth pairs in the host netns (host ends published through an admin filter on
their prefix; the peers are not), the API server emulator and the kubelet emulator (knd.lab;
EMULATED), and the daemon as a real subprocess. The NRI side is driven through the daemon's
real NRI socket by a minimal runtime stand-in speaking the mux + ttrpc wire (the unit tests'
FakeRuntime); the DRA side through its real gRPC socket. One lifecycle = create the claim →
NodePrepareResources → create a netns → RunPodSandbox (the daemon moves and configures a veth)
→ StopPodSandbox (it returns it and restores host state) → RemovePodSandbox → delete the netns
→ NodeUnprepareResources. Real containerd is not used here: on this VM a CRI pod lifecycle
costs ~0.5-1 s, which would make 500 lifecycles take minutes; the daemon's work per lifecycle
is the same.

Measured from outside the process: RSS from /proc/<pid>/status (VmRSS), CPU from
/proc/<pid>/stat (utime + stime). Baseline in the same run: a Python process that only imports
the daemon's modules (what any Python daemon with these libraries costs before doing anything).

Namespaces are made with `ip netns add` (pyroute2's netns.create forks, which hangs in a process
that runs gRPC threads).

Usage: .venv/bin/python bench/daemon.py [--idle-seconds 60] [--cycles 500] [--devices 64]
Ends with `RESULT {json}`: idle_rss_mb, idle_cpu_pct, rss_growth_mb_500 (RSS after the last
lifecycle minus RSS after a warm-up of 50 lifecycles), plus informational keys.
Goal: idle RSS <= 80 MB, idle CPU <= 1 %.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from pyroute2 import IPRoute  # noqa: E402
from tests.unit.fake_runtime import FakeRuntime  # noqa: E402

from knd._proto import nri_pb2  # noqa: E402
from knd.api.names import interface_device_name  # noqa: E402
from knd.lab.apiserver import CLAIMS, ApiServerEmulator  # noqa: E402
from knd.lab.kubelet import KubeletEmulator  # noqa: E402

KND = str(Path(sys.executable).parent / "knd")
DRIVER = "dra.net"
NODE = "bench-node"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except OSError as exc:
        return getattr(exc, "code", 0) or 0, str(exc)


def metric(port: int, name: str, labels: str = "") -> float | None:
    for line in get(port, "/metrics")[1].splitlines():
        if line.startswith(name) and labels in line:
            return float(line.rpartition(" ")[2])
    return None


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def claim_body(name: str, pod_name: str, pod_uid: str, device: str) -> dict[str, Any]:
    params = {"interface": {"name": "net1", "addresses": ["192.0.2.20/24"], "mtu": 1450}}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": DRIVER}}]}
        },
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "nic", "driver": DRIVER, "pool": NODE, "device": device}
                    ],
                    "config": [
                        {"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": params}}
                    ],
                },
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [NODE]}
                            ]
                        }
                    ]
                },
            },
            "reservedFor": [{"resource": "pods", "name": pod_name, "uid": pod_uid}],
        },
    }


def sandbox(uid: str, name: str, netns_path: str) -> nri_pb2.PodSandbox:
    p = nri_pb2.PodSandbox(id="sb-" + uid, uid=uid, name=name, namespace="default")
    p.linux.namespaces.add(type="network", path=netns_path)
    return p


def event(rt: FakeRuntime, kind: int, pod: nri_pb2.PodSandbox) -> float:
    start = time.perf_counter()
    resp = rt.call("StateChange", nri_pb2.StateChangeEvent(event=kind, pod=pod))
    if resp.status.code:
        raise SystemExit(f"bench: hook {kind} failed: {resp.status.message}")
    return (time.perf_counter() - start) * 1000


def baseline_rss(seconds: float = 3.0) -> float:
    """RSS of a Python process that imports what the daemon imports and does nothing else."""
    code = (
        "import knd.cli.main, knd.driver.daemon, time, sys;"
        "sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(seconds)
        return rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=64)
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/daemon.py needs root (veths, netns)", file=sys.stderr)
        return 2
    # SIGTERM (e.g. `timeout`) must still run the cleanup below: 128 veths otherwise stay.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tag = secrets.token_hex(2)
    prefix, peer_prefix = f"kbd{tag}h", f"kbd{tag}q"
    nics = [f"{prefix}{i}" for i in range(args.devices)]
    tmp = Path(tempfile.mkdtemp(prefix="knd-bench-daemon-"))
    namespaces: list[str] = []
    api = ApiServerEmulator().start()
    api.add_node(NODE)
    kroot = tmp / "kubelet"
    kroot.mkdir()
    kubelet = KubeletEmulator(kroot).start()
    rt = FakeRuntime(tmp / "nri.sock")
    proc: subprocess.Popen[str] | None = None
    try:
        with IPRoute() as ipr:
            for i, name in enumerate(nics):
                ipr.link("add", ifname=name, kind="veth", peer={"ifname": f"{peer_prefix}{i}"})
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.addr("add", index=idx, address=f"10.97.{i}.1", prefixlen=24)
                ipr.link("set", index=idx, state="up")
        port = free_port()
        log = (tmp / "daemon.log").open("w")
        proc = subprocess.Popen(
            [
                KND,
                "driver",
                "--apiserver",
                api.url,
                "--hostname-override",
                NODE,
                "--kubelet-root-dir",
                str(kroot),
                "--state-path",
                str(tmp / "state" / "state.db"),
                "--nri-socket",
                str(tmp / "nri.sock"),
                "--bind-address",
                f"127.0.0.1:{port}",
                "--filter",
                f'device.attributes["dra.net"].ifName.startsWith("{prefix}")',
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        pid = proc.pid
        hs = threading.Thread(target=rt.handshake, daemon=True)
        hs.start()
        hs.join(30)
        kubelet.wait_registered(DRIVER, 30)
        wait(lambda: get(port, "/readyz")[0] == 200, 30, "/readyz")
        wait(
            lambda: metric(port, "knd_driver_published_devices ") == args.devices,
            30,
            f"{args.devices} published devices",
        )
        time.sleep(2.0)  # let the start-up burst settle

        # -- idle ---------------------------------------------------------------------------
        c0, t0 = cpu_s(pid), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, t1 = cpu_s(pid), time.monotonic()
        idle_rss = rss_mb(pid)
        idle_cpu = (c1 - c0) / (t1 - t0) * 100
        base = baseline_rss()

        # -- lifecycles ---------------------------------------------------------------------
        samples: list[tuple[int, float]] = [(0, idle_rss)]
        run_ms: list[float] = []
        stop_ms: list[float] = []
        warm_rss = idle_rss
        c_start, t_start = cpu_s(pid), time.monotonic()
        for n in range(1, args.cycles + 1):
            nic = nics[n % len(nics)]
            pod_uid, pod_name = str(uuid.uuid4()), f"bp-{n}"
            obj = api.store.create(
                CLAIMS,
                "default",
                claim_body(f"bc-{n}", pod_name, pod_uid, interface_device_name(nic)),
            )
            ref = ("default", obj["metadata"]["uid"], obj["metadata"]["name"])
            resp = kubelet.prepare(DRIVER, [ref])
            if resp.claims[ref[1]].error:
                raise SystemExit(f"bench: prepare failed: {resp.claims[ref[1]].error}")
            ns_name = f"kbd{tag}-{n}"
            subprocess.run(["ip", "netns", "add", ns_name], check=True)
            namespaces.append(ns_name)
            pod = sandbox(pod_uid, pod_name, f"/run/netns/{ns_name}")
            run_ms.append(event(rt, nri_pb2.RUN_POD_SANDBOX, pod))
            stop_ms.append(event(rt, nri_pb2.STOP_POD_SANDBOX, pod))
            event(rt, nri_pb2.REMOVE_POD_SANDBOX, pod)
            subprocess.run(["ip", "netns", "del", ns_name], check=True)
            namespaces.remove(ns_name)
            resp = kubelet.unprepare(DRIVER, [ref])
            if resp.claims[ref[1]].error:
                raise SystemExit(f"bench: unprepare failed: {resp.claims[ref[1]].error}")
            api.store.delete(CLAIMS, "default", ref[2])
            if n == args.warmup:
                warm_rss = rss_mb(pid)
            if n % 100 == 0 or n == args.cycles:
                samples.append((n, rss_mb(pid)))
        cycle_s = (time.monotonic() - t_start) / args.cycles
        busy_cpu = (cpu_s(pid) - c_start) / (time.monotonic() - t_start) * 100
        time.sleep(1.0)
        final_rss = rss_mb(pid)
        with IPRoute() as ipr:
            missing = [n for n in nics if not ipr.link_lookup(ifname=n)]
        if missing:
            raise SystemExit(f"bench: NICs not back on the host: {missing[:5]}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        rt.shutdown()
        kubelet.stop()
        api.stop()
        for ns_name in namespaces:
            subprocess.run(["ip", "netns", "del", ns_name], check=False)
        with IPRoute() as ipr:
            for name in nics:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)

    def pct(values: list[float], q: float) -> float:
        s = sorted(values)
        return s[min(len(s) - 1, int(q * len(s)))]

    growth = final_rss - warm_rss
    print(f"{'phase':<34}{'value':>12}")
    print(f"{'baseline: imports only, RSS MB':<34}{base:>12.1f}")
    print(f"{'idle RSS MB (64 devices)':<34}{idle_rss:>12.1f}")
    print(f"{'idle RSS / baseline':<34}{idle_rss / base:>12.2f}")
    print(f"{'idle CPU % (' + str(int(args.idle_seconds)) + ' s)':<34}{idle_cpu:>12.3f}")
    for n, value in samples:
        print(f"{'RSS MB after ' + str(n) + ' lifecycles':<34}{value:>12.1f}")
    print(f"{'RSS MB after warm-up':<34}{warm_rss:>12.1f}")
    print(f"{'RSS growth MB (warm-up..end)':<34}{growth:>12.2f}")
    print(f"{'lifecycle s (client side)':<34}{cycle_s:>12.3f}")
    print(f"{'CPU % during lifecycles':<34}{busy_cpu:>12.1f}")
    print(f"{'RunPodSandbox p50/p99 ms':<34}{pct(run_ms, 0.5):>6.1f}/{pct(run_ms, 0.99):.1f}")
    print(f"{'StopPodSandbox p50/p99 ms':<34}{pct(stop_ms, 0.5):>6.1f}/{pct(stop_ms, 0.99):.1f}")
    result = {
        "idle_rss_mb": round(idle_rss, 1),
        "idle_cpu_pct": round(idle_cpu, 3),
        "rss_growth_mb_500": round(growth, 2),
        "rss_growth_mb_from_idle": round(final_rss - idle_rss, 2),
        "baseline_rss_mb": round(base, 1),
        "idle_rss_ratio": round(idle_rss / base, 2),
        "cycles": args.cycles,
        "run_pod_sandbox_p99_ms": round(pct(run_ms, 0.99), 1),
    }
    print("RESULT " + json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
