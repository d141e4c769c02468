"""The lab controller: scheduler emulator + kubelet emulator for the lab node (EMULATED).

One process (`python -m knd.lab.controller --state-dir DIR`) that does, for pods bound to the lab
node in the API server emulator, what kube-scheduler's DRA plugin, the resourceclaim controller
and the kubelet do:

1. claims from templates: `<pod>-<claim>-<5 chars>`, ownerReference to the pod, annotation
   `resource.kubernetes.io/pod-claim-name`, recorded in `pod.status.resourceClaimStatuses`;
2. allocation (knd.lab.allocator, serialised): `status.allocation` and `status.reservedFor`
   written through the API; an unsatisfiable claim leaves the pod Pending with a
   `PodScheduled=False/Unschedulable` condition that quotes the blocker (retried every 1 s);
3. kubelet order: NodePrepareResources (per registered driver; claims of drivers with no
   kubelet plugin on the node — the emulated GPU driver — are skipped), RunPodSandbox,
   CreateContainer + StartContainer per container, pod status `Running`; a sandbox failure is
   an Event `FailedCreatePodSandBox` + condition, retried with backoff (2 s doubling to 30 s);
4. on pod deletion (pods are deleted at once: no graceful deletion in the emulator): StopContainer
   each, StopPodSandbox, NodeUnprepareResources (retried until the driver answers, as kubelet
   does across a driver restart), RemoveContainer, RemovePodSandbox, then the claim is released:
   the pod leaves `reservedFor`, an unreserved claim is deallocated, template claims are deleted.

Liberties: the controller watches Pods and also resyncs every 250 ms (it lists pods, claims,
slices and classes rather than keeping informer caches); one node; images are all mapped
to the runtime's busybox; containers run `command + args` (default: sleep). Pod annotations
`lab.knd.dev/sandbox-id`, `lab.knd.dev/containers` (JSON name→id) and
`lab.knd.dev/sandbox-ready` (unix time when RunPodSandbox returned) let `knd lab` exec into pods
and bench/paper.py measure start-up latency. Lab NICs that vanished with a deleted pod netns are
re-created (knd.lab.node.ensure_nics).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from knd.lab.allocator import AllocationError, Allocator
from knd.lab.celenv import SelectorError
from knd.lab.cri import CriClient, PodSpec
from knd.lab.kubelet import KubeletEmulator
from knd.lab.restapi import JSON, RestClient, RestError

log = logging.getLogger("knd.lab.controller")

ANN_SANDBOX = "lab.knd.dev/sandbox-id"
ANN_CONTAINERS = "lab.knd.dev/containers"
ANN_READY = "lab.knd.dev/sandbox-ready"
POD_CLAIM_NAME = "resource.kubernetes.io/pod-claim-name"
DEFAULT_COMMAND = ["/bin/busybox", "sleep", "1000000"]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunningPod:
    """What the kubelet emulator knows of a pod it started."""

    uid: str
    name: str
    namespace: str
    sandbox: str = ""
    containers: dict[str, str] = field(default_factory=dict)
    claims: list[tuple[str, str, str]] = field(default_factory=list)  # (ns, uid, name)
    template_claims: list[str] = field(default_factory=list)
    drivers: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)


@dataclass
class Controller:
    """Scheduler + kubelet emulator for one node (see the module docstring)."""

    api: RestClient
    cri: CriClient
    kubelet: KubeletEmulator
    node: str
    image: str
    repair_nics: Callable[[], None] | None = None
    workers: int = 8
    running: dict[str, RunningPod] = field(default_factory=dict)
    _busy: set[str] = field(default_factory=set)
    _retry_at: dict[str, float] = field(default_factory=dict)
    _backoff: dict[str, float] = field(default_factory=dict)
    _alloc_lock: threading.Lock = field(default_factory=threading.Lock)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stopping: set[tuple[str, str]] = field(default_factory=set)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, resync_s: float = 0.25) -> None:
        """Sync on every Pod watch event, and every `resync_s` (retries, missed events)."""
        watcher = threading.Thread(target=self._watch_pods, name="lab-watch", daemon=True)
        watcher.start()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="lab-pod") as pool:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self.sync_once(pool)
                except RestError as exc:
                    log.warning("API: %s", exc)
                self._wake.wait(resync_s)
            self.shutdown()

    def _watch_pods(self) -> None:
        while not self._stop.is_set():
            try:
                for _event in self.api.watch("Pod", timeout_s=30):
                    self._wake.set()
                    if self._stop.is_set():
                        return
            except RestError as exc:
                log.debug("pod watch ended: %s", exc)
                self._stop.wait(0.5)

    def wake(self) -> None:
        """Sync now (a pod finished starting or stopping, or a watch event arrived)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def sync_once(self, pool: ThreadPoolExecutor) -> None:
        pods = self.api.list("Pod")
        live = {p["metadata"]["uid"]: p for p in pods if self._mine(p)}
        now = time.monotonic()
        with self._lock:
            gone = [uid for uid in self.running if uid not in live and uid not in self._busy]
            for uid in gone:
                self._busy.add(uid)
                # A claim is not handed to another pod before this one has released it.
                self._stopping.update((ns, name) for ns, _, name in self.running[uid].claims)
        for uid in gone:
            pool.submit(self._guard, uid, self.stop_pod, self.running[uid])
        for uid, pod in live.items():
            with self._lock:
                started = uid in self.running and self.running[uid].sandbox
                if started or uid in self._busy or self._retry_at.get(uid, 0) > now:
                    continue
                if (pod.get("status") or {}).get("phase") in ("Running", "Failed", "Succeeded"):
                    continue
                self._busy.add(uid)
            pool.submit(self._guard, uid, self.start_pod, pod)

    def _mine(self, pod: JSON) -> bool:
        return (pod.get("spec") or {}).get("nodeName") in (None, "", self.node)

    def _guard(self, uid: str, fn: Callable[[Any], None], arg: Any) -> None:
        try:
            fn(arg)
        except Exception:
            log.exception("pod %s", uid)
        finally:
            with self._lock:
                self._busy.discard(uid)
            self._wake.set()

    # -- start ------------------------------------------------------------------------------
    def _pod_status(self, pod: JSON, status: JSON) -> None:
        meta = pod["metadata"]
        try:
            self.api.merge_patch(
                "Pod", meta["name"], meta["namespace"], {"status": status}, "status"
            )
        except RestError as exc:
            if exc.code != 404:
                raise

    def _pending(self, pod: JSON, ctype: str, reason: str, message: str, retry_s: float) -> None:
        uid = pod["metadata"]["uid"]
        cond = {
            "type": ctype,
            "status": "False",
            "reason": reason,
            "message": message[:1000],
            "lastTransitionTime": _now(),
        }
        self._pod_status(pod, {"phase": "Pending", "conditions": [cond]})
        with self._lock:
            self._retry_at[uid] = time.monotonic() + retry_s

    def _event(self, pod: JSON, reason: str, message: str, kind: str = "Warning") -> None:
        meta = pod["metadata"]
        try:
            self.api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "generateName": f"{meta['name']}.",
                        "namespace": meta["namespace"],
                    },
                    "involvedObject": {
                        "kind": "Pod",
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "uid": meta["uid"],
                        "apiVersion": "v1",
                    },
                    "reason": reason,
                    "message": message[:1000],
                    "type": kind,
                    "source": {"component": "kubelet", "host": self.node},
                    "firstTimestamp": _now(),
                    "lastTimestamp": _now(),
                    "count": 1,
                }
            )
        except RestError:
            log.exception("event")

    def claims_of(self, pod: JSON) -> tuple[list[JSON], list[str]]:
        """The pod's claims (creating template claims); returns (claims, template claim names)."""
        meta = pod["metadata"]
        ns = meta["namespace"]
        statuses = {
            s["name"]: s.get("resourceClaimName")
            for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []
        }
        claims: list[JSON] = []
        made: list[str] = []
        new_statuses = []
        for ref in (pod.get("spec") or {}).get("resourceClaims") or []:
            if ref.get("resourceClaimName"):
                claim = self.api.get("ResourceClaim", ref["resourceClaimName"], ns)
                if claim is None:
                    raise LookupError(f"ResourceClaim {ns}/{ref['resourceClaimName']} not found")
                claims.append(claim)
                continue
            tname = ref.get("resourceClaimTemplateName")
            existing = statuses.get(ref["name"])
            claim = self.api.get("ResourceClaim", existing, ns) if existing else None
            if claim is None:
                template = self.api.get("ResourceClaimTemplate", tname, ns)
                if template is None:
                    raise LookupError(f"ResourceClaimTemplate {ns}/{tname} not found")
                tspec = template.get("spec") or {}
                cname = f"{meta['name']}-{ref['name']}-{secrets.token_hex(3)[:5]}"[:253]
                claim = self.api.create(
                    {
                        "apiVersion": "resource.k8s.io/v1",
                        "kind": "ResourceClaim",
                        "metadata": {
                            "name": cname,
                            "namespace": ns,
                            "labels": (tspec.get("metadata") or {}).get("labels") or {},
                            "annotations": {POD_CLAIM_NAME: ref["name"]},
                            "ownerReferences": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "Pod",
                                    "name": meta["name"],
                                    "uid": meta["uid"],
                                    "controller": True,
                                    "blockOwnerDeletion": True,
                                }
                            ],
                        },
                        "spec": tspec.get("spec") or {},
                    }
                )
            made.append(claim["metadata"]["name"])
            new_statuses.append(
                {"name": ref["name"], "resourceClaimName": claim["metadata"]["name"]}
            )
            claims.append(claim)
        if new_statuses:
            self._pod_status(pod, {"resourceClaimStatuses": new_statuses})
        return claims, made

    def allocate(self, pod: JSON, claims: list[JSON]) -> list[JSON]:
        """Allocate and reserve every claim for the pod (serialised across pods)."""
        meta = pod["metadata"]
        consumer = {"resource": "pods", "name": meta["name"], "uid": meta["uid"]}
        out = []
        with self._alloc_lock:
            slices = self.api.list("ResourceSlice")
            classes = {c["metadata"]["name"]: c for c in self.api.list("DeviceClass")}
            all_claims = self.api.list("ResourceClaim")
            for claim in claims:
                cm = claim["metadata"]
                current = next((c for c in all_claims if c["metadata"]["uid"] == cm["uid"]), claim)
                status = current.get("status") or {}
                reserved = list(status.get("reservedFor") or [])
                patch: JSON = {}
                if not status.get("allocation"):
                    in_use = {
                        (r["driver"], r["pool"], r["device"])
                        for c in all_claims
                        if c["metadata"]["uid"] != cm["uid"]
                        for r in (
                            ((c.get("status") or {}).get("allocation") or {}).get("devices") or {}
                        ).get("results")
                        or []
                    }
                    allocation, _ = Allocator(slices, classes, self.node).allocate(current, in_use)
                    patch["allocation"] = allocation
                    current.setdefault("status", {})["allocation"] = allocation
                    all_claims = [c for c in all_claims if c["metadata"]["uid"] != cm["uid"]] + [
                        current
                    ]
                if not any(r.get("uid") == meta["uid"] for r in reserved):
                    patch["reservedFor"] = [*reserved, consumer]
                if patch:
                    current = self.api.merge_patch(
                        "ResourceClaim", cm["name"], cm["namespace"], {"status": patch}, "status"
                    )
                out.append(current)
        return out

    def _running_pod(self, pod: JSON, claims: list[JSON], made: list[str]) -> RunningPod:
        """The pod's claims and, per driver this kubelet has, the claims it must prepare."""
        meta = pod["metadata"]
        rp = RunningPod(meta["uid"], meta["name"], meta["namespace"], template_claims=made)
        for claim in claims:
            cm = claim["metadata"]
            key = (cm["namespace"], cm["uid"], cm["name"])
            rp.claims.append(key)
            results = ((claim["status"]["allocation"].get("devices") or {}).get("results")) or []
            for driver in sorted({r["driver"] for r in results}):
                if driver in self.kubelet.plugins:
                    rp.drivers.setdefault(driver, []).append(key)
        return rp

    def start_pod(self, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        named = {
            (meta["namespace"], ref["resourceClaimName"])
            for ref in (pod.get("spec") or {}).get("resourceClaims") or []
            if ref.get("resourceClaimName")
        }
        with self._lock:
            if named & self._stopping:  # its previous user is still being torn down
                self._retry_at[uid] = time.monotonic() + 0.1
                return
        try:
            claims, made = self.claims_of(pod)
        except LookupError as exc:
            self._pending(pod, "PodScheduled", "Unschedulable", str(exc), 1.0)
            return
        try:
            claims = self.allocate(pod, claims)
        except (AllocationError, SelectorError) as exc:
            self._pending(
                pod,
                "PodScheduled",
                "Unschedulable",
                f"cannot allocate all claims: {exc.args[0]}",
                1.0,
            )
            return
        rp = self._running_pod(pod, claims, made)
        with self._lock:  # from here on, a deletion must unprepare and release
            self.running[uid] = rp
        for driver, keys in rp.drivers.items():
            resp = self.kubelet.prepare(driver, keys)
            errors = [f"{c}: {r.error}" for c, r in resp.claims.items() if r.error]
            if errors:
                self._event(pod, "FailedPrepareDynamicResources", "; ".join(errors))
                self._pending(
                    pod,
                    "PodReadyToStartContainers",
                    "FailedPrepareDynamicResources",
                    "; ".join(errors),
                    2.0,
                )
                return
        spec = PodSpec(
            meta["name"],
            meta["namespace"],
            uid,
            host_network=bool((pod.get("spec") or {}).get("hostNetwork")),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
        )
        try:
            rp.sandbox = self.cri.run_pod(spec)
        except grpc.RpcError as exc:
            message = f"Failed to create pod sandbox: {exc.details()}"
            self._event(pod, "FailedCreatePodSandBox", message)
            with self._lock:
                backoff = min(self._backoff.get(uid, 1.0) * 2, 30.0)
                self._backoff[uid] = backoff
            self._pending(
                pod, "PodReadyToStartContainers", "FailedCreatePodSandBox", message, backoff
            )
            return
        ready_at = time.time()
        with self._lock:
            self._backoff.pop(uid, None)
        statuses = []
        for c in (pod.get("spec") or {}).get("containers") or []:
            command = [*(c.get("command") or []), *(c.get("args") or [])] or DEFAULT_COMMAND
            cid = self.cri.create_container(rp.sandbox, spec, c["name"], self.image, command)
            self.cri.start_container(cid)
            rp.containers[c["name"]] = cid
            statuses.append(
                {
                    "name": c["name"],
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": c.get("image") or self.image,
                    "imageID": self.image,
                    "containerID": f"containerd://{cid}",
                    "state": {"running": {"startedAt": _now()}},
                }
            )
        ip = ""
        with contextlib.suppress(grpc.RpcError):
            ip = str(self.cri.pod_status(rp.sandbox).status.network.ip)
        try:
            self.api.merge_patch(
                "Pod",
                meta["name"],
                meta["namespace"],
                {
                    "metadata": {
                        "annotations": {
                            ANN_SANDBOX: rp.sandbox,
                            ANN_CONTAINERS: json.dumps(rp.containers),
                            ANN_READY: f"{ready_at:.6f}",
                        }
                    }
                },
            )
            conds = [
                {"type": t, "status": "True", "lastTransitionTime": _now()}
                for t in (
                    "PodScheduled",
                    "PodReadyToStartContainers",
                    "Initialized",
                    "ContainersReady",
                    "Ready",
                )
            ]
            status: JSON = {
                "phase": "Running",
                "conditions": conds,
                "containerStatuses": statuses,
                "startTime": _now(),
            }
            if ip:
                status["podIP"] = ip
                status["podIPs"] = [{"ip": ip}]
            self._pod_status(pod, status)
        except RestError as exc:
            if exc.code != 404:
                raise

    # -- stop -------------------------------------------------------------------------------
    def stop_pod(self, rp: RunningPod) -> None:
        try:
            self._stop_pod(rp)
        finally:
            with self._lock:
                self._stopping.difference_update((ns, name) for ns, _, name in rp.claims)

    def _stop_pod(self, rp: RunningPod) -> None:
        for cid in rp.containers.values():
            _quiet(self.cri.stop_container, cid)
        if rp.sandbox:
            _quiet(self.cri.stop_pod, rp.sandbox)
        for driver, keys in rp.drivers.items():
            self._unprepare(driver, keys)
        for cid in rp.containers.values():
            _quiet(self.cri.remove_container, cid)
        if rp.sandbox:
            _quiet(self.cri.remove_pod, rp.sandbox)
        self.release(rp)
        with self._lock:
            self.running.pop(rp.uid, None)
        if self.repair_nics is not None:
            try:
                self.repair_nics()
            except Exception:
                log.exception("repairing lab NICs")

    def _unprepare(self, driver: str, keys: list[tuple[str, str, str]]) -> None:
        delay = 0.2
        while True:
            try:
                if driver in self.kubelet.plugins:
                    resp = self.kubelet.unprepare(driver, keys, timeout=10)
                    errors = [r.error for r in resp.claims.values() if r.error]
                    if not errors:
                        log.info("unprepared %s for %s", [k[2] for k in keys], driver)
                        return
                    log.warning("unprepare: %s", errors)
            except grpc.RpcError as exc:
                log.info("unprepare via %s failed (%s); retrying", driver, exc.code())
            if self._stop.is_set() and delay > 5:
                return
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def release(self, rp: RunningPod) -> None:
        """Drop the pod from its claims' reservedFor; deallocate or delete them when unused."""
        for ns, _uid, name in rp.claims:
            if name in rp.template_claims:
                self.api.delete("ResourceClaim", name, ns)
                continue
            claim = self.api.get("ResourceClaim", name, ns)
            if claim is None:
                continue
            reserved = [
                r
                for r in (claim.get("status") or {}).get("reservedFor") or []
                if r.get("uid") != rp.uid
            ]
            patch: JSON = {"reservedFor": reserved or None}
            if not reserved:
                patch.update(allocation=None, devices=None)
            self.api.merge_patch("ResourceClaim", name, ns, {"status": patch}, "status")

    def shutdown(self) -> None:
        """Tear down every pod this controller runs (lab down)."""
        for rp in list(self.running.values()):
            try:
                self.stop_pod(rp)
            except Exception:
                log.exception("teardown of %s", rp.name)


def _quiet(fn: Callable[[str], None], arg: str) -> None:
    try:
        fn(arg)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            log.warning("CRI: %s", exc.details())


def main(argv: list[str] | None = None) -> int:
    from knd.lab import node as lab_node  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m knd.lab.controller")
    p.add_argument("--apiserver", required=True)
    p.add_argument("--cri-socket", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--kubelet-root", type=Path, required=True)
    p.add_argument("--node", default="knd-lab")
    p.add_argument("--nic-prefix", default="klab")
    p.add_argument("--fabric", default="knd-lab-fabric")
    p.add_argument("--ready-file", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    nics = lab_node.LabNics(args.nic_prefix, args.fabric)
    kubelet = KubeletEmulator(args.kubelet_root).start()

    def repair() -> None:
        missing = lab_node.missing_nics(nics)
        if missing:
            log.info("re-creating lab NICs %s", [nics.names[i] for i in missing])
            lab_node.ensure_nics(nics, missing)

    ctl = Controller(
        RestClient(args.apiserver),
        CriClient(args.cri_socket),
        kubelet,
        args.node,
        args.image,
        repair_nics=repair,
    )
    signal.signal(signal.SIGTERM, lambda *_: ctl.stop())
    signal.signal(signal.SIGINT, lambda *_: ctl.stop())
    args.ready_file.write_text("ready\n")
    ctl.run()
    kubelet.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
