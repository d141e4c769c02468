"""The paper's experiment on the real lab: topology-aligned GPU+NIC allocation (DRA, one claim,
`matchAttribute: resource.kubernetes.io/pcieRoot`) against a device-plugin lottery (the GPU picked
at random among the free ones, as a device plugin does; the NIC claimed explicitly through DRA),
and the same pods without any claim as the start-up baseline.

The lab is `knd lab up`'s real one (knd.lab.cluster): upstream kube-apiserver, kube-scheduler
(its DRA plugin allocates), kube-controller-manager (templates become claims) and a kubelet on
containerd 2 (NICs `kpb0..7`, state `.local/lab-bench`), knd as the node daemon with its
ServiceAccount token, the stand-in GPU driver's slice. Per configuration, N pods (default 100)
in waves of 8 (the node has 8 GPU+NIC pairs); the three configurations alternate wave by wave
so all see the same machine state. Measured:

* alignment rate: pods whose GPU and NIC share a PCIe root (paper: 100% vs about 1 in 8);
* start-up latency: pod creation (the API POST) to the pod seen `Running` on a Pod watch (the
  kubelet's status write after its containers started; knd's prepare and NRI hook included),
  P50/P90/P99 (paper, on GKE: 1.8 / 2.1 / 2.3 s), and the ratio of the P50 with a knd claim to
  the P50 of the same pods without a claim;
* API load: every request in the API server's audit log (knd.lab.audit: the apiserver's metrics
  carry no user or user-agent label), counted per wave; knd's are those with its user agent
  `knd` and its ServiceAccount's identity: per pod with a knd claim (the claim waves), per pod
  without one (the no-claim waves: other pods' veths wake knd's rescan too), and idle (first
  `--idle-seconds`, no pod at all); beside the kubelet's, the scheduler's and the
  controller-manager's requests per pod.

Prints tables, writes a PNG (bench/png.py: no matplotlib) and ends with `RESULT {json}` with
the keys aligned_rate, unaligned_rate, startup_p50_s, startup_p90_s, startup_p99_s (aligned
pods), unaligned_startup_p50_s, startup_p50_s_no_claim, claim_startup_ratio,
knd_requests_per_pod, knd_writes_per_pod, knd_requests_per_no_claim_pod,
knd_idle_requests_per_min, pods_per_configuration, pods_requested, seconds.

Usage (root, after scripts/setup, `scripts/runtime install`, `scripts/kubernetes install`):
    .venv/bin/python bench/paper.py [-n 100] [--wave 8] [--idle-seconds 180] [--max-seconds S]
        [--png bench/paper.png]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import re
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from knd.lab import audit  # noqa: E402
from knd.lab import lab as labmod  # noqa: E402
from knd.lab.restapi import RestClient, RestError  # noqa: E402
from png import Canvas  # noqa: E402

WAVE = 8
ROOT_ATTR = "resource.kubernetes.io/pcieRoot"
GPU_ANN = "bench.knd.dev/device-plugin-gpu"
CONFIGS = ("aligned", "unaligned", "no-claim")
KND_AGENT = "knd"
KND_USER = "system:serviceaccount:kube-system:knd"
CONTROL = ("kubelet", "kube-scheduler", "kube-controller-manager")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
WAVE_TIMEOUT = 300.0


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


def pod(name: str, template: str | None, annotations: dict[str, str], image: str) -> dict[str, Any]:
    """A pod for the real lab: the runtime's busybox (no registry), a claim from `template`
    (none when None), a 1 s grace period so a wave is torn down quickly."""
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["/bin/busybox", "sleep", "100000"],
    }
    spec: dict[str, Any] = {"terminationGracePeriodSeconds": 1, "containers": [container]}
    if template:
        container["resources"] = {"claims": [{"name": "devs"}]}
        spec["resourceClaims"] = [{"name": "devs", "resourceClaimTemplateName": template}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": spec,
    }


def roots(api: RestClient) -> dict[tuple[str, str], str]:
    out = {}
    for s in api.list("ResourceSlice"):
        for d in s["spec"].get("devices") or []:
            attr = (d.get("attributes") or {}).get(ROOT_ATTR)
            if attr:
                out[(s["spec"]["driver"], d["name"])] = attr["string"]
    return out


class PodWatch:
    """One Pod watch for the whole run (re-opened from the last resourceVersion when the server
    ends a stream): when each pod was first seen Running (this machine's clock), that pod
    object, and which pods are gone."""

    def __init__(self, api: RestClient) -> None:
        self.api = api
        self.running: dict[str, tuple[float, dict[str, Any]]] = {}
        self.deleted: set[str] = set()
        self.cond = threading.Condition()
        self.error: str | None = None
        rv = api.call("GET", "/api/v1/pods?limit=1")["metadata"]["resourceVersion"]
        self.rv = str(rv)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        failures = 0
        while True:
            try:
                for ev in self.api.watch("Pod", timeout_s=300, resource_version=self.rv):
                    now = time.time()
                    obj = ev.get("object") or {}
                    meta = obj.get("metadata") or {}
                    if ev.get("type") == "ERROR":  # e.g. 410 Gone: start again from now
                        self.rv = ""
                        break
                    self.rv = str(meta.get("resourceVersion") or self.rv)
                    name = str(meta.get("name"))
                    with self.cond:
                        if ev.get("type") == "DELETED":
                            self.deleted.add(name)
                        elif (obj.get("status") or {}).get("phase") == "Running":
                            self.running.setdefault(name, (now, obj))
                        self.cond.notify_all()
                failures = 0
            except RestError as exc:
                failures += 1
                if failures > 20:
                    with self.cond:
                        self.error = str(exc)
                        self.cond.notify_all()
                    return
                time.sleep(0.5)
            if not self.rv:
                self.rv = str(
                    self.api.call("GET", "/api/v1/pods?limit=1")["metadata"]["resourceVersion"]
                )

    def wait(self, what: str, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not done():
                if self.error:
                    raise SystemExit(f"pod watch failed: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"{what} after {timeout:.0f} s")
                self.cond.wait(min(left, 1.0))


def knd_nics(api: RestClient) -> int:
    return sum(
        len(s["spec"].get("devices") or [])
        for s in api.list("ResourceSlice")
        if s["spec"]["driver"] == "dra.net"
    )


def wave(
    api: RestClient,
    watch: PodWatch,
    config: str,
    first: int,
    count: int,
    rng: random.Random,
    image: str,
) -> list[dict[str, Any]]:
    """Run `count` pods of one configuration together, then delete them and wait until their
    claims are gone and knd publishes all 8 NICs again; return per-pod results."""
    by_root = roots(api)
    free_gpus = sorted(name for (drv, name) in by_root if drv == "gpu.nvidia.com")
    created: dict[str, float] = {}
    plugin_gpu: dict[str, str] = {}
    template = {"aligned": "aligned", "unaligned": "nic-only"}.get(config)
    for i in range(first, first + count):
        name = f"{config}-{i}"
        ann = {}
        if config == "unaligned":  # the device plugin's pick: any free GPU, at random
            g = free_gpus.pop(rng.randrange(len(free_gpus)))
            plugin_gpu[name] = ann[GPU_ANN] = g
        created[name] = time.time()
        api.create(pod(name, template, ann, image))
    watch.wait(
        f"{config} pods not running",
        lambda: all(n in watch.running for n in created),
        WAVE_TIMEOUT,
    )
    results = []
    for name, posted in created.items():
        seen, p = watch.running[name]
        result: dict[str, Any] = {"pod": name, "startup_s": seen - posted}
        if template:
            claim_name = p["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
            claim = api.get("ResourceClaim", claim_name, "default") or {}
            alloc = claim["status"]["allocation"]["devices"]["results"]
            nic = next(r["device"] for r in alloc if r["request"] == "nic")
            gpu = plugin_gpu.get(name) or next(r["device"] for r in alloc if r["request"] == "gpu")
            result["aligned"] = by_root[("gpu.nvidia.com", gpu)] == by_root[("dra.net", nic)]
        results.append(result)
    for name in created:
        api.delete("Pod", name, "default")
    watch.wait("pods not deleted", lambda: all(n in watch.deleted for n in created), WAVE_TIMEOUT)
    end = time.monotonic() + WAVE_TIMEOUT
    while api.list("ResourceClaim", "default") or knd_nics(api) < 8:
        if time.monotonic() > end:
            raise SystemExit("claims not released or NICs not republished in time")
        time.sleep(0.2)
    return results


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def plot(path: Path, rates: dict[str, float], lat: dict[str, list[float]]) -> None:
    c = Canvas(720, 360)
    colors = {"aligned": (31, 119, 180), "unaligned": (214, 39, 40), "no-claim": (90, 90, 90)}
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


def api_load(
    log: Path, windows: list[tuple[str, int, int, float]], pods: dict[str, int]
) -> dict[str, Any]:
    """Requests per client per pod, from the audit log's byte ranges of each wave."""
    per: dict[str, Counter[tuple[str, str]]] = {c: Counter() for c in CONFIGS}
    knd: dict[str, Counter[tuple[str, str, int]]] = {c: Counter() for c in CONFIGS}
    seconds: Counter[str] = Counter()
    reads: Counter[str] = Counter()  # knd's list/watch URIs (which selectors it watches with)
    skipped = 0
    for config, begin, end, secs in windows:
        got = audit.read_events(log, begin, end)
        skipped += got.skipped
        for ev in audit.requests(got.events):
            if (
                audit.agent(ev) == KND_AGENT
                and (ev.get("user") or {}).get("username") == KND_USER
                and ev.get("verb") in ("list", "watch")
            ):
                path, _, query = str(ev.get("requestURI") or "").partition("?")
                keep = [
                    q
                    for q in query.split("&")
                    if q.split("=")[0] in ("fieldSelector", "labelSelector", "watch")
                ]
                reads[f"{ev['verb']} {path}?{'&'.join(keep)}"] += 1
        per[config] += audit.by_client(got.events)
        knd[config] += audit.count(got.events, user_agent=KND_AGENT, username=KND_USER)
        seconds[config] += secs
    claim_pods = pods["aligned"] + pods["unaligned"]
    claim_knd = knd["aligned"] + knd["unaligned"]
    total = sum(claim_knd.values())
    writes = sum(n for (verb, _r, _c), n in claim_knd.items() if verb in WRITES)
    idle = sum(knd["no-claim"].values())

    def agent_total(config: str, name: str) -> int:
        return sum(n for (a, _u), n in per[config].items() if a == name)

    return {
        "per_pod": round(total / claim_pods, 2) if claim_pods else 0.0,
        "writes_per_pod": round(writes / claim_pods, 2) if claim_pods else 0.0,
        "no_claim_churn_per_min": (
            round(60 * idle / seconds["no-claim"], 2) if seconds["no-claim"] else 0.0
        ),
        "no_claim_churn_per_pod": round(idle / pods["no-claim"], 2) if pods["no-claim"] else 0.0,
        "idle_per_min": 0.0,
        "knd_by_request": {
            f"{verb} {res} {code}": round(n / claim_pods, 2)
            for (verb, res, code), n in sorted(claim_knd.items(), key=lambda kv: -kv[1])
        },
        "control_per_pod": {
            name: {
                "claim": round(
                    (agent_total("aligned", name) + agent_total("unaligned", name)) / claim_pods, 2
                ),
                "no-claim": round(agent_total("no-claim", name) / pods["no-claim"], 2),
            }
            for name in CONTROL
        },
        "knd_reads": dict(reads.most_common(10)),
        "skipped_lines": skipped,
    }


def flow_schemas(kubeconfig: Path) -> dict[str, int]:
    """The API server's own count of dispatched requests per FlowSchema (API Priority and
    Fairness, from its /metrics with the admin token): which flow knd's requests share."""
    cfg = json.loads(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    req = urllib.request.Request(
        cluster["server"] + "/metrics",
        headers={"Authorization": "Bearer " + cfg["users"][0]["user"]["token"]},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            text = resp.read(64 << 20).decode()
    except OSError as exc:
        return {f"error: {exc}": 0}
    return parse_flow_schemas(text)


def parse_flow_schemas(text: str) -> dict[str, int]:
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            out[labels.get("flow_schema", "-")] += int(float(line.rsplit(" ", 1)[1]))
    return dict(out.most_common(8))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100, help="pods per configuration")
    ap.add_argument("--png", type=Path, default=ROOT / "bench" / "paper.png")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--wave", type=int, default=WAVE, help="pods started together (1..8)")
    ap.add_argument(
        "--idle-seconds",
        type=float,
        default=180,
        help="first, this long with no pod at all: knd's idle request rate (its resync is 60 s)",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=0,
        help="start no new round of waves after this long (0: none); the result says how many "
        "pods were measured",
    )
    args = ap.parse_args()
    policy_dir = Path(tempfile.mkdtemp(prefix="knd-paper-"))
    cfg = labmod.LabConfig(
        state_dir=ROOT / ".local" / "lab-bench",
        nic_prefix="kpb",
        fabric="kpb-fabric",
        audit_policy=audit.write_policy(policy_dir / "audit-policy.yaml"),
    )
    rng = random.Random(args.seed)
    log = io.StringIO()
    t0 = time.monotonic()
    try:
        state = labmod.up(cfg, out=log)
    except labmod.LabError:
        print(log.getvalue(), file=sys.stderr)
        raise
    print(f"  lab up in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    windows: list[tuple[str, int, int, float]] = []
    audit_log = Path(state["audit_log"])
    t1 = time.monotonic()
    try:
        api = RestClient.from_kubeconfig(Path(state["kubeconfig"]))
        image = state["runtime"]["busybox_image"]
        for t in templates():
            api.create(t)
        watch = PodWatch(api)
        begin = audit_log.stat().st_size
        time.sleep(args.idle_seconds)
        idle_window = (begin, audit_log.stat().st_size)
        done = 0
        while done < args.n:
            if args.max_seconds and time.monotonic() - t1 > args.max_seconds:
                print(f"  --max-seconds {args.max_seconds:.0f} reached at {done}", file=sys.stderr)
                break
            count = min(max(1, min(args.wave, WAVE)), args.n - done)
            for config in CONFIGS:
                begin, w0 = audit_log.stat().st_size, time.monotonic()
                results[config] += wave(api, watch, config, done, count, rng, image)
                windows.append((config, begin, audit_log.stat().st_size, time.monotonic() - w0))
            done += count
            print(
                f"  {done}/{args.n} pods per configuration ({time.monotonic() - t1:.0f} s)",
                file=sys.stderr,
            )
        load = api_load(audit_log, windows, {c: len(results[c]) for c in CONFIGS})
        load["flow_schemas"] = flow_schemas(Path(state["kubeconfig"]))
        idle = audit.read_events(audit_log, *idle_window).events
        idle_knd = sum(audit.count(idle, user_agent=KND_AGENT, username=KND_USER).values())
        load["idle_per_min"] = (
            round(60 * idle_knd / args.idle_seconds, 2) if args.idle_seconds else 0.0
        )
    finally:
        labmod.down(cfg, out=log)
    elapsed = time.monotonic() - t1
    measured = len(results["aligned"])
    rates = {
        k: sum(r["aligned"] for r in results[k]) / len(results[k]) for k in ("aligned", "unaligned")
    }
    lat = {k: [r["startup_s"] for r in v] for k, v in results.items()}
    print(
        f"\npaper experiment on the real lab (kube-scheduler, kubelet, containerd): {measured} pods"
        f" per configuration, waves of {args.wave}, {elapsed:.0f} s"
    )
    print(f"{'configuration':<13} {'aligned':>9} {'P50 s':>7} {'P90 s':>7} {'P99 s':>7}")
    for k in results:
        rate = f"{rates[k] * 100:>8.1f}%" if k in rates else f"{'-':>9}"
        print(
            f"{k:<13} {rate} {pct(lat[k], 0.5):>7.3f} {pct(lat[k], 0.9):>7.3f} "
            f"{pct(lat[k], 0.99):>7.3f}"
        )
    print("paper on GKE (aligned): P50/P90/P99 1.8 / 2.1 / 2.3 s; alignment 100% vs ~12.5%")
    ratio = pct(lat["aligned"], 0.5) / pct(lat["no-claim"], 0.5)
    print(f"start-up P50 with a knd claim / without a claim: {ratio:.2f}")
    print(
        f"\nAPI load (audit log): knd {load['per_pod']} requests per pod with a claim"
        f" ({load['writes_per_pod']} writes); idle (no pods) {load['idle_per_min']} requests/min;"
        f" during the no-claim waves {load['no_claim_churn_per_min']} requests/min"
        f" ({load['no_claim_churn_per_pod']} per pod without a knd claim)"
    )
    for key, n in load["knd_by_request"].items():
        print(f"  knd {key:<48} {n:>6} per pod")
    for uri, n in load["knd_reads"].items():
        print(f"  knd read {uri} x{n}")
    print(f"  requests per FlowSchema (apiserver /metrics): {load['flow_schemas']}")
    print(f"  {'client':<24} {'per claim pod':>14} {'per no-claim pod':>17}")
    for name, v in load["control_per_pod"].items():
        print(f"  {name:<24} {v['claim']:>14} {v['no-claim']:>17}")
    plot(args.png, rates, lat)
    print(f"plot: {args.png}")
    result = {
        "aligned_rate": round(rates["aligned"], 4),
        "unaligned_rate": round(rates["unaligned"], 4),
        "startup_p50_s": round(pct(lat["aligned"], 0.5), 4),
        "startup_p90_s": round(pct(lat["aligned"], 0.9), 4),
        "startup_p99_s": round(pct(lat["aligned"], 0.99), 4),
        "unaligned_startup_p50_s": round(pct(lat["unaligned"], 0.5), 4),
        "startup_p50_s_no_claim": round(pct(lat["no-claim"], 0.5), 4),
        "claim_startup_ratio": round(ratio, 3),
        "knd_requests_per_pod": load["per_pod"],
        "knd_writes_per_pod": load["writes_per_pod"],
        "knd_idle_requests_per_min": load["idle_per_min"],
        "knd_requests_per_no_claim_pod": load["no_claim_churn_per_pod"],
        "pods_per_configuration": measured,
        "pods_requested": args.n,
        "seconds": round(elapsed, 1),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
