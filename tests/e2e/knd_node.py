"""A node for restart/fault tests: `knd driver` as a real subprocess (kill -9 and restart it)
against the API server emulator, the kubelet emulator, and the project-local containerd.

Emulated: the API server (knd.lab.apiserver) and the kubelet (knd.lab.kubelet). Real: the
daemon process, containerd + runc + CNI, pod network namespaces, veth stand-in NICs, the DRA
gRPC and NRI ttrpc wire. Observations come from outside the daemon only: its stdout log, its
/metrics and /readyz, the SQLite store (read-only), netlink in the host and the pod netns.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pyroute2 import IPRoute

from knd.api.names import interface_device_name
from knd.lab.apiserver import CLAIMS, ApiServerEmulator
from knd.lab.cri import CriClient, PodSpec
from knd.lab.kubelet import KubeletEmulator
from knd.netns.fabric import delete_host_links
from tests.step_faults import PauseBefore

KND = str(Path(sys.executable).parent / "knd")
ROOT = Path(__file__).resolve().parents[2]
DRIVER = "dra.net"
NODE = "knd-fault-node"
HOST_ADDR = "10.98.0.1/24"
POD_IF = "net1"
POD_ADDR = "192.0.2.20/24"
POD_MTU = 1450
PARAMS = {"interface": {"name": POD_IF, "addresses": [POD_ADDR], "mtu": POD_MTU}}
T = TypeVar("T")
_seq = itertools.count()


def wait_for(cond: Callable[[], T], timeout: float = 15.0, step: float = 0.05) -> T:
    """Poll `cond` until it is truthy; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaemonProcess:
    """One `knd driver` process; its combined output is kept in memory and in a log file."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        pause: PauseBefore | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.lines: list[str] = []
        self._cond = threading.Condition()
        command = [KND, "driver"]
        if pause is not None:  # the same daemon through the test's entry point (knd_paused)
            command = [
                sys.executable,
                "-m",
                "tests.e2e.knd_paused",
                str(pause.step),
                str(pause.seconds),
            ]
            env = {**env, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [*command, *args, "--bind-address", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("a") as log:
            for line in self.proc.stdout:
                log.write(line)
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()

    def wait_line(self, needle: str, timeout: float = 15.0, start: int = 0) -> str | None:
        """The first output line (from index `start`) containing `needle`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(left, 0.2))

    def get(self, path: str) -> tuple[int | None, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    def metric(self, name: str, *labels: str) -> float:
        """Sum of the /metrics samples of `name` whose labels contain every `labels` item
        (like `method="RunPodSandbox"`); 0 when absent."""
        body = self.get("/metrics")[1]
        total = 0.0
        for line in body.splitlines():
            if line.startswith(name) and all(label in line for label in labels):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == name:
                    total += float(value)
        return total

    def ready(self, timeout: float = 30.0) -> bool:
        return bool(wait_for(lambda: self.get("/readyz")[0] == 200, timeout, 0.1))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


@dataclass
class Nic:
    host: str
    peer: str

    @property
    def device(self) -> str:
        return interface_device_name(self.host)


@dataclass
class Pod:
    spec: PodSpec
    claim: dict[str, Any]
    nic: Nic
    sandbox: str = ""
    netns: str | None = None

    @property
    def ref(self) -> tuple[str, str, str]:
        m = self.claim["metadata"]
        return (m["namespace"], m["uid"], m["name"])


@dataclass
class FaultNode:
    """The emulators, the runtime's sockets and one `knd driver` at a time."""

    runtime: dict[str, Any]
    tmp: Path
    prefix: str
    api: ApiServerEmulator = field(init=False)
    kubelet: KubeletEmulator = field(init=False)
    cri: CriClient = field(init=False)
    daemon: DaemonProcess | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: the attach pause of the running daemon (kill point (b)), or None
    pause: PauseBefore | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.api = ApiServerEmulator().start()
        self.api.add_node(NODE)
        self.kroot = self.tmp / "kubelet"
        self.kroot.mkdir(parents=True, exist_ok=True)
        self.state = self.tmp / "state" / "state.db"
        self.kubelet = KubeletEmulator(self.kroot).start()
        self.cri = CriClient(self.runtime["socket"])
        self.nics: list[Nic] = []

    # -- the daemon ------------------------------------------------------------------------
    def start_daemon(
        self,
        env: dict[str, str] | None = None,
        ready: bool = True,
        pause: PauseBefore | None = None,
    ) -> DaemonProcess:
        """Start `knd driver` (with `pause`: one that pauses before an attach step)."""
        assert self.daemon is None or self.daemon.proc.poll() is not None
        self.kubelet.forget(DRIVER)
        args = [
            "--apiserver",
            self.api.url,
            "--hostname-override",
            NODE,
            "--kubelet-root-dir",
            str(self.kroot),
            "--state-path",
            str(self.state),
            "--nri-socket",
            self.runtime["nri_socket"],
            "--nri-plugin-index",
            "30",
            "--filter",
            # Publish only the node's "published" NICs (pub*): per-run stand-ins need no slice
            # (prepare reads the host, not the slice), and each publish is schema-validated.
            f'device.attributes["dra.net"].ifName.startsWith("{self.prefix}pub")',
            "--shutdown-grace-period",
            "2",
            "--inventory-min-poll-interval",
            "0.2",
        ]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("KND_")}
        full_env.update(env or {})
        self.env = dict(env or {})
        self.pause = pause
        self.starts += 1
        self.daemon = DaemonProcess(args, full_env, self.tmp / "daemon.log", pause)
        if ready:
            assert self.daemon.ready(), self.daemon.output()[-4000:]
            self.kubelet.wait_registered(DRIVER)
        return self.daemon

    def kill_daemon(self) -> None:
        assert self.daemon is not None
        self.daemon.kill9()

    def close(self) -> None:
        try:
            if self.daemon is not None and self.daemon.proc.poll() is None:
                self.daemon.kill9()
            self.cri.remove_all_pods()
        finally:
            self.cri.close()
            self.kubelet.stop()
            self.api.stop()
            for nic in self.nics:
                delete_nic(nic)

    # -- NICs, claims, pods ----------------------------------------------------------------
    def new_nic(self, published: bool = False) -> Nic:
        n = next(_seq)
        stem = f"{self.prefix}pub" if published else self.prefix
        nic = Nic(f"{stem}{n}h", f"{self.prefix}{n}p")
        with IPRoute() as ipr:
            ipr.link("add", ifname=nic.host, kind="veth", peer={"ifname": nic.peer})
            idx = ipr.link_lookup(ifname=nic.host)[0]
            ipr.link("set", index=idx, mtu=1500, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname=nic.peer)[0], state="up")
            addr, plen = HOST_ADDR.split("/")
            ipr.addr("add", index=idx, address=addr, prefixlen=int(plen))
        self.nics.append(nic)
        return nic

    def new_pod(self, nic: Nic | None = None) -> Pod:
        nic = nic or self.new_nic()
        spec = PodSpec(f"kf-{uuid.uuid4().hex[:8]}", uid=str(uuid.uuid4()))
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": f"c-{spec.name}", "namespace": "default"},
            "spec": {
                "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": DRIVER}}]}
            },
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": "nic", "driver": DRIVER, "pool": NODE, "device": nic.device}
                        ],
                        "config": [
                            {
                                "source": "FromClaim",
                                "opaque": {"driver": DRIVER, "parameters": PARAMS},
                            }
                        ],
                    },
                    "nodeSelector": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {"key": "metadata.name", "operator": "In", "values": [NODE]}
                                ]
                            }
                        ]
                    },
                },
                "reservedFor": [{"resource": "pods", "name": spec.name, "uid": spec.uid}],
            },
        }
        claim = self.api.store.create(CLAIMS, "default", body)
        return Pod(spec, claim, nic)

    def prepare(self, pod: Pod) -> None:
        resp = self.kubelet.prepare(DRIVER, [pod.ref])
        assert resp.claims[pod.ref[1]].error == "", resp

    def unprepare(self, pod: Pod) -> None:
        resp = self.kubelet.unprepare(DRIVER, [pod.ref])
        assert resp.claims[pod.ref[1]].error == "", resp

    def run_pod(self, pod: Pod) -> str:
        pod.sandbox = self.cri.run_pod(pod.spec)
        pod.netns = self.cri.pod_netns(pod.sandbox)
        return pod.sandbox

    def delete_pod(self, pod: Pod) -> None:
        if pod.sandbox:
            self.cri.stop_pod(pod.sandbox)
            self.cri.remove_pod(pod.sandbox)

    def forget_nic(self, nic: Nic) -> None:
        delete_nic(nic)
        if nic in self.nics:
            self.nics.remove(nic)

    def claim_ready(self, pod: Pod) -> dict[str, Any] | None:
        """The `Ready` condition of our device in the claim's status, if written."""
        ns, _, name = pod.ref
        got = self.api.store.get(CLAIMS, ns, name)
        for entry in (got.get("status") or {}).get("devices") or []:
            if entry.get("driver") == DRIVER and entry.get("device") == pod.nic.device:
                for cond in entry.get("conditions") or []:
                    if cond["type"] == "Ready":
                        return dict(cond)
        return None

    # -- the store, read from outside ------------------------------------------------------
    def store_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        db = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=10)
        try:
            return {
                "claims": db.execute("SELECT uid, pod_uid FROM claims").fetchall(),
                "pods": db.execute("SELECT uid, netns FROM pods").fetchall(),
                "plans": db.execute("SELECT claim_uid, device FROM plans").fetchall(),
                "devices": db.execute("SELECT device, claim_uid FROM devices").fetchall(),
            }
        finally:
            db.close()

    def store_mismatches(self) -> list[str]:
        """Where the store disagrees with reality: a recorded netns that no longer exists, a
        plan without its claim or a device row without a plan."""
        rows = self.store_rows()
        problems = []
        for uid, netns in rows["pods"]:
            if netns and not os.path.exists(netns):
                problems.append(f"pod {uid}: recorded netns {netns} does not exist")
        claims = {c for c, _ in rows["claims"]}
        plans = {(c, d) for c, d in rows["plans"]}
        for c, d in plans:
            if c not in claims:
                problems.append(f"plan {d} of unknown claim {c}")
        for d, c in rows["devices"]:
            if (c, d) not in plans:
                problems.append(f"device {d} of claim {c} without a plan")
        return problems


# -- netlink observations ------------------------------------------------------------------
def host_state(name: str) -> dict[str, Any] | None:
    """A host interface's MTU, admin state and IPv4 addresses; None when absent."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        addrs = sorted(
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0], family=2)
        )
        return {"mtu": link.get("IFLA_MTU"), "up": bool(link["flags"] & 1), "addrs": addrs}


HOST_STATE = {"mtu": 1500, "up": True, "addrs": [HOST_ADDR]}


def pod_nic(netns: str | None, name: str = POD_IF) -> dict[str, Any] | None:
    """The interface `name` inside a netns (MTU, up, IPv4 addresses), via `ip -j` in nsenter."""
    if not netns or not os.path.exists(netns):
        return None
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-j", "addr", "show", "dev", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or not out.stdout.strip():
        return None
    (link,) = json.loads(out.stdout)
    addrs = sorted(
        f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a["family"] == "inet"
    )
    return {"mtu": link["mtu"], "up": "UP" in link["flags"], "addrs": addrs}


POD_STATE = {"mtu": POD_MTU, "up": True, "addrs": [POD_ADDR]}


def delete_nic(nic: Nic) -> None:
    delete_host_links((nic.host, nic.peer))


def leftovers(kroot: Path) -> list[str]:
    """Sockets left under the kubelet root (after a clean stop there must be none)."""
    return [str(p) for p in kroot.rglob("*") if p.is_socket()]


def iter_lines(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)
