"""Shared pieces of the e2e tests on real Kubernetes (test_k8s_*.py): the lab fixture, claims,
pods, and readers of the real API server, the real kubelet (metrics, log) and the kernel.

`lab_fixture(containerd)` makes a module-scoped lab (`knd lab up`: upstream etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kubelet, knd with the chart's RBAC, the stand-in GPU
driver) on the project-local containerd of that version; the `clean` fixture ends each scenario
with no pods, claims or templates and all 8 lab NICs back on the host. Only one real lab is up
at a time on a machine (start-up ~14 s, ~30-60 s on a busy 2-core machine): the default lab is
shared by the modules that use it, run one after another; any other lab lives for its module.

Skips (with the reason printed) only when not root or when the runtime or Kubernetes is not
installed; CI installs both.
"""

from __future__ import annotations

import io
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, NetNS

from knd.lab import cluster
from knd.lab import lab as labmod
from knd.lab import node as lab_node
from knd.lab.restapi import RestClient
from tests.e2e.conftest import _skip_reason

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "kk8"
NODE = "knd-lab"
DRA_V1 = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/"


def _k8s_skip_reason() -> str | None:
    reason = _skip_reason()
    if reason:
        return reason
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kubernetes"), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        if json.loads(out.stdout.splitlines()[-1]).get("installed"):
            return None
    except (ValueError, IndexError):
        pass
    return "Kubernetes not built: run `scripts/kubernetes install`"


def _pod_skip_reason() -> str | None:
    """knd as the chart's pod also needs the helm binary and the image archive."""
    from knd.lab import helm

    try:
        helm.binary()
    except helm.HelmError as exc:
        return str(exc)
    if not helm.ARCHIVE.exists():
        return f"{helm.ARCHIVE} not built: run `scripts/image build`"
    return None


@dataclass
class Lab:
    cfg: labmod.LabConfig
    api: RestClient
    state: dict[str, Any]

    def nic(self, i: int) -> str:
        return f"{PREFIX}{i}"

    @property
    def knd_api(self) -> RestClient:
        """knd's own credentials (its ServiceAccount token)."""
        return RestClient.from_kubeconfig(Path(self.state["driver_kubeconfig"]))


class _Running:
    """The one real lab up at a time (a machine has one project-local containerd per version and
    one set of lab NICs): the default lab stays up across the modules that ask for it, and goes
    down before a module needs another lab or the runtime itself (tests/e2e/conftest.py)."""

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None
        self.cfg: labmod.LabConfig | None = None  # set from `up` on, even if it failed
        self.lab: Lab | None = None
        self.log = io.StringIO()

    def up(self, key: tuple[str, str], tmp: pytest.TempPathFactory) -> Lab:
        if self.lab is not None and self.key == key:
            return self.lab
        self.down()
        containerd, knd_as = key
        cfg = labmod.LabConfig(
            state_dir=tmp.mktemp("k8s") / "state",
            nic_prefix=PREFIX,
            fabric=f"kk8-fabric-{os.getpid()}",
            containerd=containerd,
            knd_as=knd_as,
        )
        self.key, self.cfg, self.log = key, cfg, io.StringIO()
        try:
            state = labmod.up(cfg, out=self.log)
        except BaseException:
            self.down()
            raise
        self.lab = Lab(cfg, RestClient.from_kubeconfig(Path(state["kubeconfig"])), state)
        return self.lab

    def down(self) -> None:
        """Stop the lab that is up (if any), printing its start-up output and log tails."""
        cfg, self.cfg, self.lab, self.key = self.cfg, None, None, None
        if cfg is None:
            return
        print(self.log.getvalue())
        logs = [cfg.state_dir / "driver.log", cfg.state_dir / "gpu_driver.log"]
        logs += sorted((cfg.state_dir / "kubernetes" / "logs").glob("*.log"))
        logs += sorted(
            (cfg.state_dir / "kubernetes").glob("run/pod-logs/kube-system_knd-*/*/*")
        )  # knd as a pod
        for path in logs:
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-25:])
                print(f"--- {path.name} (tail)\n{tail}")
        labmod.down(cfg, out=io.StringIO())


RUNNING = _Running()
#: The lab most modules use: containerd 2, knd as a process.
DEFAULT_LAB = (labmod.RUNTIME_VERSION, "process")


def lab_fixture(
    containerd: str = labmod.RUNTIME_VERSION, knd_as: str = "process"
) -> Callable[..., Iterator[Lab]]:
    """A module-scoped `lab` fixture on containerd `containerd` ("2" or "1.7"), with knd as a
    process or (`knd_as="pod"`) as the chart's DaemonSet pod (knd.lab.helm). The default lab
    outlives its module when the next module uses it too (tests/e2e/conftest.py orders those
    modules together and stops it before any other); any other lab goes down with its module."""
    key = (containerd, knd_as)

    @pytest.fixture(scope="module")
    def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
        reason = _k8s_skip_reason() or (_pod_skip_reason() if knd_as == "pod" else None)
        if reason:
            print(f"SKIP e2e: {reason}")
            pytest.skip(reason)
        yield RUNNING.up(key, tmp_path_factory)
        if key != DEFAULT_LAB:
            RUNNING.down()

    lab.lab_key = key  # type: ignore[attr-defined]  # read by tests/e2e/conftest.py
    return lab


def uses_default_lab(module: object) -> bool:
    """Does this test module's `lab` fixture ask for the default lab?"""
    return getattr(getattr(module, "lab", None), "lab_key", None) == DEFAULT_LAB


def _wait(cond: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    value = cond()
    assert value, f"timed out waiting for {what}"
    return value


def _host_nics(lab: Lab) -> set[str]:
    with IPRoute() as ipr:
        return {lab.nic(i) for i in range(8) if ipr.link_lookup(ifname=lab.nic(i))}


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """Each scenario ends with no pods, no claims, no templates and all 8 NICs on the host."""
    yield lab
    for p in lab.api.list("Pod", "default"):
        lab.api.delete("Pod", p["metadata"]["name"], "default")
    _wait(lambda: not lab.api.list("Pod", "default"), 120, "pods deleted by the kubelet")
    for c in lab.api.list("ResourceClaim", "default"):
        lab.api.delete("ResourceClaim", c["metadata"]["name"], "default")
    for t in lab.api.list("ResourceClaimTemplate", "default"):
        lab.api.delete("ResourceClaimTemplate", t["metadata"]["name"], "default")
    try:
        _wait(lambda: len(_host_nics(lab)) == 8, 60, "all lab NICs back on the host")
    except AssertionError:
        lost = recreate_lost_nics(lab)
        raise AssertionError(f"lab NICs not back on the host after the scenario: {lost}") from None
    with IPRoute() as ipr:
        for i in range(8):
            for idx in ipr.link_lookup(ifname=lab.nic(i)):
                ipr.flush_addr(index=idx)


def recreate_lost_nics(lab: Lab) -> list[str]:
    """Lab NICs that did not come home (died with a pod netns, or stuck in a netns nobody can
    name any more): delete what is left of each pair through its peer in the fabric and
    re-create it, so later scenarios still have 8. Returns the names lost."""
    lost = sorted({lab.nic(i) for i in range(8)} - _host_nics(lab))
    nics = lab.cfg.nics
    with NetNS(nics.fabric) as ns:
        for name in lost:
            for idx in ns.link_lookup(ifname=nics.peer(int(name.removeprefix(nics.prefix)))):
                ns.link("del", index=idx)
    lab_node.ensure_nics(nics)
    return lost


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def nic_request(name: str, ifname: str, device_class: str = "dra.net") -> dict[str, Any]:
    """A request for the lab NIC `ifname` (by its published ifName attribute)."""
    return {
        "name": name,
        "exactly": {
            "deviceClassName": device_class,
            "selectors": [
                {"cel": {"expression": f'device.attributes["dra.net"].ifName == "{ifname}"'}}
            ],
        },
    }


def claim_of(name: str, requests: list[dict[str, Any]], configs: dict[str, Any]) -> dict[str, Any]:
    """A claim with several requests; `configs` maps a request name to its opaque parameters."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "devices": {
                "requests": requests,
                "config": [
                    {"requests": [r], "opaque": {"driver": "dra.net", "parameters": params}}
                    for r, params in configs.items()
                ],
            }
        },
    }


def nic_claim(name: str, ifname: str, params: dict[str, Any] | None) -> dict[str, Any]:
    devices: dict[str, Any] = {
        "requests": [
            {
                "name": "nic",
                "exactly": {
                    "deviceClassName": "dra.net",
                    "selectors": [
                        {
                            "cel": {
                                "expression": f'device.attributes["dra.net"].ifName == "{ifname}"'
                            }
                        }
                    ],
                },
            }
        ]
    }
    if params is not None:
        devices["config"] = [{"opaque": {"driver": "dra.net", "parameters": params}}]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"devices": devices},
    }


#: The test pods' container: idles, and exits at once on SIGTERM (a bare `sleep` as PID 1
#: ignores it, so each pod deletion waited out its grace period: 3-4 s against 1.2-1.4 s).
IDLE = ["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]


def pod(lab: Lab, name: str, claims: dict[str, str], template: bool = False) -> dict[str, Any]:
    key = "resourceClaimTemplateName" if template else "resourceClaimName"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": lab.state["runtime"]["busybox_image"],
                    "imagePullPolicy": "Never",
                    "command": IDLE,
                    "resources": {"claims": [{"name": n} for n in claims]},
                }
            ],
            "resourceClaims": [{"name": n, key: c} for n, c in claims.items()],
        },
    }


def running(lab: Lab, name: str, timeout: float = 120) -> dict[str, Any]:
    def get() -> dict[str, Any] | None:
        p = lab.api.get("Pod", name, "default")
        return p if p and (p.get("status") or {}).get("phase") == "Running" else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := get()) is not None:
            return got
        time.sleep(0.3)
    raise AssertionError(f"pod {name} not running: {lab.api.get('Pod', name, 'default')}")


def start(lab: Lab, *objs: dict[str, Any]) -> dict[str, Any]:
    for obj in objs:
        lab.api.create(obj)
    pods = [o for o in objs if o["kind"] == "Pod"]
    return running(lab, pods[-1]["metadata"]["name"])


def sh(lab: Lab, p: dict[str, Any], *cmd: str) -> str:
    code, out = labmod.pod_exec(lab.cfg, p, ["/bin/busybox", *cmd])
    assert code == 0, (cmd, out)
    return out


def knd_entries(lab: Lab, claim: str) -> list[dict[str, Any]]:
    def entries() -> list[dict[str, Any]] | None:
        c = lab.api.get("ResourceClaim", claim, "default") or {}
        devs = [
            d
            for d in (c.get("status") or {}).get("devices") or []
            if d.get("driver") == "dra.net" and d.get("networkData")
        ]
        return devs or None

    got: list[dict[str, Any]] = _wait(entries, 30, f"status.devices of {claim}")
    return got


def kubelet_metrics(lab: Lab) -> str:
    """The real kubelet's /metrics (its serving port; admin token, webhook authn/authz)."""
    k8s = lab.state["kubernetes"]
    token = json.loads(Path(k8s["kubeconfig"]).read_text())["users"][0]["user"]["token"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the kubelet's self-signed serving certificate
    req = urllib.request.Request(
        f"https://127.0.0.1:{k8s['ports']['kubelet']}/metrics",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return str(resp.read().decode())


def dra_calls(metrics: str, driver: str, method: str, status: str | None = None) -> dict[str, int]:
    """kubelet's dra_grpc_operations_duration_seconds_count per gRPC method path: the calls it
    made, answered or not (`status`, e.g. "OK": only those that ended with that gRPC code)."""
    out: dict[str, int] = {}
    for line in metrics.splitlines():
        if not line.startswith("dra_grpc_operations_duration_seconds_count{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if status is not None and labels.get("grpc_status_code") != status:
            continue
        if labels.get("driver_name") == driver and labels["method_name"].endswith(method):
            out[labels["method_name"]] = out.get(labels["method_name"], 0) + int(
                float(line.rsplit(" ", 1)[1])
            )
    return out


def kubelet_log(lab: Lab) -> str:
    path = Path(lab.state["kubernetes"]["logs"]) / "kubelet.log"
    return path.read_text(errors="replace")


def events_of(lab: Lab, pod_name: str, reason: str | None = None) -> list[dict[str, Any]]:
    """The real API server's Events about pod `pod_name` (optionally of one reason)."""
    return [
        e
        for e in lab.api.list("Event", "default")
        if e["involvedObject"].get("name") == pod_name
        and (reason is None or e.get("reason") == reason)
    ]


def registrations(lab: Lab) -> int:
    """How often the real kubelet's plugin manager has registered dra.net (its log)."""
    return sum(
        1
        for ln in kubelet_log(lab).splitlines()
        if "Registered DRA plugin" in ln and '"dra.net"' in ln
    )


def restart(lab: Lab, component: str) -> None:
    """Restart one piece of the running lab with pods running: `knd` (the daemon), `containerd`
    (the daemon only; pods and shims stay) or a Kubernetes component (`kubelet`,
    `kube-apiserver`, ...: scripts/kubernetes restart)."""
    if component == "knd":
        labmod.stop_driver(lab.cfg)
        labmod.start_driver(lab.cfg)
        return
    state = labmod.read_state(lab.cfg)
    assert state is not None
    cluster.restart(state, component, labmod)


def delete_pod(lab: Lab, name: str) -> None:
    """Delete a pod through the API and wait until the kubelet has finished it."""
    lab.api.delete("Pod", name, "default")
    _wait(lambda: lab.api.get("Pod", name, "default") is None, 120, f"pod {name} deleted")
