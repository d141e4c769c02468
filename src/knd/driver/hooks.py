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
* `stop_pod_sandbox`: first a DHCPRELEASE for each `interface.dhcp` lease, from the pod netns
  where the interface still holds the address (one UDP send, no answer awaited; a failure is
  logged); then detach and restore host state through the restorer (knd.driver.restorer: a
  device that does not come home is retried with backoff and reported on its claim); uses the
  recorded netns when the event has none (containerd 1.7); never fails the runtime.
* A failed attach also queues a Warning Event on the pod with DraNet's reason
  (`NetworkDeviceAttachFailed`, or `RDMADeviceAttachFailed` for the RDMA link step), written by
  knd.driver.events off the hook's thread and aggregated across the kubelet's retries.
* `remove_pod_sandbox`: forgets the recorded netns.
* `synchronize` (every (re)connection, so also after a knd restart): HEALS pods that started
  while knd was not running. A running pod with plans and a network namespace whose attach did
  not complete for this sandbox (the store has no netns recorded for it, or another one) or
  whose device is still on the host gets its plans attached now, by the same transactional code
  path as RunPodSandbox; the netns is recorded and the claim status says the device was attached
  after a knd restart. A failed late attach is rolled back, logged as an error and reported as
  `Ready=False` on the claim; it never raises. A stopped sandbox the runtime still lists (its
  netns is gone: the pod was deleted while knd was down) is left alone: no attach, no status.
  The heal note is stored with the attach, so later restarts re-assert it. Prunes nothing
  (dranet#232). Budget: the same
  ~20-30 ms per NIC inside the runtime's Synchronize timeout; only pods started while knd was
  down need it (docs/operations.md). Pods attached by an earlier knd get their `Ready` status
  re-queued from the plans (a status write lost with a killed daemon catches up). Then the
  containers that never reached CreateContainer (knd away, or a hook past the runtime's
  deadline) are caught up (knd.driver.missed_containers): cpuset updates in the response,
  missing RDMA devices reported. A RunPodSandbox that outlived the deadline and finished
  meanwhile is recognised under the restorer's lock and not repeated (`_attached_already`).
Pods with no plan are answered immediately (`noop`): knd costs them one indexed SQLite read.

Faults (tests only): `step_observer` (knd.netns.steps.StepObserver) is handed to every attach
the hooks run, and is called before each attach step: a fault test pauses there to SIGKILL the
daemon at a known point of an attach, or raises to fail that step (docs/operations.md, "Fault
injection"). The daemon passes none; no environment variable or flag turns one on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from knd.driver.events import (
    NETWORK_ATTACH_FAILED,
    RDMA_ATTACH_FAILED,
    RDMA_DEVICES_MISSING,
    EventSink,
    ObjectRef,
)
from knd.driver.leases import Tracked, release_in_netns
from knd.driver.metrics import DriverMetrics
from knd.driver.missed_containers import catch_up
from knd.driver.nic_telemetry import NicTelemetry, nics_of
from knd.driver.numa_cpus import NoOverlapError, narrow
from knd.driver.restorer import Restorer
from knd.driver.status_writer import (
    Condition,
    DeviceStatus,
    NetworkData,
    with_share_ids,
)
from knd.driver.store import PlanRecord, StateStore
from knd.netns.attach import Attached, attach
from knd.netns.detach import Detached, detach
from knd.netns.errors import AttachError, NetnsError
from knd.netns.plan import AttachPlan
from knd.netns.rawlink import LinkSocket
from knd.netns.steps import StepObserver
from knd.nri.errors import HookError
from knd.nri.types import ContainerAdjust, ContainerInfo, ContainerUpdate, DeviceNode, PodInfo

log = logging.getLogger(__name__)

AttachFn = Callable[[Sequence[AttachPlan], str], list[Attached]]
DetachFn = Callable[[Sequence[AttachPlan], str | None], list[Detached]]
#: release(netns path, ifname, mac, address CIDR, server): one DHCPRELEASE from the pod netns.
ReleaseFn = Callable[[str, str, str, str, str | None], None]
HEALED_NOTE = "attached after a knd restart: the pod started while knd was not running"
#: gRPC/ttrpc status codes the runtime understands.
FAILED_PRECONDITION = 9
INTERNAL = 13


def _host_links() -> set[str]:
    lsock = LinkSocket()
    try:
        return {link.name for link in lsock.links()}
    finally:
        lsock.close()


@dataclass
class SyncReport:
    """What the last Synchronize found and did."""

    known_pods: int = 0
    #: devices found on the host although their pod runs (healed or failed below)
    misplaced: list[str] = field(default_factory=list)
    #: pods (ns/name) attached late by this Synchronize
    healed: list[str] = field(default_factory=list)
    #: pods (ns/name) whose late attach failed, with the error
    heal_failed: list[str] = field(default_factory=list)
    #: stopped sandboxes (netns gone) listed by the runtime: left alone
    stopped: list[str] = field(default_factory=list)
    #: containers that never reached CreateContainer: what was caught up or is missing
    missed_create: list[str] = field(default_factory=list)


class StatusSink(Protocol):
    """Where claim device status goes (`StatusWriter`; `NullStatus` when nothing is written)."""

    def submit(
        self,
        namespace: str,
        name: str,
        devices: Sequence[DeviceStatus],
        remove: bool = False,
        uid: str | None = None,
    ) -> bool: ...


class LeaseTracker(Protocol):
    """Who renews the DHCP leases of attached pods (`LeaseKeeper`; `NullLeases` for none)."""

    def track(self, pod_uid: str, netns: str, plans: Sequence[AttachPlan]) -> int: ...

    def forget(self, pod_uid: str) -> None: ...


class NullStatus:
    """A status sink that writes nothing (a node without an API server to report to, tests)."""

    def submit(
        self,
        namespace: str,
        name: str,
        devices: Sequence[DeviceStatus],
        remove: bool = False,
        uid: str | None = None,
    ) -> bool:
        return True


class NullLeases:
    """A lease tracker that renews nothing."""

    def track(self, pod_uid: str, netns: str, plans: Sequence[AttachPlan]) -> int:
        return 0

    def forget(self, pod_uid: str) -> None:
        return None


class NetworkHooks:
    """Implements knd.nri.handler.NriHandler over the store, knd.netns and the status writer.

    `status`, `metrics` and `leases` are required collaborators: a caller without a use for one
    passes a null object (`NullStatus`, a throwaway `DriverMetrics`, `NullLeases`).
    `attach_fn` replaces knd.netns.attach (unit tests without root); `step_observer` (tests
    only, knd.netns.steps) watches the built-in attach and so cannot go with `attach_fn`."""

    def __init__(
        self,
        *,
        store: StateStore,
        status: StatusSink,
        metrics: DriverMetrics,
        leases: LeaseTracker,
        attach_fn: AttachFn | None = None,
        detach_fn: DetachFn = detach,
        host_links: Callable[[], set[str]] = _host_links,
        step_observer: StepObserver | None = None,
        events: EventSink | None = None,
        release_fn: ReleaseFn = release_in_netns,
        restorer: Restorer | None = None,
        node_addresses: Callable[[], frozenset[str]] = frozenset,
        netns_exists: Callable[[str], bool] = os.path.exists,
        telemetry: NicTelemetry | None = None,
    ) -> None:
        self.netns_exists = netns_exists
        self.store = store
        self.restorer = restorer or Restorer(
            store, detach_fn=detach_fn, metrics=metrics, report=self.report_restore
        )
        self.leases = leases
        self.events = events
        self.release_fn = release_fn
        self.telemetry = telemetry
        self.status = status
        self.metrics = metrics
        self.detach_fn = detach_fn
        self.host_links = host_links
        self.last_sync = SyncReport()
        if attach_fn is not None and step_observer is not None:
            raise ValueError("step_observer observes the built-in attach only (attach_fn=None)")
        self.step_observer = step_observer
        self.node_addresses = node_addresses
        self.attach_fn: AttachFn = attach_fn or self._attach_here

    def _attach_here(self, plans: Sequence[AttachPlan], netns: str) -> list[Attached]:
        """The built-in attach, refusing a device that carries one of the node's addresses as
        last read at prepare (never an API call here)."""
        return attach(
            plans, netns, observer=self.step_observer, node_addresses=self.node_addresses()
        )

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
        by_claim: dict[str, list[DeviceStatus]] = {}
        for record, st in zip(records, statuses, strict=True):
            by_claim.setdefault(record.claim_uid, []).append(st)
        for claim_uid, entries in by_claim.items():
            claim = self.store.claim(claim_uid)
            if claim is not None:
                shared = with_share_ids(entries, claim.result.get("devices") or [])
                self.status.submit(claim.namespace, claim.name, shared, uid=claim.uid)

    # -- hooks ----------------------------------------------------------------------------
    def run_pod_sandbox(self, pod: PodInfo) -> None:
        """Attach the pod's devices (see module docstring)."""
        pairs = self._plans(pod)
        if not pairs:
            return
        self._attach(pod, pairs)

    def _attach(
        self, pod: PodInfo, pairs: Sequence[tuple[PlanRecord, AttachPlan]], note: str = ""
    ) -> bool:
        """Attach all plans of a pod or none; record the netns; queue claim status. False when
        an earlier call had attached them into this netns already (nothing done).

        Raises HookError (after rollback, with a `Ready=False` status queued for attach errors).
        """
        who = f"pod {pod.namespace}/{pod.name}"
        records = [r for r, _ in pairs]
        plans = [p for _, p in pairs]
        if pod.host_network or not pod.netns:
            message = (
                f"{who} uses the host network but has network device claims; knd moves NICs "
                "into a pod network namespace and refuses host-network pods"
            )
            self._queue_status(records, [_failed(r, message) for r in records])
            raise HookError(message, FAILED_PRECONDITION)
        try:
            with self.restorer.lock:
                if self._attached_already(pod, plans):
                    return False
                attached = self.attach_fn(plans, pod.netns)
                self.restorer.note_attached(pod.uid, records)
                self.store.record_attach(pod.uid, pod.netns, note=note or None)
        except AttachError as exc:
            self.metrics.attach_failures.labels(exc.step).inc()
            self.metrics.rollbacks.inc()
            self._attach_event(pod, exc.device, exc, rdma=exc.step == "rdma")
            message = f"{who}: {exc}"
            if note:
                message = f"{who}: {note}; attaching failed: {exc}"
            self._queue_status(records, [_failed(r, message) for r in records])
            raise HookError(message, INTERNAL) from exc
        except NetnsError as exc:
            self.metrics.attach_failures.labels("open").inc()
            self._attach_event(pod, ", ".join(p.device for p in plans), exc, rdma=False)
            message = f"{who}: {exc}" if not note else f"{who}: {note}; attaching failed: {exc}"
            self._queue_status(records, [_failed(r, message) for r in records])
            raise HookError(message, INTERNAL) from exc
        self.leases.track(pod.uid, pod.netns, plans)
        self._track_telemetry(pod, pod.netns, pairs)
        by_device = {a.device: a for a in attached}
        self._queue_status(records, [_ready(r, p, by_device.get(r.device), note) for r, p in pairs])
        return True

    def _attached_already(self, pod: PodInfo, plans: Sequence[AttachPlan]) -> bool:
        """Whether an earlier call attached these plans into this very netns (call under the
        restorer's lock, which that attach held until it was recorded). Two calls for one
        sandbox meet when a hook outlived the runtime's deadline: the runtime dropped the
        connection while the attach went on, and the reconnect's Synchronize finds the pod
        before that attach was recorded. The second call must neither move again nor report
        the first one's devices as failed. Costs one indexed read; a link dump only then."""
        record = self.store.pod(pod.uid)
        if record is None or record.netns != pod.netns:
            return False
        links = self.host_links()
        if any(p.host is not None and p.sub is None and p.host.name in links for p in plans):
            return False
        log.info(
            "pod %s/%s: its devices were attached into %s already (a repeated or late call)",
            pod.namespace,
            pod.name,
            pod.netns,
            extra={"pod": f"{pod.namespace}/{pod.name}"},
        )
        return True

    def _attach_event(self, pod: PodInfo, device: str, exc: Exception, rdma: bool) -> None:
        """Queue DraNet's Warning Event on the pod (aggregated by the sink; never blocks)."""
        if self.events is None:
            return
        kind, reason = ("RDMA", RDMA_ATTACH_FAILED) if rdma else ("network", NETWORK_ATTACH_FAILED)
        self.events.warning(
            ObjectRef.pod(pod.namespace, pod.name, pod.uid),
            reason,
            f"failed to attach {kind} device {device} to pod {pod.namespace}/{pod.name}: {exc}",
        )

    def _release_leases(self, pod: PodInfo, netns: str, plans: Sequence[AttachPlan]) -> None:
        """DHCPRELEASE of every `interface.dhcp` lease of the pod, from its netns; never raises."""
        for plan in plans:
            side, host = plan.pod, plan.host
            if side is None or side.dhcp is None or host is None:
                continue
            try:
                self.release_fn(
                    netns, side.name, side.mac or host.mac, side.dhcp.address, side.dhcp.server
                )
            except Exception as exc:  # the lease then runs out on its own
                log.info(
                    "DHCP release of %s (%s) for pod %s/%s not sent: %s",
                    side.dhcp.address,
                    plan.device,
                    pod.namespace,
                    pod.name,
                    exc,
                    extra={"pod": f"{pod.namespace}/{pod.name}", "device": plan.device},
                )
            else:
                log.info(
                    "released DHCP lease %s of %s",
                    side.dhcp.address,
                    plan.device,
                    extra={"pod": f"{pod.namespace}/{pod.name}", "device": plan.device},
                )

    def create_container(self, pod: PodInfo, container: ContainerInfo) -> ContainerAdjust | None:
        """RDMA char devices of every device of the pod, for every container."""
        records = self.store.plans_for_pod(pod.uid)
        if not records:
            return None
        self.store.touch_nri_activity(pod.uid)
        devices: list[DeviceNode] = []
        seen: set[str] = set()
        plans = [plan for _, plan in self._plans(pod)]
        for plan in plans:
            if plan.rdma is None:
                continue
            for dev in plan.rdma.char_devices:
                if dev.path not in seen:
                    seen.add(dev.path)
                    devices.append(DeviceNode(dev.path, dev.major, dev.minor, dev.type))
        cpus, mems = self._numa_cpus(pod, container, plans)
        if not devices and cpus is None and mems is None:
            return None
        return ContainerAdjust(tuple(devices), cpus, mems)

    def _numa_cpus(
        self, pod: PodInfo, container: ContainerInfo, plans: Sequence[AttachPlan]
    ) -> tuple[str | None, str | None]:
        """`numa.alignCpus` (knd.driver.numa_cpus); HookError when the CPUs do not overlap."""
        placements = [p.placement for p in plans if p.placement is not None]
        if not placements:
            return None, None
        who = f"container {container.name} of pod {pod.namespace}/{pod.name}"
        try:
            decision = narrow(container.cpus, container.mems, placements)
        except NoOverlapError as exc:
            raise HookError(f"{who}: {exc}", FAILED_PRECONDITION) from exc
        log.info(
            "%s: cpuset %s, mems %s (%s)",
            who,
            decision.cpus or "unchanged",
            decision.mems or "unchanged",
            decision.reason,
            extra={"pod": f"{pod.namespace}/{pod.name}"},
        )
        return decision.cpus, decision.mems

    def stop_pod_sandbox(self, pod: PodInfo) -> None:
        """Return the pod's devices to the host; never raises."""
        try:
            pairs = self._plans(pod)
        except HookError:
            log.exception("stop: cannot read the plans of pod %s", pod.uid)
            return
        if not pairs:
            return
        self.leases.forget(pod.uid)
        if self.telemetry is not None:
            self.telemetry.forget(pod.uid)
        netns = pod.netns
        if not netns:
            record = self.store.pod(pod.uid)
            netns = record.netns if record is not None else None
        if netns:
            self._release_leases(pod, netns, [p for _, p in pairs])
        results = self.restorer.return_pod(pod.uid, pairs, netns)
        for result in results:
            if result.errors:
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

    def report_restore(self, record: PlanRecord, reason: str, message: str) -> None:
        """Restorer observer: a device is not where its claim wants it (`Ready=False`)."""
        status = DeviceStatus(
            pool=record.pool,
            device=record.device,
            conditions=(Condition("Ready", False, reason, message),),
        )
        self._queue_status([record], [status])

    def remove_pod_sandbox(self, pod: PodInfo) -> None:
        """Forget the sandbox's netns (plans stay until NodeUnprepareResources)."""
        self.leases.forget(pod.uid)
        if self.telemetry is not None:
            self.telemetry.forget(pod.uid)
        if self.store.pod(pod.uid) is not None:
            self.store.set_netns(pod.uid, None)

    def synchronize(
        self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]
    ) -> list[ContainerUpdate]:
        """Heal pods that started while knd was down, then catch up the containers that missed
        CreateContainer (see module docstring); prunes nothing. Returns the container updates
        for the runtime."""
        report = SyncReport()
        links: set[str] | None = None
        live: list[tuple[PodInfo, list[AttachPlan]]] = []
        for pod in pods:
            pairs = self._plans_quiet(pod)
            if not pairs:
                continue
            report.known_pods += 1
            who = f"{pod.namespace}/{pod.name}"
            if pod.netns and not self.netns_exists(pod.netns):
                # A stopped sandbox (its pod deleted while knd was down): its netns is gone,
                # so there is nothing to heal and its claim is going away.
                report.stopped.append(who)
                continue
            live.append((pod, [p for _, p in pairs]))
            if links is None:
                links = self.host_links()
            on_host = [  # a sub-interface's parent always stays on the host
                plan
                for _, plan in pairs
                if plan.host is not None and plan.sub is None and plan.host.name in links
            ]
            for plan in on_host:
                assert plan.host is not None
                report.misplaced.append(
                    f"{who}: device {plan.device} ({plan.host.name}) "
                    "is on the host, not in the running pod"
                )
            record = self.store.pod(pod.uid)
            # Attached by knd for this sandbox: the netns recorded at attach is the pod's (a
            # runtime that omits the netns in Synchronize gets the benefit of the doubt).
            attached_here = (
                record is not None
                and record.netns is not None
                and (not pod.netns or record.netns == pod.netns)
            )
            if attached_here and not on_host:
                # Attached by an earlier knd: re-assert the claim status from the plans (a
                # status write lost with a killed daemon catches up; SSA makes it idempotent),
                # and keep renewing its DHCP leases.
                if record is not None and record.netns:
                    self.leases.track(pod.uid, record.netns, [p for _, p in pairs])
                if record is not None and record.netns:
                    self._track_telemetry(pod, record.netns, pairs)
                note = (record.attach_note or "") if record is not None else ""
                self._queue_status(
                    [r for r, _ in pairs],
                    [_ready(r, p, _as_attached(p), note) for r, p in pairs],
                )
                continue
            try:
                if not self._attach(pod, pairs, HEALED_NOTE):
                    continue  # attached by a RunPodSandbox that outlived the runtime's deadline
            except HookError as exc:
                report.heal_failed.append(f"{who}: {exc}")
                self._count_heal("failed")
                log.error(
                    "synchronize: pod %s runs without its network devices: %s",
                    who,
                    exc,
                    extra={"pod": who},
                )
                continue
            except Exception as exc:  # never fail a Synchronize
                report.heal_failed.append(f"{who}: {exc}")
                self._count_heal("failed")
                log.exception("synchronize: attaching the devices of pod %s failed", who)
                continue
            report.healed.append(who)
            self._count_heal("attached")
            log.warning(
                "synchronize: pod %s started while knd was not running; its devices (%s) are "
                "attached now",
                who,
                ", ".join(p.device for _, p in pairs),
                extra={"pod": who},
            )
        updates = self._catch_up_containers(live, containers, report)
        self.last_sync = report
        return updates

    def _catch_up_containers(
        self,
        live: Sequence[tuple[PodInfo, list[AttachPlan]]],
        containers: Sequence[ContainerInfo],
        report: SyncReport,
    ) -> list[ContainerUpdate]:
        """knd.driver.missed_containers for every live pod with plans: log, count and report
        each finding; the CPU updates go back to the runtime."""
        updates: list[ContainerUpdate] = []
        for pod, plans in live:
            who = f"{pod.namespace}/{pod.name}"
            for finding in catch_up(pod, plans, containers):
                report.missed_create.append(finding.message)
                if finding.update is not None:
                    updates.append(finding.update)
                    self.metrics.sync_container_catchups.labels("cpuset").inc()
                if finding.missing_devices:
                    self.metrics.sync_container_catchups.labels("devices_missing").inc()
                    if self.events is not None:
                        self.events.warning(
                            ObjectRef.pod(pod.namespace, pod.name, pod.uid),
                            RDMA_DEVICES_MISSING,
                            finding.message,
                        )
                # Caught up entirely: a warning; something left wrong: an error.
                fixed = finding.update is not None and not finding.missing_devices
                level = logging.WARNING if fixed else logging.ERROR
                log.log(level, "synchronize: %s", finding.message, extra={"pod": who})
        return updates

    def report_lease(self, lease: Tracked, valid: bool, reason: str, message: str) -> None:
        """LeaseKeeper observer: write the lease's state into the claim's status
        (`DHCPLease` condition) next to the device's other conditions."""
        for record in self.store.plans_for_pod(lease.pod_uid):
            if record.device != lease.device:
                continue
            try:
                plan = AttachPlan.from_json(json.dumps(record.plan))
            except NetnsError:
                log.exception("lease report: unusable plan for %s", record.device)
                return
            condition = Condition("DHCPLease", valid, reason, message)
            self._queue_status(
                [record], [_ready(record, plan, _as_attached(plan), lease=condition)]
            )

    def _track_telemetry(
        self, pod: PodInfo, netns: str, pairs: Sequence[tuple[PlanRecord, AttachPlan]]
    ) -> None:
        """Per-pod NIC counters from now on (knd.driver.nic_telemetry); never raises."""
        if self.telemetry is None:
            return
        entries = []
        for record, plan in pairs:
            claim = self.store.claim(record.claim_uid)
            entries.append((claim.name if claim is not None else record.claim_uid, plan))
        self.telemetry.track(pod.uid, pod.namespace, pod.name, netns, nics_of(entries))

    def _count_heal(self, result: str) -> None:
        self.metrics.sync_heals.labels(result).inc()

    def _plans_quiet(self, pod: PodInfo) -> list[tuple[PlanRecord, AttachPlan]]:
        try:
            return self._plans(pod)
        except HookError:
            log.exception("synchronize: unusable plan for pod %s", pod.uid)
            return []


def _lease_condition(plan: AttachPlan) -> Condition | None:
    """`DHCPLease=True` for a device whose address came from DHCP (knd keeps it renewed)."""
    if plan.pod is None or plan.pod.dhcp is None:
        return None
    dhcp = plan.pod.dhcp
    term = "no expiry" if dhcp.lease_time is None else f"{dhcp.lease_time} s, renewed by knd"
    server = f" from {dhcp.server}" if dhcp.server else ""
    return Condition("DHCPLease", True, "DHCPLeaseBound", f"{dhcp.address} leased{server} ({term})")


def _ready(
    record: PlanRecord,
    plan: AttachPlan,
    attached: Attached | None,
    note: str = "",
    lease: Condition | None = None,
) -> DeviceStatus:
    """The status of an attached device: Ready, NetworkReady, DHCPLease (`lease`, else the
    bound lease of the plan), RDMALinkReady."""
    suffix = f" ({note})" if note else ""
    conditions: list[Condition] = []
    network = None
    if plan.pod is not None and attached is not None:
        name = attached.interface_name or plan.pod.name
        conditions.append(
            Condition(
                "Ready",
                True,
                "NetworkDeviceReady",
                f"interface {name} configured in the pod{suffix}",
            )
        )
        conditions.append(
            Condition(
                "NetworkReady",
                True,
                "NetworkReady",
                f"addresses, routes, rules and neighbours applied on {name}{suffix}",
            )
        )
        network = NetworkData(name, attached.ips, attached.hardware_address or "")
        dhcp = lease or _lease_condition(plan)
        if dhcp is not None:
            conditions.append(dhcp)
    elif plan.pod is None:
        conditions.append(
            Condition(
                "Ready",
                True,
                "RDMAOnlyDeviceReady",
                f"RDMA-only device: char devices injected into containers{suffix}",
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


def _as_attached(plan: AttachPlan) -> Attached | None:
    """What a completed attach of `plan` reported (for re-asserting status after a restart)."""
    if plan.pod is None or plan.host is None:
        return None
    return Attached(plan.device, plan.pod.name, plan.pod.mac or plan.host.mac, plan.pod.addresses)


def _failed(record: PlanRecord, message: str) -> DeviceStatus:
    return DeviceStatus(
        pool=record.pool,
        device=record.device,
        conditions=(Condition("Ready", False, "NetworkDeviceAttachFailed", message),),
    )


__all__ = ["NetworkHooks", "SyncReport"]
