"""`knd lab` mechanics: bring the lab node up and down, apply manifests, report status.

The lab is real Kubernetes around knd (knd.lab.cluster: upstream etcd, kube-apiserver,
controller-manager, scheduler and kubelet from `scripts/kubernetes`, the project-local
containerd, knd as a process or as the chart's pod), tracked by PID in the state dir (default
`.local/lab/` of the checkout, `$KND_LAB_DIR` to override; 0700). Every step is idempotent:
`up` on a running lab reports it and does nothing; `down` stops what runs and removes NICs and
state, tolerating anything already gone.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from knd.api.documents import MAX_INPUT_BYTES, DocumentError, parse_documents
from knd.host.files import read_bounded
from knd.host.procfs import ProcRoot
from knd.lab import node as lab_node
from knd.lab.restapi import JSON, KINDS, RestClient, RestError

REPO = Path(__file__).resolve().parents[3]
RUNTIME_SCRIPT = Path(os.environ.get("KND_RUNTIME_SCRIPT", REPO / "scripts" / "runtime"))
RUNTIME_VERSION = "2"
DRIVER = "dra.net"
#: The daemon publishes only devices with a PCIe root: the lab NICs (the fixture's functions).
LAB_FILTER = '"pcieRoot" in device.attributes["resource.kubernetes.io"]'
APPLY_ORDER = ("DeviceClass", "ResourceSlice", "ResourceClaimTemplate", "ResourceClaim", "Pod")


class LabError(RuntimeError):
    """A lab operation failed; the message says what and where the logs are."""


@dataclass(frozen=True)
class LabConfig:
    """Where the lab keeps its state and how its pieces are named."""

    state_dir: Path = Path(os.environ.get("KND_LAB_DIR", REPO / ".local" / "lab"))
    node: str = "knd-lab"
    nic_prefix: str = "klab"
    fabric: str = "knd-lab-fabric"
    metrics_port: int = 0  # 0 = pick a free port
    containerd: str = RUNTIME_VERSION  # scripts/runtime's version key: "2" or "1.7"
    #: The API server's audit policy (knd.lab.audit); the log is `audit_log`.
    audit_policy: Path | None = None
    #: "process": `knd driver` as a process of the lab; "pod": the chart's DaemonSet pod,
    #: installed by helm from the image archive (knd.lab.helm)
    knd_as: str = "process"

    @property
    def nics(self) -> lab_node.LabNics:
        return lab_node.LabNics(self.nic_prefix, self.fabric)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int | None, marker: str) -> bool:
    if not pid:
        return False
    cmdline = ProcRoot().read_bytes(str(pid), "cmdline", limit=1 << 16)
    return cmdline is not None and marker.encode() in cmdline


def read_state(cfg: LabConfig) -> dict[str, Any] | None:
    """The running lab's state (URLs, PIDs), or None when no lab was brought up."""
    try:
        state = json.loads(read_bounded(cfg.state_file, 1 << 20))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _write_state(cfg: LabConfig, state: dict[str, Any]) -> None:
    tmp = cfg.state_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, cfg.state_file)


def _spawn(cfg: LabConfig, name: str, argv: list[str]) -> int:
    logf = open(cfg.state_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv,
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=cfg.state_dir,
    )
    logf.close()
    return proc.pid


def _wait(what: str, cond: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    where = f"; see {log}" if log else ""
    raise LabError(f"{what} not ready after {timeout:.0f} s{where}")


def runtime(*args: str) -> str:
    """Run scripts/runtime (the project-local containerd)."""
    try:
        out = subprocess.run(
            [sys.executable, str(RUNTIME_SCRIPT), *args], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as exc:
        raise LabError(f"scripts/runtime {' '.join(args)}: {exc.stderr.strip()}") from exc
    return out.stdout


def _real(state: dict[str, Any] | None) -> bool:
    return bool(state) and (state or {}).get("mode") == "real"


def _cluster() -> Any:
    from knd.lab import cluster  # noqa: PLC0415

    return cluster


def is_up(cfg: LabConfig) -> bool:
    """Every lab process of the recorded state is alive."""
    state = read_state(cfg)
    if state is None:
        return False
    return _real(state) and bool(_cluster().is_up(state, sys.modules[__name__]))


#: The command-line marker of knd's process (`knd driver`), checked before it is signalled.
DRIVER_MARKER = "driver"


#: The longest socket path below the state dir, and the kernel's limit (sun_path less its NUL).
_DEEPEST_SOCKET = Path("kubelet") / "plugins_registry" / f"{DRIVER}-reg.sock"
MAX_SOCKET_PATH = 107


def check_state_dir(cfg: LabConfig) -> None:
    """Refuse a state directory so deep that the kubelet's sockets below it cannot be bound."""
    deepest = Path(os.path.abspath(cfg.state_dir)) / _DEEPEST_SOCKET
    if len(os.fsencode(deepest)) > MAX_SOCKET_PATH:
        raise LabError(
            f"state directory {cfg.state_dir} is too deep: {deepest} is longer than the "
            f"{MAX_SOCKET_PATH} bytes a unix socket path may have; use a shorter KND_LAB_DIR"
        )


def up(
    cfg: LabConfig, out: TextIO = sys.stdout, driver_args: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Bring the lab up (idempotent); returns its state."""
    check_state_dir(cfg)
    if is_up(cfg):
        print(f"lab already up ({cfg.state_dir})", file=out)
        running = read_state(cfg)
        assert running is not None
        return running
    down(cfg, out=io.StringIO())  # leftovers of a crashed lab
    try:
        cluster = _cluster()
        try:
            state: dict[str, Any] = cluster.up(cfg, out, driver_args, sys.modules[__name__])
        except cluster.ClusterError as exc:
            raise LabError(str(exc)) from exc
        _write_state(cfg, state)
        return state
    except BaseException:
        down(cfg, out=io.StringIO())  # a failed start leaves nothing behind (logs stay)
        raise


def _kill(pid: int | None, marker: str, timeout: float = 20.0) -> None:
    if not _alive(pid, marker):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, marker):
        os.kill(pid, signal.SIGKILL)


def stop_driver(cfg: LabConfig) -> None:
    """Stop only the knd daemon (fault tests: a driver restart)."""
    state = read_state(cfg)
    if state is not None:
        _kill(state["pids"].get("driver"), DRIVER_MARKER)


def start_driver(cfg: LabConfig) -> None:
    """Start the knd daemon again with the arguments `up` used."""
    state = read_state(cfg)
    if state is None:
        raise LabError("the lab is not up")
    argv = _cluster().driver_argv(state, cfg, LAB_FILTER)
    state["pids"]["driver"] = _spawn(cfg, "driver", argv)
    _write_state(cfg, state)


def down(cfg: LabConfig, out: TextIO = sys.stdout) -> None:
    """Stop everything the lab started and remove its NICs and state (idempotent)."""
    state = read_state(cfg) or {"pids": {}}
    pids = state.get("pids") or {}
    if _real(state):
        _cluster().down(cfg, state, out, sys.modules[__name__])
    _kill(pids.get("driver"), DRIVER_MARKER)
    lab_node.delete_nics(cfg.nics)
    for name in (
        "state.json",
        "knd.db",
        "knd.db-wal",
        "knd.db-shm",
    ):
        (cfg.state_dir / name).unlink(missing_ok=True)
    if (cfg.state_dir / "sys").exists():
        lab_node._rmtree(cfg.state_dir / "sys")
    (cfg.state_dir / "helm-values.json").unlink(missing_ok=True)
    for sub in ("knd-pod", "helm"):  # knd as a pod: its state dir on the "host", helm's dirs
        if (cfg.state_dir / sub).exists():
            lab_node._rmtree(cfg.state_dir / sub)
    print("[lab] down", file=out)


def client(cfg: LabConfig) -> RestClient:
    """A REST client for the running lab's API server."""
    state = read_state(cfg)
    if state is None or not is_up(cfg):
        raise LabError("the lab is not up: run `knd lab up`")
    return RestClient.from_kubeconfig(Path(state["kubeconfig"]))


# -- apply ----------------------------------------------------------------------------------
def load_manifests(paths: list[Path]) -> list[JSON]:
    """Objects from YAML/JSON files (multi-document, `List` kinds flattened), in apply order."""
    docs: list[JSON] = []
    for p in paths:
        try:
            found = parse_documents(read_bounded(p, MAX_INPUT_BYTES), str(p))
        except OSError as exc:
            raise LabError(str(exc)) from exc
        except DocumentError as exc:
            raise LabError(str(exc)) from exc
        for d in found:
            if isinstance(d, dict) and str(d.get("kind", "")).endswith("List"):
                docs.extend(i for i in d.get("items") or [] if isinstance(i, dict))
            elif isinstance(d, dict):
                docs.append(d)
    unknown = [d.get("kind") for d in docs if d.get("kind") not in KINDS]
    if unknown:
        raise LabError(f"unsupported kinds: {unknown}")
    return sorted(
        docs, key=lambda d: APPLY_ORDER.index(d["kind"]) if d["kind"] in APPLY_ORDER else 9
    )


def apply(
    api: RestClient, docs: list[JSON], out: TextIO = sys.stdout, cfg: LabConfig | None = None
) -> list[JSON]:
    """Create each object (existing ones are left as they are); returns the pods. With the
    `cfg` of a running lab, pods are adapted to it first (knd.lab.cluster.prepare_pod)."""
    state = read_state(cfg) if cfg is not None else None
    pods = []
    for doc in docs:
        meta = doc.setdefault("metadata", {})
        if doc["kind"] == "Pod" and state is not None:
            _cluster().prepare_pod(doc, state["node"], state["runtime"]["busybox_image"])
        label = f"{doc['kind']} {meta.get('name')}"
        try:
            created = api.create(doc)
            print(f"  created   {label}", file=out)
        except RestError as exc:
            if exc.code != 409:
                raise LabError(f"{label}: {exc.message}") from exc
            created = api.get(doc["kind"], meta["name"], meta.get("namespace", "default")) or doc
            print(f"  unchanged {label}", file=out)
        if doc["kind"] == "Pod":
            pods.append(created)
    return pods


def wait_pods(
    api: RestClient, pods: list[JSON], timeout: float, out: TextIO = sys.stdout
) -> dict[str, JSON]:
    """Show each pod's progress until all run (or `timeout`); returns the last pod objects."""
    last: dict[str, str] = {}
    current: dict[str, JSON] = {}
    deadline = time.monotonic() + timeout
    while True:
        for p in pods:
            meta = p["metadata"]
            got = api.get("Pod", meta["name"], meta.get("namespace", "default"))
            if got is None:
                continue
            current[meta["name"]] = got
            st = got.get("status") or {}
            conds = [c for c in st.get("conditions") or [] if c.get("status") == "False"]
            line = st.get("phase", "Pending") + (
                f" ({conds[0]['reason']}: {conds[0].get('message', '')})" if conds else ""
            )
            if last.get(meta["name"]) != line:
                last[meta["name"]] = line
                print(f"  pod {meta['name']}: {line}", file=out)
        if (
            current
            and all((p.get("status") or {}).get("phase") == "Running" for p in current.values())
            and len(current) == len(pods)
        ):
            return current
        if time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def pod_exec(
    cfg: LabConfig, pod: JSON, cmd: list[str], container: str | None = None
) -> tuple[int, str]:
    """ExecSync in one of the pod's containers (first by default): (exit code, stdout+stderr)."""
    from knd.lab.cri import CriClient  # noqa: PLC0415

    state = read_state(cfg)
    if state is None:
        raise LabError("the lab is not up")
    cluster = _cluster()
    try:
        cid = cluster.container_id(pod, container)
    except cluster.ClusterError as exc:
        raise LabError(str(exc)) from exc
    cri = CriClient(state["runtime"]["socket"])
    try:
        r = cri.exec_sync(cid, cmd)
    finally:
        cri.close()
    return r.exit_code, r.stdout + r.stderr


def show(cfg: LabConfig, api: RestClient, pods: dict[str, JSON], out: TextIO = sys.stdout) -> None:
    """Each pod's NICs as seen inside it, then its claims' status.devices."""
    for name, pod in pods.items():
        print(f"\n== pod {name} ({(pod.get('status') or {}).get('phase')})", file=out)
        if (pod.get("status") or {}).get("phase") == "Running":
            _, text = pod_exec(cfg, pod, ["/bin/busybox", "ip", "-o", "addr", "show"])
            print("  NICs inside the pod (ip -o addr):", file=out)
            for line in text.splitlines():
                if " lo " not in line and " lo: " not in line:
                    print("    " + " ".join(line.split("\\")[0].split()), file=out)
        ns = pod["metadata"].get("namespace", "default")
        names = [
            s.get("resourceClaimName")
            for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []
        ]
        names += [
            r["resourceClaimName"]
            for r in pod["spec"].get("resourceClaims") or []
            if r.get("resourceClaimName")
        ]
        for cname in names:
            claim = api.get("ResourceClaim", cname, ns) if cname else None
            if claim is None:
                continue
            st = claim.get("status") or {}
            print(f"  claim {cname}:", file=out)
            for r in (st.get("allocation") or {}).get("devices", {}).get("results") or []:
                print(
                    f"    allocated {r['request']} -> {r['driver']}/{r['pool']}/{r['device']}",
                    file=out,
                )
            if st.get("devices"):
                text = yaml.safe_dump({"status.devices": st["devices"]}, sort_keys=False, width=100)
                print("    " + text.rstrip().replace("\n", "\n    "), file=out)


def status(cfg: LabConfig, out: TextIO = sys.stdout) -> bool:
    """Print the lab's processes, devices, pods and claims; True when up."""
    state = read_state(cfg)
    if state is None:
        print("lab: down", file=out)
        return False
    for line in _cluster().status_lines(state, sys.modules[__name__]):
        print(line, file=out)
    print(f"containerd  {state['runtime']['socket']}", file=out)
    if not is_up(cfg):
        return False
    api = client(cfg)
    print(f"API server  {state['apiserver']}; metrics {state['metrics']}/metrics", file=out)
    for s in api.list("ResourceSlice"):
        print(
            f"slice {s['metadata']['name']}: {len(s['spec'].get('devices') or [])}"
            f" {s['spec']['driver']} device(s)",
            file=out,
        )
    for p in api.list("Pod"):
        print(
            f"pod {p['metadata']['namespace']}/{p['metadata']['name']}:"
            f" {(p.get('status') or {}).get('phase', 'Pending')}",
            file=out,
        )
    for c in api.list("ResourceClaim"):
        st = c.get("status") or {}
        devs = [
            r["device"]
            for r in (st.get("allocation") or {}).get("devices", {}).get("results") or []
        ]
        users = [r["name"] for r in st.get("reservedFor") or []]
        print(
            f"claim {c['metadata']['namespace']}/{c['metadata']['name']}:"
            f" {devs or 'unallocated'} reserved for {users}",
            file=out,
        )
    return True


def status_json(cfg: LabConfig) -> dict[str, Any]:
    """The lab's state for scripts: `up`, `mode` (`real`), `kubeconfig` (admin),
    `kubernetesVersion`, `apiserver`, `node`, `kubeletRootDir`, `driverKubeconfig`, `metrics`,
    `runtime` (containerd's info), `kndAs` (`process` or `pod`; with `pod`, `helm`: release,
    namespace, image, values file, pod)."""
    state = read_state(cfg)
    if state is None:
        return {"up": False}
    out: dict[str, Any] = {
        "up": is_up(cfg),
        "mode": "real",
        "apiserver": state.get("apiserver"),
        "node": state.get("node"),
        "metrics": state.get("metrics"),
        "kubeletRootDir": state.get("kubelet_root"),
        "runtime": state.get("runtime"),
        "stateDir": str(cfg.state_dir),
        "kubeconfig": state.get("kubeconfig"),
        "kubernetesVersion": state.get("kubernetesVersion"),
        "driverKubeconfig": state.get("driver_kubeconfig"),
        "kubernetes": state.get("kubernetes"),
        "kndAs": state.get("knd_as", "process"),
    }
    if state.get("helm"):
        out["helm"] = state["helm"]
    return out
