"""CRI RunPodSandbox latency against the project-local containerd 2.x (scripts/runtime) with a
knd NRI plugin connected: pods without a claim (plugin idle for them: baseline) interleaved with
pods that get one NIC attached, in the same run. The attaching hook moves a host veth into the
pod netns and configures it (rename, MTU, address, route, up) with pyroute2: the work of knd's
RunPodSandbox hook for one NIC, done here by a bench-local stand-in since the plan executor lives
in another layer. hook_p99_ms is knd.nri's own RunPodSandbox timing over all pods of the run.

Usage (root; after `scripts/runtime install`): .venv/bin/python bench/pod_startup.py [-n 30]
Prints p50/p99 per phase, the ratio, and a final `RESULT {json}` line with the keys
sandbox_p50_ms_idle, sandbox_p50_ms_knd, startup_ratio, hook_p99_ms.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pyroute2 import IPRoute  # noqa: E402

from knd.lab.cri import CriClient, PodSpec  # noqa: E402
from knd.nri.handler import NullHandler  # noqa: E402
from knd.nri.plugin import NriPlugin, PluginConfig  # noqa: E402
from knd.nri.types import ContainerInfo, PodInfo  # noqa: E402

VERSION = "2"
NIC_ANNOTATION = "knd.bench/nic"


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netlink_in(path: str) -> IPRoute:
    """An rtnetlink socket bound inside the netns at `path` (setns on this thread only, then
    back): ~1 ms instead of ~10 ms for pyroute2's NetNS helper."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into pod netns failed")
        try:
            return IPRoute()
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(own)
        os.close(target)


class AttachOne(NullHandler):
    """Moves the pod's annotated host veth into the pod netns and configures it: rename + MTU
    on the host (kept across the move), move, then address, up and route inside."""

    def __init__(self) -> None:
        self.host = IPRoute()

    def run_pod_sandbox(self, pod: PodInfo) -> None:
        name = pod.annotations.get(NIC_ANNOTATION)
        if name is None or pod.netns is None:
            return
        idx = self.host.link_lookup(ifname=name)[0]
        self.host.link("set", index=idx, mtu=1450)
        fd = os.open(pod.netns, os.O_RDONLY)
        try:
            self.host.link("set", index=idx, net_ns_fd=fd, ifname="net1")
        finally:
            os.close(fd)
        ns = netlink_in(pod.netns)
        try:
            j = ns.link_lookup(ifname="net1")[0]
            ns.addr("add", index=j, address="192.0.2.20", prefixlen=24)
            ns.link("set", index=j, state="up")
            ns.route("add", dst="198.51.100.0/24", gateway="192.0.2.1")
        finally:
            ns.close()

    def synchronize(self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]) -> None:
        return None


def runtime(*args: str) -> str:
    cmd = [sys.executable, str(ROOT / "scripts" / "runtime"), *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def one(cri: CriClient, attach: bool, tag: str) -> float:
    annotations: dict[str, str] = {}
    veth = f"nrb{os.getpid() % 1000}{tag}"
    if attach:
        with IPRoute() as ipr:
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": veth + "p"})
        annotations[NIC_ANNOTATION] = veth
    pod = PodSpec(f"bench-{tag}", annotations=annotations)
    t0 = time.perf_counter()
    sid = cri.run_pod(pod)
    elapsed = time.perf_counter() - t0
    cri.stop_pod(sid)
    cri.remove_pod(sid)
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
    plugin = NriPlugin(
        AttachOne(),
        PluginConfig(
            socket_path=info["nri_socket"], name="knd-bench", index="10", use_env_socket=False
        ),
    )
    cri = CriClient(info["socket"])
    t_idle: list[float] = []
    t_knd: list[float] = []
    try:
        plugin.start()
        assert plugin.wait_synchronized(10), "plugin did not register"
        for i in range(3):
            one(cri, False, f"w{i}")
            one(cri, True, f"v{i}")
        plugin.timer = type(plugin.timer)()  # drop warm-up samples
        for i in range(args.n):  # interleaved, so drift and noise hit both phases alike
            t_idle.append(one(cri, False, f"i{i}"))
            t_knd.append(one(cri, True, f"k{i}"))
        hook = plugin.timer.stats("RunPodSandbox")  # both kinds of pods
    finally:
        plugin.stop()
        cri.remove_all_pods()
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
