"""CRI RunPodSandbox latency against the project-local containerd 2.x (scripts/runtime).

Baseline: the same containerd with **no NRI plugin registered**, plain pods. knd: the same
containerd with knd's NRI plugin connected, every pod getting one NIC. The two alternate in
blocks (`--block` pods each; the plugin is connected for a knd block and disconnected for a
baseline block), so drift hits both alike. knd's real path: the claim is prepared first
(untimed) by the kubelet emulator over DRA gRPC (API server emulator, host capture, pending-
restore record, plan persisted in SQLite), then CRI RunPodSandbox is timed while knd's NRI hook
executes the plan: move, rename, MTU, address, route, up. The hooks are built by the daemon's
own `build_hooks` (status writer, metrics, DHCP lease keeper, restorer).
`attach_hook_p99_ms` is knd.nri's own timing of the RunPodSandbox hooks, all of which attach.

Usage (root; after `scripts/runtime install`): .venv/bin/python bench/pod_startup.py [-n 30]
Exits non-zero when not root or the runtime is not installed. Prints p50/p99 per phase, the
ratio, and a final `RESULT {json}` line with the keys baseline ("no_nri_plugin"),
sandbox_p50_ms_baseline, sandbox_p50_ms_knd, startup_ratio (goal <= 1.25),
attach_hook_p99_ms (goal < 50).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pyroute2 import IPRoute  # noqa: E402

from knd.api.names import interface_device_name  # noqa: E402
from knd.driver.claim_api import KubeClaimApi  # noqa: E402
from knd.driver.daemon import build_hooks  # noqa: E402
from knd.driver.metrics import DriverMetrics  # noqa: E402
from knd.driver.netns_plans import NetnsPlanBuilder  # noqa: E402
from knd.driver.prepare import PrepareEngine  # noqa: E402
from knd.driver.restore_records import RestoreRecords, records_dir_for  # noqa: E402
from knd.driver.restorer import Restorer  # noqa: E402
from knd.driver.retry import STATUS_BACKOFF  # noqa: E402
from knd.driver.status_writer import StatusWriter  # noqa: E402
from knd.driver.store import StateStore  # noqa: E402
from knd.kube.connection import connect_url  # noqa: E402
from knd.kubelet.plugin import KubeletPlugin  # noqa: E402
from knd.lab.apiserver import ApiServerEmulator  # noqa: E402
from knd.lab.cri import CriClient, PodSpec  # noqa: E402
from knd.lab.kubelet import KubeletEmulator  # noqa: E402
from knd.nri.plugin import NriPlugin, PluginConfig  # noqa: E402

VERSION = "2"
DRIVER = "dra.net"
POOL = "bench-node"


class Node:
    """knd's kubelet side and NRI hooks wired as the daemon wires them (emulated API server
    and kubelet)."""

    def __init__(self, nri_socket: str) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="knd-bench-startup-"))
        self.api = ApiServerEmulator().start()
        self.store = StateStore(self.work / "state.db")
        kube = KubeClaimApi(connect_url(self.api.url), component=DRIVER, host=POOL)
        self.metrics = DriverMetrics()
        records = RestoreRecords(records_dir_for(self.work / "state.db"))
        self.restorer = Restorer(self.store, records, metrics=self.metrics)
        self.status = StatusWriter(applier=kube, driver=DRIVER, backoff=STATUS_BACKOFF)
        engine = PrepareEngine(
            driver=DRIVER,
            store=self.store,
            reader=kube,
            events=kube,
            plan_builder=NetnsPlanBuilder(),
            records=records,
            restorer=self.restorer,
        )
        (self.work / "kubelet").mkdir()
        self.dra = KubeletPlugin(DRIVER, engine, self.work / "kubelet")
        self.dra.start()
        self.kubelet = KubeletEmulator(self.work / "kubelet").start()
        self.kubelet.wait_registered(DRIVER)
        self.hooks, self.leases = build_hooks(self.store, self.status, self.metrics, self.restorer)
        self.nri_socket = nri_socket
        self.plugin: NriPlugin | None = None
        self.hook_s: list[float] = []

    def connect(self) -> None:
        """Register knd's NRI plugin with containerd (a fresh plugin, as after a restart)."""
        plugin = NriPlugin(
            self.hooks,
            PluginConfig(
                socket_path=self.nri_socket, name="dra.net", index="10", use_env_socket=False
            ),
        )
        plugin.timer.add_observer(
            lambda method, seconds, ok: (
                self.hook_s.append(seconds) if method == "RunPodSandbox" else None
            )
        )
        plugin.start()
        assert plugin.wait_synchronized(10), "plugin did not register"
        self.plugin = plugin

    def disconnect(self) -> None:
        if self.plugin is not None:
            self.plugin.stop()
            self.plugin = None

    def claim_for(self, pod: PodSpec, device: str) -> tuple[str, str, str]:
        params = {
            "interface": {"name": "net1", "addresses": ["192.0.2.20/24"], "mtu": 1450},
            "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
        }
        obj = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": f"c-{pod.name}", "namespace": pod.namespace},
            "spec": {
                "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": DRIVER}}]}
            },
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": "nic", "driver": DRIVER, "pool": POOL, "device": device}
                        ],
                        "config": [
                            {
                                "source": "FromClaim",
                                "opaque": {"driver": DRIVER, "parameters": params},
                            }
                        ],
                    }
                },
                "reservedFor": [{"resource": "pods", "name": pod.name, "uid": pod.uid}],
            },
        }
        obj = self.api.put_claim(obj)
        meta = obj["metadata"]
        ref = (meta["namespace"], meta["uid"], meta["name"])
        resp = self.kubelet.prepare(DRIVER, [ref])
        assert resp.claims[meta["uid"]].error == "", resp
        return ref

    def close(self) -> None:
        self.disconnect()
        self.leases.stop()
        self.status.close()
        self.restorer.stop()
        self.kubelet.stop()
        self.dra.stop()
        self.store.close()
        self.api.stop()


def runtime(*args: str) -> str:
    cmd = [sys.executable, str(ROOT / "scripts" / "runtime"), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def one(node: Node, cri: CriClient, attach: bool, tag: str) -> float:
    veth = f"nrb{os.getpid() % 1000}{tag}"
    pod = PodSpec(f"bench-{tag}")
    ref = None
    if attach:
        with IPRoute() as ipr:
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": veth + "p"})
            ipr.link("set", index=ipr.link_lookup(ifname=veth)[0], state="up")
        ref = node.claim_for(pod, interface_device_name(veth))
    t0 = time.perf_counter()
    sid = cri.run_pod(pod)
    elapsed = time.perf_counter() - t0
    cri.stop_pod(sid)
    cri.remove_pod(sid)
    if ref is not None:
        node.kubelet.unprepare(DRIVER, [ref])
    if attach:
        with IPRoute() as ipr:
            for name in (veth, veth + "p"):
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="sandboxes per phase (after warm-ups)")
    ap.add_argument("--block", type=int, default=5, help="sandboxes per alternating block")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("pod_startup: needs root (veths, network namespaces, containerd)", file=sys.stderr)
        return 2
    if not (ROOT / ".local" / "runtime" / "installed.json").exists():
        print("pod_startup: run `scripts/runtime install` first", file=sys.stderr)
        return 2
    runtime("stop", "--version", VERSION)
    info = json.loads(runtime("start", "--version", VERSION).splitlines()[-1])
    node = Node(info["nri_socket"])
    cri = CriClient(info["socket"])
    t_base: list[float] = []
    t_knd: list[float] = []
    try:
        for i in range(3):  # warm-ups, both ways
            one(node, cri, False, f"w{i}")
        node.connect()
        for i in range(3):
            one(node, cri, True, f"v{i}")
        node.hook_s.clear()
        node.disconnect()
        i = 0
        while len(t_knd) < args.n:
            block = min(args.block, args.n - len(t_knd))
            for _ in range(block):  # baseline: no NRI plugin registered
                t_base.append(one(node, cri, False, f"b{i}"))
                i += 1
            node.connect()
            for _ in range(block):
                t_knd.append(one(node, cri, True, f"k{i}"))
                i += 1
            node.disconnect()
    finally:
        cri.remove_all_pods()
        node.close()
        cri.close()
        runtime("stop", "--version", VERSION)
    p50_base, p50_knd = pct(t_base, 0.5) * 1e3, pct(t_knd, 0.5) * 1e3
    hook_p99 = pct(node.hook_s, 0.99) * 1e3 if node.hook_s else float("nan")
    hook_p50 = pct(node.hook_s, 0.5) * 1e3 if node.hook_s else float("nan")
    print(f"containerd {info['package']}, {args.n} sandboxes per phase, blocks of {args.block}")
    print(f"no NRI plugin : p50 {p50_base:7.1f} ms  p99 {pct(t_base, 0.99) * 1e3:7.1f} ms")
    print(f"knd, one NIC  : p50 {p50_knd:7.1f} ms  p99 {pct(t_knd, 0.99) * 1e3:7.1f} ms")
    print(
        f"RunPodSandbox hook (knd.nri timer, {len(node.hook_s)} attaching hooks): "
        f"p50 {hook_p50:.1f} ms  p99 {hook_p99:.1f} ms"
    )
    print(f"startup ratio knd/no-plugin: {p50_knd / p50_base:.3f}")
    result = {
        "baseline": "no_nri_plugin",
        "sandbox_p50_ms_baseline": round(p50_base, 2),
        "sandbox_p50_ms_knd": round(p50_knd, 2),
        "startup_ratio": round(p50_knd / p50_base, 3),
        "attach_hook_p99_ms": round(hook_p99, 2),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
