"""The NRI hooks of knd: execute the plans persisted at prepare time, nothing else.

Time budget: every hook runs inside the runtime's NRI request timeout (2 s by default), one pod
event at a time; a hook that misses it silently drops the plugin and the pod starts without its
NIC. So a hook reads the SQLite store, executes plans with netlink (knd.netns), queues claim
status for the background writer and returns: no API server call, no discovery scan, no DHCP.
Typical cost: ~20-30 ms per NIC, dominated by the kernel's netns move.

* `run_pod_sandbox`: the pod's plans (by pod UID) are attached transactionally in the pod netns
  from `pod.linux.namespaces`; a host-network pod with a network claim fails; a failed attach
  fails the sandbox after rolling every device back to the host (the error names device and
  step); the netns is recorded; `status.devices[]` is queued (Ready/NetworkReady/RDMALinkReady
  with messages, networkData).
* `create_container`: the RDMA char devices of the pod's devices, de-duplicated, mode 0666.
* `stop_pod_sandbox`: detach and restore host state; uses the recorded netns when the event has
  none (containerd 1.7); never fails the runtime (errors are logged and counted).
* `remove_pod_sandbox`: forgets the recorded netns.
* `synchronize`: refreshes netns paths of known pods and reports pods whose devices are not
  where the store says (a host interface still on the host while its pod runs); prunes nothing
  (dranet#232).
Pods with no plan are answered immediately (`noop`): knd costs them one indexed SQLite read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from knd.driver.metrics import DriverMetrics
from knd.driver.status_writer import Condition, DeviceStatus, NetworkData, StatusWriter
from knd.driver.store import PlanRecord, StateStore
from knd.netns.attach import Attached, attach
from knd.netns.detach import Detached, detach
from knd.netns.errors import AttachError, NetnsError
from knd.netns.plan import AttachPlan
from knd.nri.errors import HookError
from knd.nri.types import ContainerAdjust, ContainerInfo, DeviceNode, PodInfo

log = logging.getLogger(__name__)

AttachFn = Callable[[Sequence[AttachPlan], str], list[Attached]]
DetachFn = Callable[[Sequence[AttachPlan], str | None], list[Detached]]
#: gRPC/ttrpc status codes the runtime understands.
FAILED_PRECONDITION = 9
INTERNAL = 13


def _default_attach(plans: Sequence[AttachPlan], netns: str) -> list[Attached]:
    return attach(plans, netns)


def _host_links() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get("ifname")) for link in ipr.get_links()}


@dataclass
class SyncReport:
    """What the last Synchronize found."""

    known_pods: int = 0
    misplaced: list[str] = field(default_factory=list)


class NetworkHooks:
    """Implements knd.nri.handler.NriHandler over the store, knd.netns and the status writer."""

    def __init__(
        self,
        *,
        store: StateStore,
        status: StatusWriter | None,
        metrics: DriverMetrics | None = None,
        attach_fn: AttachFn = _default_attach,
        detach_fn: DetachFn = detach,
        host_links: Callable[[], set[str]] = _host_links,
    ) -> None:
        self.store = store
        self.status = status
        self.metrics = metrics
        self.attach_fn = attach_fn
        self.detach_fn = detach_fn
        self.host_links = host_links
        self.last_sync = SyncReport()

    # -- helpers --------------------------------------------------------------------------
    def _plans(self, pod: PodInfo) -> list[tuple[PlanRecord, AttachPlan]]:
        out = []
        for record in self.store.plans_for_pod(pod.uid):
            try:
                out.append((record, AttachPlan.from_json(json.dumps(record.plan))))
            except NetnsError as exc:
                raise HookError(
                    f"pod {pod.namespace}/{pod.name}: stored plan of device {record.device} "
                    f"is unusable: {exc}",
                    INTERNAL,
                ) from exc
        return out

    def _queue_status(
        self, records: Sequence[PlanRecord], statuses: Sequence[DeviceStatus]
    ) -> None:
        if self.status is None:
            return
        by_claim: dict[str, list[DeviceStatus]] = {}
        for record, st in zip(records, statuses, strict=True):
            by_claim.setdefault(record.claim_uid, []).append(st)
        for claim_uid, entries in by_claim.items():
            claim = self.store.claim(claim_uid)
            if claim is not None:
                self.status.submit(claim.namespace, claim.name, entries)

    # -- hooks ----------------------------------------------------------------------------
    def run_pod_sandbox(self, pod: PodInfo) -> None:
        """Attach the pod's devices (see module docstring)."""
        pairs = self._plans(pod)
        if not pairs:
            return
        who = f"pod {pod.namespace}/{pod.name}"
        if pod.host_network or not pod.netns:
            raise HookError(
                f"{who} uses the host network but has network device claims; knd moves NICs "
                "into a pod network namespace and refuses host-network pods",
                FAILED_PRECONDITION,
            )
        records = [r for r, _ in pairs]
        plans = [p for _, p in pairs]
        try:
            attached = self.attach_fn(plans, pod.netns)
        except AttachError as exc:
            if self.metrics is not None:
                self.metrics.attach_failures.labels(exc.step).inc()
                self.metrics.rollbacks.inc()
            message = f"{who}: {exc}"
            self._queue_status(records, [_failed(r, message) for r in records])
            raise HookError(message, INTERNAL) from exc
        except NetnsError as exc:
            if self.metrics is not None:
                self.metrics.attach_failures.labels("open").inc()
            raise HookError(f"{who}: {exc}", INTERNAL) from exc
        self.store.record_attach(pod.uid, pod.netns)
        by_device = {a.device: a for a in attached}
        self._queue_status(records, [_ready(r, p, by_device.get(r.device)) for r, p in pairs])

    def create_container(self, pod: PodInfo, container: ContainerInfo) -> ContainerAdjust | None:
        """RDMA char devices of every device of the pod, for every container."""
        records = self.store.plans_for_pod(pod.uid)
        if not records:
            return None
        self.store.touch_nri_activity(pod.uid)
        devices: list[DeviceNode] = []
        seen: set[str] = set()
        for _, plan in self._plans(pod):
            if plan.rdma is None:
                continue
            for dev in plan.rdma.char_devices:
                if dev.path not in seen:
                    seen.add(dev.path)
                    devices.append(DeviceNode(dev.path, dev.major, dev.minor, dev.type))
        return ContainerAdjust(tuple(devices)) if devices else None

    def stop_pod_sandbox(self, pod: PodInfo) -> None:
        """Return the pod's devices to the host; never raises."""
        try:
            pairs = self._plans(pod)
        except HookError:
            log.exception("stop: cannot read the plans of pod %s", pod.uid)
            return
        if not pairs:
            return
        netns = pod.netns
        if not netns:
            record = self.store.pod(pod.uid)
            netns = record.netns if record is not None else None
        results = self.detach_fn([p for _, p in pairs], netns)
        for result in results:
            if result.errors:
                if self.metrics is not None:
                    self.metrics.detach_failures.labels(result.outcome).inc()
                log.error(
                    "detach of %s for pod %s/%s: %s",
                    result.device,
                    pod.namespace,
                    pod.name,
                    "; ".join(result.errors),
                    extra={"pod": f"{pod.namespace}/{pod.name}", "device": result.device},
                )
        self.store.touch_nri_activity(pod.uid)

    def remove_pod_sandbox(self, pod: PodInfo) -> None:
        """Forget the sandbox's netns (plans stay until NodeUnprepareResources)."""
        if self.store.pod(pod.uid) is not None:
            self.store.set_netns(pod.uid, None)

    def synchronize(self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]) -> None:
        """Refresh netns paths and report misplaced devices; prunes nothing."""
        del containers
        report = SyncReport()
        links: set[str] | None = None
        for pod in pods:
            pairs = self._plans_quiet(pod)
            if not pairs:
                continue
            report.known_pods += 1
            if pod.netns:
                self.store.set_netns(pod.uid, pod.netns)
            if links is None:
                links = self.host_links()
            for _, plan in pairs:
                if plan.host is not None and plan.host.name in links:
                    report.misplaced.append(
                        f"{pod.namespace}/{pod.name}: device {plan.device} ({plan.host.name}) "
                        "is on the host, not in the running pod"
                    )
        for line in report.misplaced:
            log.error("synchronize: %s", line)
        self.last_sync = report

    def _plans_quiet(self, pod: PodInfo) -> list[tuple[PlanRecord, AttachPlan]]:
        try:
            return self._plans(pod)
        except HookError:
            log.exception("synchronize: unusable plan for pod %s", pod.uid)
            return []


def _ready(record: PlanRecord, plan: AttachPlan, attached: Attached | None) -> DeviceStatus:
    conditions: list[Condition] = []
    network = None
    if plan.pod is not None and attached is not None:
        name = attached.interface_name or plan.pod.name
        conditions.append(
            Condition(
                "Ready", True, "NetworkDeviceReady", f"interface {name} configured in the pod"
            )
        )
        conditions.append(
            Condition(
                "NetworkReady",
                True,
                "NetworkReady",
                f"addresses, routes, rules and neighbours applied on {name}",
            )
        )
        network = NetworkData(name, attached.ips, attached.hardware_address or "")
    elif plan.pod is None:
        conditions.append(
            Condition(
                "Ready",
                True,
                "RDMAOnlyDeviceReady",
                "RDMA-only device: char devices injected into containers",
            )
        )
    if plan.rdma is not None and plan.rdma.move_link and plan.rdma.link:
        conditions.append(
            Condition(
                "RDMALinkReady",
                True,
                "RDMALinkReady",
                f"RDMA device {plan.rdma.link} moved into the pod",
            )
        )
    return DeviceStatus(
        pool=record.pool, device=record.device, conditions=tuple(conditions), network=network
    )


def _failed(record: PlanRecord, message: str) -> DeviceStatus:
    return DeviceStatus(
        pool=record.pool,
        device=record.device,
        conditions=(Condition("Ready", False, "NetworkDeviceAttachFailed", message),),
    )


__all__ = ["NetworkHooks", "SyncReport"]
