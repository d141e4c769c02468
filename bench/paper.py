"""The paper's experiment on the lab node: topology-aligned GPU+NIC allocation (DRA, one claim,
`matchAttribute: resource.kubernetes.io/pcieRoot`) against a device-plugin lottery (the GPU picked
at random among the free ones, as a device plugin does; the NIC claimed explicitly through DRA).

Per configuration, N pods (default 100) in waves of 8 (the node has 8 GPU+NIC pairs); the two
configurations alternate wave by wave so both see the same machine state. Measured:

* alignment rate: pods whose GPU and NIC share a PCIe root (paper: 100% vs about 1 in 8);
* start-up latency: pod creation (the API POST) to sandbox ready (RunPodSandbox returned, knd's
  NRI hook included), P50/P90/P99 (paper, on GKE: 1.8 / 2.1 / 2.3 s).

Everything runs through the lab: API server emulator, scheduler + kubelet emulators, knd's
daemon, containerd 2 (a lab of its own: NICs `kpb0..7`, state `.local/lab-bench`). Prints a
table, writes a PNG (bench/png.py: no matplotlib) and ends with `RESULT {json}` with the keys
aligned_rate, unaligned_rate, startup_p50_s, startup_p90_s, startup_p99_s (aligned pods).

Usage (root, after scripts/setup and `scripts/runtime install`):
    .venv/bin/python bench/paper.py [-n 100] [--png bench/paper.png]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from knd.lab import lab as labmod  # noqa: E402
from knd.lab.controller import ANN_READY  # noqa: E402
from knd.lab.restapi import RestClient  # noqa: E402
from png import Canvas  # noqa: E402

WAVE = 8
ROOT_ATTR = "resource.kubernetes.io/pcieRoot"
GPU_ANN = "bench.knd.dev/device-plugin-gpu"


def templates() -> list[dict[str, Any]]:
    def tmpl(name: str, requests: list[dict[str, Any]], constraints: list[Any]) -> dict[str, Any]:
        devices: dict[str, Any] = {"requests": requests}
        if constraints:
            devices["constraints"] = constraints
        devices["config"] = [
            {
                "requests": ["nic"],
                "opaque": {"driver": "dra.net", "parameters": {"interface": {"name": "net1"}}},
            }
        ]
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"spec": {"devices": devices}},
        }

    gpu = {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}
    nic = {"name": "nic", "exactly": {"deviceClassName": "dra.net"}}
    return [
        tmpl("aligned", [gpu, nic], [{"requests": ["gpu", "nic"], "matchAttribute": ROOT_ATTR}]),
        tmpl("nic-only", [nic], []),
    ]


def pod(name: str, template: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "nodeName": "knd-lab",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["/bin/busybox", "sleep", "100000"],
                    "resources": {"claims": [{"name": "devs"}]},
                }
            ],
            "resourceClaims": [{"name": "devs", "resourceClaimTemplateName": template}],
        },
    }


def roots(api: RestClient) -> dict[tuple[str, str], str]:
    out = {}
    for s in api.list("ResourceSlice"):
        for d in s["spec"]["devices"]:
            out[(s["spec"]["driver"], d["name"])] = d["attributes"][ROOT_ATTR]["string"]
    return out


def wave(
    api: RestClient, config: str, first: int, count: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Run `count` pods of one configuration together; return per-pod results."""
    by_root = roots(api)
    gpus = sorted(name for (drv, name) in by_root if drv == "gpu.nvidia.com")
    free_gpus = list(gpus)
    created: dict[str, float] = {}
    plugin_gpu: dict[str, str] = {}
    for i in range(first, first + count):
        name = f"{config}-{i}"
        ann = {}
        if config == "unaligned":  # the device plugin's pick: any free GPU, at random
            g = free_gpus.pop(rng.randrange(len(free_gpus)))
            plugin_gpu[name] = ann[GPU_ANN] = g
        created[name] = time.time()
        api.create(pod(name, "aligned" if config == "aligned" else "nic-only", ann))
    deadline = time.monotonic() + 120
    pods: dict[str, dict[str, Any]] = {}
    while len(pods) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"pods not running after 120 s: {sorted(set(created) - set(pods))}")
        for name in created:
            if name in pods:
                continue
            p = api.get("Pod", name, "default")
            if p and (p.get("status") or {}).get("phase") == "Running":
                pods[name] = p
        time.sleep(0.05)
    results = []
    for name, p in pods.items():
        ready = float(p["metadata"]["annotations"][ANN_READY])
        claim_name = p["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
        claim = api.get("ResourceClaim", claim_name, "default") or {}
        alloc = claim["status"]["allocation"]["devices"]["results"]
        nic = next(r["device"] for r in alloc if r["request"] == "nic")
        gpu = plugin_gpu.get(name) or next(r["device"] for r in alloc if r["request"] == "gpu")
        results.append(
            {
                "pod": name,
                "startup_s": ready - created[name],
                "aligned": by_root[("gpu.nvidia.com", gpu)] == by_root[("dra.net", nic)],
            }
        )
    for name in created:
        api.delete("Pod", name, "default")

    def settled() -> bool:
        claims = api.list("ResourceClaim")
        return not claims

    end = time.monotonic() + 120
    while not settled():
        if time.monotonic() > end:
            raise SystemExit("claims not released after 120 s")
        time.sleep(0.05)
    return results


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def plot(path: Path, rates: dict[str, float], lat: dict[str, list[float]]) -> None:
    c = Canvas(720, 360)
    colors = {"aligned": (31, 119, 180), "unaligned": (214, 39, 40)}
    # left: alignment rate bars
    c.text(20, 12, "alignment rate", scale=2)
    c.line(40, 300, 300, 300, (0, 0, 0), 1)
    c.line(40, 50, 40, 300, (0, 0, 0), 1)
    for i, (cfg, rate) in enumerate(rates.items()):
        x0 = 70 + i * 120
        c.rect(x0, 300 - int(250 * rate), x0 + 80, 300, colors[cfg])
        c.text(x0 + 4, 288 - int(250 * rate), f"{rate * 100:.0f}%", scale=2)
        c.text(x0, 312, cfg, colors[cfg], scale=2)
    # right: start-up latency CDF
    c.text(380, 12, "startup cdf s", scale=2)
    x0, x1, y0, y1 = 380, 700, 300, 50
    c.line(x0, y0, x1, y0, (0, 0, 0), 1)
    c.line(x0, y0, x0, y1, (0, 0, 0), 1)
    top = max(max(v) for v in lat.values()) * 1.05
    for t in range(5):
        val = top * t / 4
        x = x0 + int((x1 - x0) * t / 4)
        c.line(x, y0, x, y0 + 4, (0, 0, 0), 1)
        c.text(x - 8, y0 + 10, f"{val:.1f}", scale=2)
    for cfg, values in lat.items():
        s = sorted(values)
        pts = [
            (x0 + int((x1 - x0) * v / top), y0 - int((y0 - y1) * (i + 1) / len(s)))
            for i, v in enumerate(s)
        ]
        for a, b in itertools.pairwise(pts):
            c.line(a[0], a[1], b[0], b[1], colors[cfg], 2)
        c.text(x0 + 10, 60 + 16 * list(lat).index(cfg), cfg, colors[cfg], scale=2)
    c.save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100, help="pods per configuration")
    ap.add_argument("--png", type=Path, default=ROOT / "bench" / "paper.png")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--wave", type=int, default=WAVE, help="pods started together (1..8)")
    args = ap.parse_args()
    cfg = labmod.LabConfig(
        state_dir=ROOT / ".local" / "lab-bench",
        nic_prefix="kpb",
        fabric="kpb-fabric",
        emulated=True,
    )
    rng = random.Random(args.seed)
    log = io.StringIO()
    state = labmod.up(cfg, out=log)
    results: dict[str, list[dict[str, Any]]] = {"aligned": [], "unaligned": []}
    try:
        api = RestClient(state["apiserver"])
        for t in templates():
            api.create(t)
        done = 0
        while done < args.n:
            count = min(max(1, min(args.wave, WAVE)), args.n - done)
            for config in ("aligned", "unaligned"):
                results[config] += wave(api, config, done, count, rng)
            done += count
            print(f"  {done}/{args.n} pods per configuration", file=sys.stderr)
    finally:
        labmod.down(cfg, out=log)
    rates = {k: sum(r["aligned"] for r in v) / len(v) for k, v in results.items()}
    lat = {k: [r["startup_s"] for r in v] for k, v in results.items()}
    print(
        f"\npaper experiment on the lab node: {args.n} pods per configuration, waves of {args.wave}"
    )
    print(f"{'configuration':<12} {'aligned':>9} {'P50 s':>7} {'P90 s':>7} {'P99 s':>7}")
    for k in results:
        print(
            f"{k:<12} {rates[k] * 100:>8.1f}% {pct(lat[k], 0.5):>7.3f} "
            f"{pct(lat[k], 0.9):>7.3f} {pct(lat[k], 0.99):>7.3f}"
        )
    ratio = rates["aligned"] / rates["unaligned"] if rates["unaligned"] else float("inf")
    print(f"alignment ratio aligned/unaligned: {ratio:.1f}x (paper: 100% vs ~12.5%)")
    print(
        "start-up P50 ratio aligned/unaligned: "
        f"{pct(lat['aligned'], 0.5) / pct(lat['unaligned'], 0.5):.2f} "
        "(paper on GKE: P50/P90/P99 1.8/2.1/2.3 s)"
    )
    plot(args.png, rates, lat)
    print(f"plot: {args.png}")
    result = {
        "aligned_rate": round(rates["aligned"], 4),
        "unaligned_rate": round(rates["unaligned"], 4),
        "startup_p50_s": round(pct(lat["aligned"], 0.5), 4),
        "startup_p90_s": round(pct(lat["aligned"], 0.9), 4),
        "startup_p99_s": round(pct(lat["aligned"], 0.99), 4),
        "unaligned_startup_p50_s": round(pct(lat["unaligned"], 0.5), 4),
        "pods_per_configuration": args.n,
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
