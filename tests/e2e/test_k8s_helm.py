"""knd deployed by its Helm chart onto the real lab: install, upgrade, rollback, uninstall.

`knd lab up --knd-as pod` (knd.lab.helm): upstream Kubernetes 1.37.2, the image archive from
`scripts/image build` imported into the lab's containerd, the chart installed with the helm
that `scripts/kubernetes install` built from the helm.sh/helm/v4 module. knd is then the
DaemonSet's privileged pod under the real kubelet. Every assertion reads the API server, the
kubelet, helm, containerd or the kernel (inside pods via CRI exec, the host's links and files).

The tests share one lab and run in file order: the chart against the real API server's strict
validation, knd as a pod, a claim's NIC, upgrade, rollback, and uninstall last.
Skips (reason printed) only without root, the runtime, Kubernetes + helm or the image; CI
builds all of them.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import IPRoute

from knd.lab import helm as labhelm
from knd.lab import lab as labmod
from knd.lab.restapi import KINDS, RestClient, RestError
from tests.e2e.k8s_support import (
    Lab,
    _k8s_skip_reason,
    _wait,
    kubelet_log,
    nic_claim,
    pod,
    running,
    sh,
    uniq,
)

pytestmark = pytest.mark.e2e
PREFIX = "khm"
NODE = "knd-lab"


class HelmLab(Lab):
    """The lab of this module: its own NIC prefix (k8s_support's Lab names `kk8<i>`)."""

    def nic(self, i: int) -> str:
        return f"{PREFIX}{i}"


def host_leftovers() -> dict[str, list[str]]:
    """What a lab could leave on the host: mount points, named netns, lab processes."""
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=False)
    lab_procs = ("containerd", "kubelet", "kube-apiserver", "etcd", "knd driver", "gpu_driver")
    return {
        "mounts": sorted(labhelm._mounts()),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "procs": sorted(
            a
            for a in ps.stdout.splitlines()
            if any(w in a for w in lab_procs) and "ps -eo" not in a
        ),
    }


def _skip_reason() -> str | None:
    reason = _k8s_skip_reason()
    if reason:
        return reason
    try:
        labhelm.binary()
    except labhelm.HelmError as exc:
        return str(exc)
    if not labhelm.ARCHIVE.exists():
        return f"{labhelm.ARCHIVE} not built: run `scripts/image build`"
    return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelmLab]:
    reason = _skip_reason()
    if reason:
        print(f"SKIP e2e: {reason}")
        pytest.skip(reason)
    cfg = labmod.LabConfig(
        state_dir=tmp_path_factory.mktemp("kh") / "state",
        nic_prefix=PREFIX,
        fabric=f"khm-fabric-{os.getpid()}",
        knd_as="pod",
    )
    log = io.StringIO()
    before = host_leftovers()
    t0 = time.monotonic()
    try:
        state = labmod.up(cfg, out=log)
        print(f"lab up (knd as a pod) in {time.monotonic() - t0:.1f} s")
        yield HelmLab(cfg, RestClient.from_kubeconfig(Path(state["kubeconfig"])), state)
    finally:
        print(log.getvalue())
        st = labmod.read_state(cfg) or {}
        if st.get("kubeconfig"):
            try:
                for p in labhelm.knd_pods(RestClient.from_kubeconfig(Path(st["kubeconfig"]))):
                    print(f"--- knd pod {p['metadata']['name']}: {p.get('status')}")
            except RestError as exc:
                print(f"knd pods: {exc}")
        logs = [cfg.state_dir / "gpu_driver.log"]
        logs += sorted((cfg.state_dir / "kubernetes" / "logs").glob("*.log"))
        logs += sorted((cfg.state_dir / "kubernetes").glob("run/pod-logs/kube-system_knd-*/*/*"))
        for path in logs:
            if path.is_file():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-30:])
                print(f"--- {path.name} (tail)\n{tail}")
        down = io.StringIO()
        labmod.down(cfg, out=down)
        print(down.getvalue())
    # `knd lab down` left nothing behind: no mount (the shared HostToContainer paths undone),
    # no netns, no lab process (another lab cannot run meanwhile: the root-tests lock)
    after = host_leftovers()
    assert after == before, f"left on the host by the lab: {after} (before: {before})"


def helm(lab: Lab) -> labhelm.Helm:
    h = lab.state["helm"]
    return labhelm.Helm(Path(lab.state["kubeconfig"]), Path(h["home"]), Path(h["binary"]))


def host_nics(lab: Lab) -> set[str]:
    with IPRoute() as ipr:
        return {lab.nic(i) for i in range(8) if ipr.link_lookup(ifname=lab.nic(i))}


def knd_metrics(lab: Lab) -> str:
    with urllib.request.urlopen(lab.state["metrics"] + "/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def heals(lab: Lab) -> int:
    m = re.search(r'^knd_sync_heals_total\{result="attached"\} (\S+)$', knd_metrics(lab), re.M)
    return int(float(m.group(1))) if m else 0


def knd_pod(lab: Lab) -> dict[str, Any]:
    got: dict[str, Any] = _wait(lambda: labhelm.ready_pod(lab.api), 180, "a Ready knd pod")
    return got


def has_nic(lab: Lab, p: dict[str, Any], ifname: str) -> bool:
    code, _ = labmod.pod_exec(
        lab.cfg, p, ["/bin/busybox", "test", "-e", f"/sys/class/net/{ifname}"]
    )
    return code == 0


def delete_workload(lab: Lab) -> None:
    for p in lab.api.list("Pod", "default"):
        lab.api.delete("Pod", p["metadata"]["name"], "default")
    _wait(lambda: not lab.api.list("Pod", "default"), 180, "pods deleted by the kubelet")
    for c in lab.api.list("ResourceClaim", "default"):
        lab.api.delete("ResourceClaim", c["metadata"]["name"], "default")


# -- the chart against the real API server ----------------------------------------------------
def test_rendered_chart_passes_the_real_apiservers_strict_validation(lab: Lab) -> None:
    """`helm template` (the built helm, --kube-version of the lab) of the defaults and of the lab's
    values with every knob on: each object, renamed, goes to kube-apiserver 1.37.2 as a
    dry-run create with `fieldValidation=Strict` (unknown or duplicate fields are errors)."""
    h = helm(lab)
    version = lab.api.call("GET", "/version")["gitVersion"].lstrip("v")
    knobs = Path(lab.state["helm"]["values"]).parent / "knobs.json"
    knobs.write_text(
        json.dumps(
            {
                "metricsService": {"create": True},
                "updateStrategy": {"type": "OnDelete"},
                "livenessProbe": {"enabled": True, "failureThreshold": 5},
            }
        )
    )
    checked: set[str] = set()
    for extra in ([], ["-f", lab.state["helm"]["values"], "-f", str(knobs)]):
        text = h(
            "template", "knd", str(labhelm.CHART), "-n", "kube-system",
            "--kube-version", version, *extra,
        )  # fmt: skip
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert {"DaemonSet", "ClusterRole", "Role", "DeviceClass"} <= {d["kind"] for d in docs}
        if extra:
            assert "Service" in {d["kind"] for d in docs}
        for doc in docs:
            prefix, plural, namespaced = KINDS[doc["kind"]]
            ns = doc["metadata"].get("namespace", "kube-system")
            ns = f"/namespaces/{ns}" if namespaced else ""
            # created (dry run) under a fresh name: the rendered object is validated alone (an
            # apply onto the release's live DaemonSet would merge its ports with the lab's)
            doc["metadata"]["name"] += "-strict"
            lab.api.call("POST", f"{prefix}{ns}/{plural}?dryRun=All&fieldValidation=Strict", doc)
            checked.add(doc["kind"])
    assert "DaemonSet" in checked and "ValidatingAdmissionPolicy" in checked
    # ... and the check has teeth: an unknown field is refused by the same kind of call
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    ds["metadata"]["name"] = "knd-e2e-unknown-field"
    ds["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(RestError) as err:
        lab.api.call(
            "POST",
            "/apis/apps/v1/namespaces/kube-system/daemonsets?dryRun=All&fieldValidation=Strict",
            ds,
        )
    assert err.value.code in (400, 422) and "livenessProbes" in str(err.value), err.value
    assert lab.api.get("DaemonSet", "knd-e2e-unknown-field", "kube-system") is None


# -- knd as the DaemonSet pod -----------------------------------------------------------------
def test_knd_runs_as_the_privileged_daemonset_pod_with_its_mounts(lab: Lab) -> None:
    p = knd_pod(lab)
    assert p["metadata"]["labels"]["app.kubernetes.io/name"] == "knd"
    assert p["metadata"]["namespace"] == "kube-system"
    (owner,) = p["metadata"]["ownerReferences"]
    assert owner["kind"] == "DaemonSet" and owner["name"] == "knd"
    spec = p["spec"]
    assert spec["hostNetwork"] is True and spec["nodeName"] == NODE
    (c,) = spec["containers"]
    assert c["securityContext"]["privileged"] is True
    assert c["image"] == lab.state["helm"]["image"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    kubelet_root = lab.state["kubelet_root"]
    for path in (
        f"{kubelet_root}/plugins",
        f"{kubelet_root}/plugins_registry",
        str(Path(lab.state["runtime"]["nri_socket"]).parent),
        str(Path(lab.state["helm"]["state_path"]).parent),
    ):
        assert path in mounts, path
    assert mounts[str(labhelm.netns_dir(lab.state["runtime"]))]["mountPropagation"] == (
        "HostToContainer"
    )
    # the real kubelet registered knd from inside the pod; the state file is on the host
    assert re.search(r"Registered DRA plugin.*dra\.net", kubelet_log(lab)), "no registration"
    reg = Path(kubelet_root) / "plugins_registry" / "dra.net-reg.sock"
    assert reg.is_socket()
    assert Path(lab.state["helm"]["state_path"]).is_file()
    # knd's slice was written with the pod's projected ServiceAccount token
    slices = [s for s in lab.api.list("ResourceSlice") if s["spec"]["driver"] == "dra.net"]
    managers = {m["manager"] for s in slices for m in s["metadata"].get("managedFields") or []}
    assert managers, slices
    # knd's token may read its own DaemonSet (the uninstall check) and no other
    ds_path = "/apis/apps/v1/namespaces/kube-system/daemonsets/"
    assert lab.knd_api.call("GET", ds_path + "knd")["metadata"]["name"] == "knd"
    with pytest.raises(RestError) as denied:
        lab.knd_api.call("GET", ds_path + "some-other-daemonset")
    assert denied.value.code == 403
    # liveness probe on /healthz, as the chart renders it by default
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_pod_with_a_knd_claim_gets_its_nic_from_knd_in_a_pod(lab: Lab) -> None:
    c, name = uniq("nic"), uniq("p")
    params = {"interface": {"name": "eth7", "addresses": ["192.0.2.70/24"], "mtu": 1400}}
    lab.api.create(nic_claim(c, lab.nic(0), params))
    lab.api.create(pod(lab, name, {"nic": c}))
    p = running(lab, name)
    assert "inet 192.0.2.70/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "eth7")
    assert sh(lab, p, "cat", "/sys/class/net/eth7/mtu").strip() == "1400"
    assert lab.nic(0) not in host_nics(lab)
    lab.api.delete("Pod", name, "default")
    _wait(lambda: lab.api.get("Pod", name, "default") is None, 120, "pod deleted")
    _wait(lambda: lab.nic(0) in host_nics(lab), 60, f"{lab.nic(0)} back on the host")
    lab.api.delete("ResourceClaim", c, "default")
