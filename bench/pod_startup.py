"""CRI RunPodSandbox latency against the project-local containerd 2.x (scripts/runtime) with a
knd NRI plugin connected: pods without a claim (knd idle for them: baseline) interleaved with
pods that get one NIC, in the same run. knd's real path: the claim is prepared first (untimed) by
the kubelet emulator over DRA gRPC (claims API emulator, host capture, plan persisted in SQLite),
then CRI RunPodSandbox is timed while knd's NRI hook (knd.driver.hooks) executes the plan: move,
rename, MTU, address, route, up. hook_p99_ms is knd.nri's own RunPodSandbox timing, all pods.

Usage (root; after `scripts/runtime install`): .venv/bin/python bench/pod_startup.py [-n 30]
Prints p50/p99 per phase, the ratio, and a final `RESULT {json}` line with the keys
sandbox_p50_ms_idle, sandbox_p50_ms_knd, startup_ratio, hook_p99_ms.
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
from knd.driver.hooks import NetworkHooks  # noqa: E402
from knd.driver.netns_plans import NetnsPlanBuilder  # noqa: E402
from knd.driver.prepare import PrepareEngine  # noqa: E402
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
        engine = PrepareEngine(
            driver=DRIVER,
            store=self.store,
            reader=kube,
            events=kube,
            plan_builder=NetnsPlanBuilder(),
        )
        (self.work / "kubelet").mkdir()
        self.dra = KubeletPlugin(DRIVER, engine, self.work / "kubelet")
        self.dra.start()
        self.kubelet = KubeletEmulator(self.work / "kubelet").start()
        self.kubelet.wait_registered(DRIVER)
        self.plugin = NriPlugin(
            NetworkHooks(store=self.store, status=None),
            PluginConfig(socket_path=nri_socket, name="dra.net", index="10", use_env_socket=False),
        )

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
        self.plugin.stop()
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
    ap.add_argument("-n", type=int, default=30, help="sandboxes per phase (after 3 warm-ups)")
    args = ap.parse_args()
    if os.geteuid() != 0 or not (ROOT / ".local" / "runtime" / "installed.json").exists():
        print("pod_startup: needs root and `scripts/runtime install`; skipped")
        print("RESULT " + json.dumps({"skipped": True}))
        return 0
    runtime("stop", "--version", VERSION)
    info = json.loads(runtime("start", "--version", VERSION).splitlines()[-1])
    node = Node(info["nri_socket"])
    plugin = node.plugin
    cri = CriClient(info["socket"])
    t_idle: list[float] = []
    t_knd: list[float] = []
    try:
        plugin.start()
        assert plugin.wait_synchronized(10), "plugin did not register"
        for i in range(3):
            one(node, cri, False, f"w{i}")
            one(node, cri, True, f"v{i}")
        plugin.timer = type(plugin.timer)()  # drop warm-up samples
        for i in range(args.n):  # interleaved, so drift and noise hit both phases alike
            t_idle.append(one(node, cri, False, f"i{i}"))
            t_knd.append(one(node, cri, True, f"k{i}"))
        hook = plugin.timer.stats("RunPodSandbox")  # both kinds of pods
    finally:
        cri.remove_all_pods()
        node.close()
        cri.close()
        runtime("stop", "--version", VERSION)
    p50_idle, p50_knd = pct(t_idle, 0.5) * 1e3, pct(t_knd, 0.5) * 1e3
    hook_p99 = (hook.p99_s * 1e3) if hook else float("nan")
    print(f"containerd {info['package']}, {args.n} sandboxes per phase")
    print(f"pod, no claim: p50 {p50_idle:7.1f} ms  p99 {pct(t_idle, 0.99) * 1e3:7.1f} ms")
    print(f"pod, one NIC : p50 {p50_knd:7.1f} ms  p99 {pct(t_knd, 0.99) * 1e3:7.1f} ms")
    if hook:
        print(
            f"RunPodSandbox hook (knd.nri timer, all pods): p50 {hook.p50_s * 1e3:.1f} ms"
            f"  p99 {hook_p99:.1f} ms"
        )
    print(f"startup ratio knd/idle: {p50_knd / p50_idle:.3f}")
    result = {
        "sandbox_p50_ms_idle": round(p50_idle, 2),
        "sandbox_p50_ms_knd": round(p50_knd, 2),
        "startup_ratio": round(p50_knd / p50_idle, 3),
        "hook_p99_ms": round(hook_p99, 2),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
