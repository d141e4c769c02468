"""The lab on real Kubernetes: upstream control plane and kubelet around knd (docs/lab.md).

`up(cfg)` starts, tracked in the lab's state dir (knd.lab.lab.LabConfig):

1. the lab NICs and the GPU node's sysfs fixture (knd.lab.node);
2. containerd 2 (`scripts/runtime start --version 2`; `LabConfig.containerd = "1.7"` for 1.7);
3. etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet on that
   containerd (`scripts/kubernetes start`: binaries built from the k8s.io/kubernetes module);
4. from `deploy/install.yaml` (rendered from the Helm chart): the ServiceAccount, ClusterRole
   and ClusterRoleBinding of knd, its ValidatingAdmissionPolicy (+Binding) and its
   DeviceClasses (the DaemonSet is replaced by a process);
   plus the GPU driver's DeviceClass;
5. a ServiceAccount token for knd (TokenRequest bound to the lab Node, as a DaemonSet pod's token
   carries its node), written into knd's own kubeconfig: the real authorizer checks every call
   knd makes against the chart's RBAC;
6. the stand-in GPU DRA driver (knd.lab.gpu_driver, admin credentials) and `knd driver`
   (`--kubeconfig`, the kubelet's root dir, containerd's NRI socket);

or, with `knd_as="pod"` (`knd lab up --knd-as pod`), instead of 4-6's chart objects and
process: the image archive imported into containerd, the chart's `HostToContainer` host paths
made shared mount points (each change recorded in the state; `down` undoes it after containerd
stopped) and the chart `helm install`ed (knd.lab.helm), so knd is the DaemonSet's privileged pod
under the real kubelet, with the chart's RBAC, admission policy and DeviceClasses; step 5's
token is still made (tests use knd's credentials from it);

and returns when the Node is Ready and both drivers' ResourceSlices are published. `down` deletes
the pods through the API (the kubelet tears them down: NodeUnprepareResources, NRI), stops the
drivers, the cluster and containerd, and removes NICs and state; it tolerates anything gone.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from knd.lab import node as lab_node
from knd.lab.gpu_slices import GPU_DRIVER, gpu_device_class
from knd.lab.restapi import JSON, RestClient, RestError

if TYPE_CHECKING:
    from knd.lab.lab import LabConfig

REPO = Path(__file__).resolve().parents[3]
KUBERNETES_SCRIPT = REPO / "scripts" / "kubernetes"
INSTALL_YAML = REPO / "deploy" / "install.yaml"
#: knd's identity in the chart (deploy/helm/knd: ServiceAccount `knd` in `kube-system`).
KND_SA = ("kube-system", "knd")
TOKEN_SECONDS = 7 * 24 * 3600
MARKERS = {"driver": "driver", "gpu_driver": "knd.lab.gpu_driver"}


def markers(state: dict[str, Any]) -> dict[str, str]:
    """The lab's own processes (knd is none of them when it runs as a pod)."""
    if state.get("knd_as") == "pod":
        return {"gpu_driver": MARKERS["gpu_driver"]}
    return MARKERS


class ClusterError(RuntimeError):
    """A step of the real lab failed; the message names it and its log."""


def kubernetes(*args: str) -> str:
    """Run scripts/kubernetes; its last stdout line is JSON for start/status."""
    try:
        out = subprocess.run(
            [sys.executable, str(KUBERNETES_SCRIPT), *args],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise ClusterError(f"scripts/kubernetes {args[0]}: {exc.stderr.strip()[-3000:]}") from exc
    return out.stdout


def installed() -> dict[str, Any] | None:
    """scripts/kubernetes' installed versions (None when nothing is built)."""
    try:
        out: dict[str, Any] = json.loads(kubernetes("status").splitlines()[-1])
    except (ClusterError, ValueError, IndexError):
        return None
    return out if out.get("installed") else None


def chart_objects() -> list[JSON]:
    """knd's RBAC, the admission policy that confines it to its own node's ResourceSlices, and
    the DeviceClasses, from deploy/install.yaml (no DaemonSet)."""
    docs = [d for d in yaml.safe_load_all(INSTALL_YAML.read_text()) if isinstance(d, dict)]
    keep = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    keep |= {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    return [d for d in docs if d.get("kind") in (*keep, "DeviceClass")]


def create_or_keep(api: RestClient, obj: JSON) -> None:
    try:
        api.create(obj)
    except RestError as exc:
        if exc.code != 409:
            raise ClusterError(f"create {obj['kind']} {obj['metadata']['name']}: {exc}") from exc


def service_account_kubeconfig(api: RestClient, k8s: dict[str, Any], node: str, path: Path) -> None:
    """Request a token for knd's ServiceAccount bound to the Node; write a kubeconfig with it."""
    ns, name = KND_SA
    node_obj = api.get("Node", node)
    if node_obj is None:
        raise ClusterError(f"Node {node} not found")
    req = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Node",
                "name": node,
                "uid": node_obj["metadata"]["uid"],
            },
        },
    }
    try:
        resp = api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", req)
    except RestError as exc:
        raise ClusterError(f"TokenRequest for {ns}/{name}: {exc}") from exc
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {"server": k8s["server"], "certificate-authority": k8s["ca"]},
            }
        ],
        "users": [{"name": name, "user": {"token": resp["status"]["token"]}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": name}}],
        "current-context": "lab",
    }
    fd_path = path.with_suffix(".tmp")
    fd_path.write_text(json.dumps(cfg, indent=1) + "\n")
    fd_path.chmod(0o600)
    fd_path.replace(path)


def slice_devices(api: RestClient, driver: str) -> int:
    try:
        slices = api.list("ResourceSlice")
    except RestError:
        return 0
    return sum(
        len(s["spec"].get("devices") or []) for s in slices if s["spec"].get("driver") == driver
    )


def driver_argv(state: dict[str, Any], cfg: LabConfig, filter_expr: str) -> list[str]:
    info = state["runtime"]
    return [
        sys.executable, "-m", "knd.cli.main", "driver",
        "--kubeconfig", state["driver_kubeconfig"],
        "--sysfs-root", state["sysfs"],
        "--hostname-override", state["node"],
        "--filter", filter_expr,
        "--kubelet-root-dir", state["kubelet_root"],
        "--state-path", str(cfg.state_dir / "knd.db"),
        "--bind-address", state["metrics"].removeprefix("http://"),
        "--nri-socket", info["nri_socket"],
        "--nri-plugin-index", "10",
        *state.get("driver_args", []),
    ]  # fmt: skip


def up(cfg: LabConfig, out: TextIO, driver_args: tuple[str, ...], lab: Any) -> dict[str, Any]:
    """Start the real lab (see the module docstring). `lab` is knd.lab.lab (its helpers)."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cfg.state_dir.chmod(0o700)
    t0 = time.monotonic()
    if installed() is None:
        raise ClusterError("Kubernetes is not built: run `scripts/kubernetes install`")
    nics = cfg.nics
    lab_node.ensure_nics(nics)
    sysfs = lab_node.write_sysfs(cfg.state_dir / "sys", nics)
    print(f"[lab] {len(nics.names)} NICs {nics.names[0]}..{nics.names[-1]}", file=out)
    state: dict[str, Any] = {"mode": "real", "pids": {}, "runtime": {"socket": ""}}
    lab._write_state(cfg, state)
    info = json.loads(lab.runtime("start", "--version", cfg.containerd).splitlines()[-1])
    state["runtime"] = info
    lab._write_state(cfg, state)
    print(f"[lab] containerd {info['package']} ({info['socket']})", file=out)
    k8s_dir = cfg.state_dir / "kubernetes"
    state["kubernetes_dir"] = str(k8s_dir)
    lab._write_state(cfg, state)
    audit = ["--audit-policy", str(cfg.audit_policy)] if cfg.audit_policy else []
    k8s = json.loads(
        kubernetes(
            "start", "--cri-socket", info["socket"], "--node", cfg.node,
            "--state-dir", str(k8s_dir), *audit,
        ).splitlines()[-1]
    )  # fmt: skip
    print(
        f"[lab] Kubernetes v{k8s['version']} (etcd {k8s['etcd_version']}) at {k8s['server']};"
        f" node {cfg.node} Ready in {k8s['seconds']} s",
        file=out,
    )
    api = RestClient.from_kubeconfig(Path(k8s["kubeconfig"]))
    as_pod = cfg.knd_as == "pod"
    for obj in [*([] if as_pod else chart_objects()), gpu_device_class()]:
        create_or_keep(api, obj)
    metrics_port = cfg.metrics_port or lab._free_port()
    driver_kcfg = cfg.state_dir / "knd.kubeconfig"
    state.update(
        {
            "kubeconfig": k8s["kubeconfig"],
            "kubernetesVersion": f"v{k8s['version']}",
            "apiserver": k8s["server"],
            "kubernetes": k8s,
            "driver_kubeconfig": str(driver_kcfg),
            "metrics": f"http://127.0.0.1:{metrics_port}",
            "node": cfg.node,
            "kubelet_root": k8s["kubelet_root"],
            "sysfs": str(sysfs),
            "driver_args": list(driver_args),
            "audit_log": k8s.get("audit_log"),
        }
    )
    if as_pod:
        state["knd_as"] = "pod"
        lab._write_state(cfg, state)  # a failed install is still uninstalled by `down`
        state["helm"] = install_knd_pod(cfg, state, k8s, metrics_port, driver_args, lab, out)
        lab._write_state(cfg, state)
    service_account_kubeconfig(api, k8s, cfg.node, driver_kcfg)
    py = sys.executable
    state["pids"]["gpu_driver"] = lab._spawn(
        cfg, "gpu_driver",
        [py, "-m", "knd.lab.gpu_driver", "--kubeconfig", k8s["kubeconfig"],
         "--node", cfg.node, "--kubelet-root", k8s["kubelet_root"]],
    )  # fmt: skip
    if not as_pod:
        argv = driver_argv(state, cfg, lab.LAB_FILTER)
        state["pids"]["driver"] = lab._spawn(cfg, "driver", argv)
    lab._write_state(cfg, state)
    lab._wait(
        "knd's ResourceSlice (8 NICs)",
        lambda: slice_devices(api, lab.DRIVER) >= 8,
        90,
        None if as_pod else cfg.state_dir / "driver.log",
    )
    lab._wait(
        "the GPU driver's ResourceSlice",
        lambda: slice_devices(api, GPU_DRIVER) >= 8,
        30,
        cfg.state_dir / "gpu_driver.log",
    )
    where = "pod " + state["helm"]["pod"] if as_pod else "driver"
    print(f"[lab] knd {where} published 8 NICs; metrics {state['metrics']}/metrics", file=out)
    print(f"[lab] kubeconfig {k8s['kubeconfig']}", file=out)
    print(f"[lab] up in {time.monotonic() - t0:.1f} s (state {cfg.state_dir})", file=out)
    return state


def install_knd_pod(
    cfg: LabConfig,
    state: dict[str, Any],
    k8s: dict[str, Any],
    metrics_port: int,
    driver_args: tuple[str, ...],
    lab: Any,
    out: TextIO,
) -> dict[str, Any]:
    """Import the image, `helm install` the chart with the lab's values, wait for the pod."""
    from knd.lab import helm  # noqa: PLC0415

    try:
        runtime = state["runtime"]
        tag = "lab-" + helm.archive_digest().split(":", 1)[1][:12]
        ref = helm.import_image(runtime, f"{helm.IMAGE_REPOSITORY}:{tag}")
        undos: list[Any] = state.setdefault("shared_mounts", [])
        for path in (helm.netns_dir(runtime), *helm.HOST_TO_CONTAINER):
            undo = helm.share_mount(path)
            if undo is not None:
                undos.append(undo)
                lab._write_state(cfg, state)  # recorded at once: `down` undoes it
        values = helm.lab_values(
            image_ref=ref,
            kubelet_root=k8s["kubelet_root"],
            runtime=runtime,
            sysfs=state["sysfs"],
            state_path=cfg.state_dir / "knd-pod" / "state.db",
            apiserver=k8s["server"],
            metrics_port=metrics_port,
            filter_expr=lab.LAB_FILTER,
            driver_args=driver_args,
        )
        values_file = cfg.state_dir / "helm-values.json"
        values_file.write_text(json.dumps(values, indent=1) + "\n")
        h = helm.Helm(Path(k8s["kubeconfig"]), cfg.state_dir / "helm")
        t0 = time.monotonic()
        api = RestClient.from_kubeconfig(Path(k8s["kubeconfig"]))
        try:
            h.install(values_file)
        except helm.HelmError as exc:
            why = helm.diagnose(api, Path(state["kubernetes_dir"]) / "run" / "pod-logs")
            raise helm.HelmError(f"{exc}\n{why}") from exc
        pod = helm.ready_pod(api)
    except (helm.HelmError, OSError, KeyError, RestError) as exc:
        raise ClusterError(f"knd as a pod: {exc}") from exc
    if pod is None:
        raise ClusterError("knd as a pod: helm install returned but no knd pod is Ready")
    name = pod["metadata"]["name"]
    print(
        f"[lab] image {ref} imported; helm install {helm.RELEASE} ({h.bin}):"
        f" pod {helm.NAMESPACE}/{name} Ready in {time.monotonic() - t0:.1f} s",
        file=out,
    )
    return {
        "binary": h.bin,
        "home": str(cfg.state_dir / "helm"),
        "release": helm.RELEASE,
        "namespace": helm.NAMESPACE,
        "values": str(values_file),
        "image": ref,
        "pod": name,
        "state_path": values["statePath"],
    }


def uninstall_knd_pod(state: dict[str, Any], out: TextIO) -> None:
    """`helm uninstall` the lab's release, if it is still deployed."""
    from knd.lab import helm  # noqa: PLC0415

    info = state.get("helm") or {}
    try:
        h = helm.Helm(Path(state["kubeconfig"]), Path(info["home"]), Path(info["binary"]))
        if h.deployed():
            h.uninstall()
    except (helm.HelmError, KeyError, OSError) as exc:
        print(f"[lab] helm uninstall: {exc}", file=out)


def is_up(state: dict[str, Any], lab: Any) -> bool:
    if not all(lab._alive(state["pids"].get(n), m) for n, m in markers(state).items()):
        return False
    try:
        st = json.loads(
            kubernetes("status", "--state-dir", state["kubernetes_dir"]).splitlines()[-1]
        )
    except (ClusterError, ValueError, IndexError, KeyError):
        return False
    running = st.get("running") or {}
    return bool(running) and all((running.get("alive") or {}).values())


def delete_pods(state: dict[str, Any], timeout: float = 60.0) -> None:
    """Delete every pod through the API and wait for the kubelet to finish them (knd's own
    DaemonSet pod stays: it must unprepare the others; `helm uninstall` removes it after)."""

    def workload() -> list[JSON]:
        return [p for p in api.list("Pod") if p["metadata"]["namespace"] != "kube-system"]

    try:
        api = RestClient.from_kubeconfig(Path(state["kubeconfig"]))
        for p in workload() if state.get("knd_as") == "pod" else api.list("Pod"):
            api.delete("Pod", p["metadata"]["name"], p["metadata"]["namespace"])
        deadline = time.monotonic() + timeout
        while workload() and time.monotonic() < deadline:
            time.sleep(0.5)
    except (RestError, KeyError, OSError):
        return


def down(cfg: LabConfig, state: dict[str, Any], out: TextIO, lab: Any) -> None:
    """Stop the real lab (idempotent)."""
    pids = state.get("pids") or {}
    if state.get("kubeconfig") and is_up(state, lab):
        delete_pods(state)
        if state.get("knd_as") == "pod":
            uninstall_knd_pod(state, out)
    lab._kill(pids.get("driver"), MARKERS["driver"])
    lab._kill(pids.get("gpu_driver"), MARKERS["gpu_driver"])
    k8s_dir = state.get("kubernetes_dir")
    if k8s_dir:
        try:
            kubernetes("stop", "--state-dir", k8s_dir)
        except ClusterError as exc:
            print(f"[lab] {exc}", file=out)
    if (state.get("runtime") or {}).get("socket"):
        try:
            from knd.lab.cri import CriClient  # noqa: PLC0415

            cri = CriClient(state["runtime"]["socket"], timeout=10)
            cri.remove_all_pods()
            cri.close()
        except Exception as exc:
            print(f"[lab] pods: {exc}", file=out)
        try:
            lab.runtime("stop", "--version", runtime_version(state, lab))
        except lab.LabError as exc:
            print(f"[lab] {exc}", file=out)
    if state.get("shared_mounts"):  # knd as a pod: the HostToContainer paths made shared
        from knd.lab import helm  # noqa: PLC0415

        for why in helm.unshare_mounts(state["shared_mounts"]):
            print(f"[lab] mount left: {why}", file=out)
    if k8s_dir:  # again: the kubelet's cgroups are empty only once containerd's pods are gone
        try:
            kubernetes("stop", "--state-dir", k8s_dir)
        except ClusterError as exc:
            print(f"[lab] {exc}", file=io.StringIO())
    (cfg.state_dir / "knd.kubeconfig").unlink(missing_ok=True)


def runtime_version(state: dict[str, Any], lab: Any) -> str:
    """The scripts/runtime version key of the lab's containerd ("2" or "1.7")."""
    return str((state.get("runtime") or {}).get("version") or lab.RUNTIME_VERSION)


def restart(state: dict[str, Any], component: str, lab: Any) -> None:
    """Restart one piece of the running lab with pods running (fault tests, docs/lab.md):
    `containerd` (the daemon only: pods and shims keep running, as in a runtime upgrade) or a
    Kubernetes component (`scripts/kubernetes restart`: SIGTERM, same command line)."""
    if component == "containerd":
        version = runtime_version(state, lab)
        lab.runtime("stop", "--version", version, "--daemon-only")
        lab.runtime("start", "--version", version)
        return
    kubernetes("restart", component, "--state-dir", state["kubernetes_dir"])


def container_id(pod: JSON, container: str | None = None) -> str:
    """The CRI container ID of a pod's container (first by default), from the pod status."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if (container is None or cs.get("name") == container) and cs.get("containerID"):
            return str(cs["containerID"]).split("://", 1)[-1]
    raise ClusterError(f"pod {pod['metadata']['name']} has no running container")


def prepare_pod(doc: JSON, node: str, image: str) -> JSON:
    """A lab pod for the real cluster: every container runs the runtime's busybox image
    (`imagePullPolicy: Never`; the lab has no registry), and `spec.nodeName` becomes a node
    selector (a pod bound by name never meets the scheduler, so its claims would never be
    allocated)."""
    spec = doc.setdefault("spec", {})
    for c in spec.get("containers") or []:
        c["image"] = image
        c["imagePullPolicy"] = "Never"
    name = spec.pop("nodeName", None)
    if name:
        spec.setdefault("nodeSelector", {})["kubernetes.io/hostname"] = name
    spec.setdefault("terminationGracePeriodSeconds", 1)
    return doc


def status_lines(state: dict[str, Any], lab: Any) -> list[str]:
    lines = []
    if state.get("knd_as") == "pod":
        h = state.get("helm") or {}
        pod = f"{h.get('namespace')}/{h.get('pod')}"
        lines.append(f"knd         pod {pod} (helm, {h.get('image')})")
    for name, marker in markers(state).items():
        pid = state["pids"].get(name)
        lines.append(
            f"{name:11} pid {pid}: {'running' if lab._alive(pid, marker) else 'NOT RUNNING'}"
        )
    k = state.get("kubernetes") or {}
    for comp, pid in (k.get("pids") or {}).items():
        lines.append(f"{comp:11} pid {pid}")
    lines.append(f"Kubernetes  {state.get('kubernetesVersion')} {state.get('apiserver')}")
    lines.append(f"kubeconfig  {state.get('kubeconfig')}")
    return lines
