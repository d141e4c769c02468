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
import threading
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
    _pod_skip_reason,
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
    # a zombie (stat Z: killed, not yet reaped by its parent) holds nothing but its pid
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=False)
    lab_procs = ("containerd", "kubelet", "kube-apiserver", "etcd", "knd driver", "gpu_driver")
    procs = [line.strip().partition(" ") for line in ps.stdout.splitlines()]
    return {
        "mounts": sorted(labhelm._mounts()),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "procs": sorted(
            a.strip()
            for st, _, a in procs
            if not st.startswith("Z") and any(w in a for w in lab_procs) and "ps -eo" not in a
        ),
    }


def _skip_reason() -> str | None:
    return _k8s_skip_reason() or _pod_skip_reason()


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


# -- upgrade and rollback with pods running and starting ---------------------------------------
class Churn:
    """Pods with NICs created one after another while knd is replaced (`nics`), one more
    (`gap_nic`) created the moment the old knd pod is seen terminating or gone, and a watcher
    that records every pod seen Running without its NIC (it must be healed, not left so)."""

    def __init__(self, lab: Lab, nics: list[int], tag: str, old_uid: str, gap_nic: int) -> None:
        self.lab, self.nics, self.tag = lab, nics, tag
        self.old_uid, self.gap_nic = old_uid, gap_nic
        self.pods: dict[str, str] = {}  # pod name -> interface name inside
        self.no_knd_ready: list[str] = []  # pods created while no knd pod was Ready
        self.seen_without: set[str] = set()
        self.errors: list[str] = []
        self.exec_errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._create, daemon=True),
            threading.Thread(target=self._gap, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]

    def _one(self, api: RestClient, i: int) -> None:
        c, name, ifname = uniq(f"{self.tag}c"), uniq(f"{self.tag}p"), f"net{i}"
        try:
            api.create(nic_claim(c, self.lab.nic(i), {"interface": {"name": ifname}}))
            api.create(pod(self.lab, name, {"nic": c}))
            self.pods[name] = ifname
            if labhelm.ready_pod(api) is None:
                self.no_knd_ready.append(name)
        except RestError as exc:
            self.errors.append(f"create {name}: {exc}")

    def _gap(self) -> None:
        api = RestClient.from_kubeconfig(Path(self.lab.state["kubeconfig"]))
        while not self._stop.wait(0.1):
            old = [p for p in labhelm.knd_pods(api) if p["metadata"]["uid"] == self.old_uid]
            if not old or old[0]["metadata"].get("deletionTimestamp"):
                self._one(api, self.gap_nic)
                return

    def __enter__(self) -> Churn:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _create(self) -> None:
        api = RestClient.from_kubeconfig(Path(self.lab.state["kubeconfig"]))
        for n, i in enumerate(self.nics):
            if self._stop.wait(1.5 if n else 0.2):
                return
            self._one(api, i)

    def _watch(self) -> None:
        api = RestClient.from_kubeconfig(Path(self.lab.state["kubeconfig"]))
        while not self._stop.wait(0.3):
            for name, ifname in list(self.pods.items()):
                try:
                    p = api.get("Pod", name, "default")
                    phase = ((p or {}).get("status") or {}).get("phase")
                    if p and phase == "Running" and not has_nic(self.lab, p, ifname):
                        self.seen_without.add(name)
                except Exception as exc:  # a pod changing under us: looked at again next round
                    self.exec_errors.append(f"{name}: {exc!r}")


def _replace_knd(lab: Lab, action: Any, tag: str, nics: list[int], gap_nic: int) -> dict[str, Any]:
    """Run `action` (a helm upgrade/rollback) with a running pod holding NIC 7 and new pods
    being created on `nics` and, as the old knd pod goes, on `gap_nic` (Churn); then check that
    every pod has its NIC and nothing went unnoticed."""
    keep_c, keep = uniq("keepc"), uniq("keep")
    lab.api.create(
        nic_claim(
            keep_c, lab.nic(7), {"interface": {"name": "keep0", "addresses": ["192.0.2.77/24"]}}
        )
    )
    lab.api.create(pod(lab, keep, {"nic": keep_c}))
    kp = running(lab, keep)
    old = knd_pod(lab)
    t0 = time.monotonic()
    with Churn(lab, nics, tag, old["metadata"]["uid"], gap_nic) as churn:
        action()
        new = knd_pod(lab)
        _wait(lambda: len(churn.pods) == len(nics) + 1, 120, "every churn pod created")
        for name in list(churn.pods):
            running(lab, name, timeout=180)
        time.sleep(1.0)  # one more round of the watcher over the now-running pods
    took = time.monotonic() - t0
    assert not churn.errors, churn.errors
    assert new["metadata"]["uid"] != old["metadata"]["uid"], "knd's pod was not replaced"
    # every pod runs with its NIC now (a pod seen without it was healed by the new knd)
    for name, ifname in churn.pods.items():
        p = lab.api.get("Pod", name, "default")
        assert p is not None and has_nic(lab, p, ifname), (name, ifname)
    healed = heals(lab)
    assert len(churn.seen_without) <= healed, (
        f"pods seen running without their NIC {sorted(churn.seen_without)}, but the new knd"
        f" healed only {healed}"
    )
    # the pod that ran through the replacement kept its NIC and its address
    assert "inet 192.0.2.77/24" in sh(lab, kp, "ip", "-o", "addr", "show", "dev", "keep0")
    assert lab.api.get("Pod", keep, "default")["status"]["phase"] == "Running"  # type: ignore[index]
    for i in [7, gap_nic, *nics]:
        assert lab.nic(i) not in host_nics(lab)
    delete_workload(lab)
    _wait(lambda: host_nics(lab) == {lab.nic(i) for i in range(8)}, 90, "every NIC home")
    print(f"exec errors while watching (pods changing): {churn.exec_errors[:5]}")
    return {
        "seconds": round(took, 1),
        "seen_without": len(churn.seen_without),
        "healed": healed,
        "created_while_no_knd_ready": len(churn.no_knd_ready),
        "new_pod": new,
    }


def test_helm_upgrade_to_a_new_image_with_pods_running_and_starting(lab: Lab) -> None:
    h = helm(lab)
    ref = labhelm.import_image(lab.state["runtime"], f"{labhelm.IMAGE_REPOSITORY}:upgrade-e2e")
    values = lab.state["helm"]["values"]
    out = _replace_knd(
        lab,
        lambda: h.upgrade(Path(values), "--set", "image.tag=upgrade-e2e"),
        "up",
        [1, 2, 3, 4],
        5,
    )
    print(f"upgrade: {dict(out, new_pod=out['new_pod']['metadata']['name'])}")
    assert out["new_pod"]["spec"]["containers"][0]["image"] == ref
    hist = h.history()
    assert [r["status"] for r in hist][-2:] == ["superseded", "deployed"]


def test_helm_rollback_with_pods_running_and_starting(lab: Lab) -> None:
    h = helm(lab)
    first = h.history()[0]["revision"]
    out = _replace_knd(lab, lambda: h.rollback(first), "rb", [2, 3, 5], 6)
    print(f"rollback: {dict(out, new_pod=out['new_pod']['metadata']['name'])}")
    assert out["new_pod"]["spec"]["containers"][0]["image"] == lab.state["helm"]["image"]
    assert h.history()[-1]["status"] == "deployed"
    assert "Rollback" in h.history()[-1].get("description", "")


# -- uninstall (last: it removes knd) ---------------------------------------------------------
def knd_sockets(lab: Lab) -> list[str]:
    """knd's unix sockets on the node: the DRA service and the kubelet registration."""
    root = Path(lab.state["kubelet_root"])
    return sorted(str(p) for p in root.rglob("*") if p.is_socket() and "dra.net" in str(p))


def test_helm_uninstall_leaves_no_sockets_or_state_and_running_pods_keep_their_nics(
    lab: Lab,
) -> None:
    h = helm(lab)
    values = Path(lab.state["helm"]["values"])
    state_path = Path(lab.state["helm"]["state_path"])
    assert knd_sockets(lab), "knd serves the kubelet before the uninstall"
    # 1. a pod holds a NIC: the uninstall leaves the NIC in the pod, and the state it needs
    c, name = uniq("unc"), uniq("unp")
    params = {"interface": {"name": "u0", "addresses": ["192.0.2.66/24"]}}
    lab.api.create(nic_claim(c, lab.nic(6), params))
    lab.api.create(pod(lab, name, {"nic": c}))
    p = running(lab, name)
    h.uninstall()
    _wait(lambda: not labhelm.knd_pods(lab.api), 120, "knd's pod gone")
    assert lab.api.get("DaemonSet", "knd", "kube-system") is None
    assert knd_sockets(lab) == []
    assert state_path.is_file(), "the state of the pod holding a NIC was removed"
    assert "inet 192.0.2.66/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "u0")
    assert lab.nic(6) not in host_nics(lab)
    # 2. installed again, knd finds that pod in its state: deleting it gives the NIC back
    h.install(values)
    knd_pod(lab)
    lab.api.delete("Pod", name, "default")
    _wait(lambda: lab.api.get("Pod", name, "default") is None, 120, "pod deleted")
    _wait(lambda: lab.nic(6) in host_nics(lab), 60, f"{lab.nic(6)} back on the host")
    lab.api.delete("ResourceClaim", c, "default")
    # 3. nothing holds a NIC: the uninstall removes the sockets and every state file
    h.uninstall()
    _wait(lambda: not labhelm.knd_pods(lab.api), 120, "knd's pod gone")
    assert knd_sockets(lab) == []
    left = sorted(str(x) for x in state_path.parent.rglob("*"))
    assert left == [], f"state left on the node after uninstall: {left}"
    assert host_nics(lab) == {lab.nic(i) for i in range(8)}
