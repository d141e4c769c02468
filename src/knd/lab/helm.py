"""knd as the chart's DaemonSet pod on the real lab (`knd lab up --knd-as pod`), through helm.

The pieces, each usable on its own (the e2e upgrade/rollback/uninstall tests drive them):

* `binary()`: the helm that `scripts/kubernetes install` built from the helm.sh/helm/v4 Go module
  (cached by version outside the clone); `HelmError` when none is built.
* `Helm(kubeconfig, home)`: runs it against the lab's API server with the admin kubeconfig;
  helm's cache/config/data dirs live under `home` (the lab's state dir), never in ~.
  `install`/`upgrade`/`rollback`/`uninstall` wait (`--wait`, 5 minutes) for the DaemonSet.
* `import_image(runtime, archive, ref)`: `ctr -n k8s.io images import --index-name REF` of
  the OCI archive `scripts/image build` wrote, into the lab's containerd: the kubelet finds it
  with `imagePullPolicy: Never` (the lab has no registry).
* `share_mount(path)` / `unshare_mounts(undos)`: make one host directory a shared mount point
  (bind on itself, `--make-shared`) so that containerd accepts it for `mountPropagation:
  HostToContainer` and mounts made below it later (containerd's pod netns bind mounts)
  propagate into knd's container; and undo exactly that at `knd lab down`. The lab's host has
  a private `/` and `/dev`; a real node's are shared (systemd), where this is not needed.
* `lab_values(...)`: the chart values that fit the DaemonSet to the lab: the kubelet's root dir,
  containerd's NRI socket and netns dir, the lab's sysfs fixture, a state path under the lab's
  state dir, the API server on 127.0.0.1 (the lab runs no kube-proxy, so the `kubernetes`
  Service's ClusterIP is not routed: `KUBERNETES_SERVICE_HOST`/`_PORT` are set explicitly).

Time budget: helm itself answers in about a second; `--wait` returns when the pod is Ready
(startup probe: the kubelet registered knd), typically 10-30 s on the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from knd.lab.restapi import JSON, RestClient

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "knd"
ARCHIVE = REPO / ".local" / "image" / "knd-oci.tar"
KUBERNETES_SCRIPT = REPO / "scripts" / "kubernetes"
RELEASE = "knd"
NAMESPACE = "kube-system"
IMAGE_REPOSITORY = "localhost/knd"
#: The pods of the chart's DaemonSet carry this label (chart name, `knd.selectorLabels`).
POD_SELECTOR = "app.kubernetes.io/name=knd"
WAIT = "3m"


class HelmError(RuntimeError):
    """helm, ctr or a mount failed; the message has the command and its stderr."""


def binary() -> Path:
    """The helm scripts/kubernetes built (the newest version in its cache)."""
    out = subprocess.run(
        ["python3", str(KUBERNETES_SCRIPT), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        builds: dict[str, Any] = json.loads(out.stdout.splitlines()[-1]).get("helm") or {}
    except (ValueError, IndexError):
        builds = {}
    paths = [Path(b["path"]) for _v, b in sorted(builds.items()) if Path(b["path"]).exists()]
    if not paths:
        raise HelmError("helm is not built: run `scripts/kubernetes install`")
    return paths[-1]


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise HelmError(f"{' '.join(argv[:3])}: no answer in {timeout:.0f} s") from exc
    if out.returncode != 0:
        raise HelmError(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr.strip()[-3000:]}")
    return out.stdout


class Helm:
    """helm against one cluster (admin kubeconfig), with its own dirs under `home`."""

    def __init__(self, kubeconfig: Path, home: Path, binary_path: Path | None = None) -> None:
        self.bin = str(binary_path or binary())
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str, timeout: float = 600) -> str:
        return _run([self.bin, *args], self.env, timeout)

    def install(self, values: Path, *extra: str) -> str:
        return self(
            "install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values),
            "--wait", "--timeout", WAIT, *extra,
        )  # fmt: skip

    def upgrade(self, values: Path, *extra: str) -> str:
        return self(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values),
            "--wait", "--timeout", WAIT, *extra,
        )  # fmt: skip

    def rollback(self, revision: int) -> str:
        return self(
            "rollback", RELEASE, str(revision), "-n", NAMESPACE, "--wait", "--timeout", WAIT
        )

    def uninstall(self) -> str:
        return self("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", WAIT)

    def history(self) -> list[JSON]:
        out: list[JSON] = json.loads(self("history", RELEASE, "-n", NAMESPACE, "-o", "json"))
        return out

    def deployed(self) -> bool:
        try:
            return any(h.get("status") == "deployed" for h in self.history())
        except HelmError:
            return False


def archive_digest(archive: Path = ARCHIVE) -> str:
    """The manifest digest of the OCI archive (its index.json), e.g. `sha256:...`."""
    import tarfile  # noqa: PLC0415

    with tarfile.open(archive) as tar:
        f = tar.extractfile("./index.json")
        if f is None:
            raise HelmError(f"{archive}: no index.json")
        index = json.loads(f.read(1 << 20))
    return str(index["manifests"][0]["digest"])


def import_image(runtime: dict[str, Any], ref: str, archive: Path = ARCHIVE) -> str:
    """Import the archive into containerd's k8s.io namespace under `ref`; returns `ref`.

    `ctr images import` also names the image after the archive's ref annotation (`knd`),
    prefixed by `--base-name`; its default prefix (`import-<date>:knd`) is a name the CRI
    normalizes to `docker.io/library/import-<date>:knd`, does not find, and then fails every
    container of the image ("failed to get image"). So the prefix is the repository of `ref`
    (`localhost/knd:knd`, a name that normalizes to itself)."""
    if not archive.exists():
        raise HelmError(f"{archive} not built: run `scripts/image build`")
    ctr = [runtime["ctr"], "-a", runtime["socket"], "-n", "k8s.io"]
    repo = ref.rsplit(":", 1)[0]
    _run(
        [*ctr, "images", "import", "--base-name", repo, "--index-name", ref, str(archive)],
        timeout=300,
    )
    names = _run([*ctr, "images", "ls", "-q"]).split()
    if ref not in names:
        raise HelmError(f"ctr imported {archive} but no image {ref}: {names}")
    return ref


def _mounts() -> dict[str, str]:
    """Mount point -> its optional fields ("shared:N", "master:N", or "" for private); the last
    mount stacked on a path wins, as the kernel resolves it."""
    from knd.host.procfs import ProcRoot  # noqa: PLC0415

    text = ProcRoot().read("self", "mountinfo", limit=16 << 20) or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields:
            continue
        point = fields[4].encode().decode("unicode_escape")
        out[point] = " ".join(fields[6 : fields.index("-")])
    return out


def _propagating(optional: str) -> bool:
    return "shared:" in optional or "master:" in optional


def share_mount(path: Path) -> JSON | None:
    """Make `path` a shared mount point, touching nothing else; returns what to undo (None when
    it already propagates). Three cases, each undone by `unshare_mounts`:

    * not a mount point (`/dev/infiniband` on the host's private `/dev`): bound on itself and
      made shared -> `{"path", "umount": true}`;
    * its own private mount point: made shared -> `{"path", "private": true}`;
    * already shared or a slave (`/run/netns` after any `ip netns add`): left as it is.

    A directory it had to create is removed again (`"rmdir": true`). The path is resolved first
    (`/var/run` is a link to `/run`): binding a mount point again on itself would stack a second
    mount, and `ip netns del` then fails with EBUSY on every netns below it."""
    undo: JSON = {}
    if not path.exists():
        path.mkdir(parents=True)
        undo["rmdir"] = True
    path = path.resolve()
    undo["path"] = str(path)
    optional = _mounts().get(str(path))
    if optional is None:
        _run(["mount", "--bind", str(path), str(path)])
        undo["umount"] = True
        _run(["mount", "--make-shared", str(path)])
    elif not _propagating(optional):
        _run(["mount", "--make-shared", str(path)])
        undo["private"] = True
    return undo if len(undo) > 1 else None


def unshare_mounts(undos: list[JSON]) -> list[str]:
    """Undo `share_mount` records, last first; returns what could not be undone (each also
    tried lazily: a mount still referenced by a dying container detaches rather than stays)."""
    left: list[str] = []
    for undo in reversed(undos):
        path = Path(undo["path"])
        mounts = _mounts()
        try:
            if undo.get("umount") and str(path) in mounts:
                out = subprocess.run(["umount", str(path)], capture_output=True, check=False)
                if out.returncode != 0:
                    _run(["umount", "-l", str(path)])
            elif undo.get("private") and str(path) in mounts:
                _run(["mount", "--make-private", str(path)])
            if undo.get("rmdir") and path.is_dir() and str(path) not in _mounts():
                path.rmdir()
        except (HelmError, OSError) as exc:
            left.append(f"{path}: {exc}")
    return left


#: The chart's hostPath volumes mounted `HostToContainer` (containerd refuses such a mount
#: unless its host path is on a shared or slave mount: "is mounted on /dev but it is not a
#: shared or slave mount"). A systemd node's `/` is shared; this lab host's `/` and `/dev` are
#: private, so the lab makes exactly these mount points shared for its lifetime (`share_mount`)
#: and undoes it at `knd lab down`, rather than changing the propagation of `/` or `/dev`.
HOST_TO_CONTAINER = (Path("/var/run/netns"), Path("/dev/infiniband"), Path("/sys/fs/bpf"))


def netns_dir(runtime: dict[str, Any]) -> Path:
    """Where the lab's containerd bind-mounts pod network namespaces
    (`netns_mounts_under_state_dir`: below the CRI plugin's state dir)."""
    return Path(runtime["state"]) / "io.containerd.grpc.v1.cri" / "netns"


def lab_values(
    *,
    image_ref: str,
    kubelet_root: str,
    runtime: dict[str, Any],
    sysfs: str,
    state_path: Path,
    apiserver: str,
    metrics_port: int,
    filter_expr: str,
    driver_args: tuple[str, ...] = (),
) -> JSON:
    """Chart values for the lab (module docstring). Every path is the same inside and out."""
    repo, tag = image_ref.rsplit(":", 1)
    host, port = apiserver.removeprefix("https://").rsplit(":", 1)
    netns = str(netns_dir(runtime))
    return {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "kubeletRootDir": kubelet_root,
        "statePath": str(state_path),
        "nriSocket": runtime["nri_socket"],
        "nriPluginIndex": "10",
        "metricsPort": metrics_port,
        "args": {"filter": filter_expr},
        "extraArgs": [f"--sysfs-root={sysfs}", *driver_args],
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": port},
        ],
        "extraVolumes": [
            {"name": "lab-sysfs", "hostPath": {"path": sysfs, "type": "Directory"}},
            {"name": "lab-netns", "hostPath": {"path": netns, "type": "Directory"}},
        ],
        "extraVolumeMounts": [
            {"name": "lab-sysfs", "mountPath": sysfs, "readOnly": True},
            {"name": "lab-netns", "mountPath": netns, "mountPropagation": "HostToContainer"},
        ],
    }


def knd_pods(api: RestClient) -> list[JSON]:
    """The chart's DaemonSet pods (label app.kubernetes.io/name=knd) in kube-system."""
    out: list[JSON] = (
        api.call("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={POD_SELECTOR}").get(
            "items"
        )
        or []
    )
    return out


def ready_pod(api: RestClient) -> JSON | None:
    """The one knd pod that runs and is Ready (not terminating), or None."""
    for p in knd_pods(api):
        if p["metadata"].get("deletionTimestamp"):
            continue
        conds = (p.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            return p
    return None


def diagnose(api: RestClient, pod_logs: Path) -> str:
    """Why the knd pod is not Ready: its status, its Events and the tail of its log."""
    lines: list[str] = []
    try:
        for p in knd_pods(api):
            name = p["metadata"]["name"]
            st = p.get("status") or {}
            lines.append(f"pod {name}: phase {st.get('phase')}")
            for cs in st.get("containerStatuses") or []:
                lines.append(f"  {cs['name']}: state {cs.get('state')} last {cs.get('lastState')}")
            evs = api.call("GET", f"/api/v1/namespaces/{NAMESPACE}/events").get("items") or []
            for ev in evs:
                if (ev.get("involvedObject") or {}).get("name") == name:
                    lines.append(f"  event {ev.get('reason')}: {ev.get('message')}")
    except Exception as exc:  # diagnostics never hide the original error
        lines.append(f"(pods: {exc!r})")
    for log in sorted(pod_logs.glob(f"{NAMESPACE}_knd-*/*/*.log"))[-2:]:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        lines.append(f"--- {log}")
        lines.extend(tail)
    return "\n".join(lines)
