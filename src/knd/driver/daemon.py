"""`knd driver`: the node daemon, one process — discovery + publisher, kubelet plugin, NRI
plugin, state store, claim status writer, device health, metrics and probes.

Start order (docs/architecture.md): metrics/probe server → load state → reconcile it with the
live host → cloud provider (detected in < 1 s off a cloud; docs/clouds.md) → register with the
kubelet → connect to NRI → publish (once NRI has synchronized, at most NRI_BEFORE_PUBLISH_S
when the runtime's NRI socket exists). The probe server comes first
so the startup probe can see the daemon come up (`/healthz` is 503 until the kubelet plugin is
registered). Shutdown (SIGTERM/SIGINT) follows knd.driver.lifecycle: the kubelet plugin stops
first (no new prepares), prepared pods get a bounded grace period to pass their NRI hooks, then
NRI, the publisher and the store stop.

Every collaborator that talks to the outside (API client, sysfs root, kubelet root, NRI socket)
comes from `DaemonOptions`, so the lab and the tests run the same daemon against emulators.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knd.driver import uninstall
from knd.driver.claim_api import KubeClaimApi
from knd.driver.events import CLAIM_STATUS_REFUSED, ClaimEvents, EventSink, ObjectRef
from knd.driver.health import HealthServer, HealthState
from knd.driver.hooks import NetworkHooks, NullStatus, StatusSink
from knd.driver.leases import LeaseKeeper, release_from_host
from knd.driver.lifecycle import Lifecycle
from knd.driver.metrics import DriverMetrics
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.driver.nic_telemetry import NicTelemetry
from knd.driver.node_addresses import NodeAddresses
from knd.driver.options import DaemonOptions
from knd.driver.prepare import PrepareEngine
from knd.driver.providers import Providers, ipam_path
from knd.driver.providers import build as build_providers
from knd.driver.reconcile import (
    ReconcileReport,
    rebuild_from_records,
    recapture_after_reboot,
    reconcile,
)
from knd.driver.restore_records import RestoreRecords, records_dir_for
from knd.driver.restorer import Restorer
from knd.driver.snapshots import DeviceSnapshots, merge, snapshot_of
from knd.driver.status_writer import Condition, DeviceStatus, StatusWriter, with_share_ids
from knd.driver.store import PlanRecord, StateStore
from knd.host.netlink import LiveNetlink
from knd.host.netlink_events import NetlinkEvents
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud.coreweave import labels_of
from knd.inventory.discover import Options as InventoryOptions
from knd.inventory.filter import AdminFilter
from knd.inventory.rescan import Rescanner
from knd.inventory.scanner import Inventory, ScanResult
from knd.kube.connection import ApiConnection
from knd.kube.publisher import PublishError, SlicePublisher
from knd.kube.slice_client import RestSliceClient
from knd.kubelet.health import HealthMonitor
from knd.kubelet.health_probe import HealthTarget, SysfsLinkProbe
from knd.kubelet.plugin import KubeletPlugin
from knd.netns import rdma
from knd.netns.capture import capture_host_state
from knd.netns.errors import NetnsError
from knd.netns.plan import AttachPlan, HostSide
from knd.netns.rawlink import LinkFacts, LinkSocket
from knd.netns.steps import StepObserver
from knd.nri.plugin import NriPlugin, PluginConfig

log = logging.getLogger(__name__)

RDMA_ATTR = "dra.net/rdma"
#: The longest the publisher waits for the first NRI Synchronize (only when the runtime's NRI
#: socket exists): see Daemon._await_nri.
NRI_BEFORE_PUBLISH_S = 10.0
IFNAME_ATTR = "dra.net/ifName"
RDMA_DEVICE_ATTR = "dra.net/rdmaDevice"


@dataclass
class Step:
    """A named start/stop pair for the lifecycle."""

    name: str
    on_start: Any
    on_stop: Any = None

    def start(self) -> None:
        self.on_start()

    def stop(self) -> None:
        if self.on_stop is not None:
            self.on_stop()


def _nothing() -> None:
    return None


def build_hooks(
    store: StateStore,
    status: StatusSink,
    metrics: DriverMetrics,
    restorer: Restorer,
    *,
    node_addresses: Callable[[], frozenset[str]] = frozenset,
    step_observer: StepObserver | None = None,
    events: EventSink | None = None,
    telemetry: NicTelemetry | None = None,
) -> tuple[NetworkHooks, LeaseKeeper]:
    """The NRI hooks and their DHCP lease keeper (started), wired as the daemon runs them
    (also used by bench/pod_startup.py, so the benchmark measures the daemon's hooks)."""
    leases = LeaseKeeper(count=lambda result: metrics.dhcp_renewals.labels(result).inc())
    leases.start()
    hooks = NetworkHooks(
        store=store,
        status=status,
        metrics=metrics,
        step_observer=step_observer,
        leases=leases,
        restorer=restorer,
        node_addresses=node_addresses,
        events=events,
        telemetry=telemetry,
    )
    leases.set_observer(hooks.report_lease)
    return hooks, leases


def _capture_host_side(ifname: str) -> HostSide:
    state = capture_host_state(ifname)
    assert state.host is not None
    return dataclasses.replace(
        state.host, features=state.feature_values, private_flags=state.private_flag_values
    )


def _host_links() -> list[LinkFacts]:
    lsock = LinkSocket()
    try:
        return lsock.links()
    finally:
        lsock.close()


class Daemon:
    """Builds and runs the whole node daemon from `DaemonOptions` and an API server connection."""

    def __init__(
        self,
        opts: DaemonOptions,
        api: ApiConnection,
        sysfs_root: str = "/sys",
        *,
        step_observer: StepObserver | None = None,
    ) -> None:
        self.opts = opts
        #: tests only (knd.netns.steps): called before each step of every attach the hooks run
        self.step_observer = step_observer
        self.api = api
        self.sysfs_root = sysfs_root
        self.metrics = DriverMetrics()
        self.health = HealthState()
        self.metrics.bind_state(lambda: self.health.registered, lambda: self.health.nri_connected)
        api.observer = self.metrics.observe_api
        self.admin_filter = AdminFilter(opts.filter, opts.driver_name)  # fails start-up early
        self.events = EventSink(api, component=opts.driver_name, host=opts.node_name)
        self.rdma_mode, rdma_problem = rdma.netns_mode_or_shared()
        if rdma_problem:
            log.info("RDMA netlink unavailable (%s): assuming shared netns mode", rdma_problem)
        self.store: StateStore | None = None
        #: PersistentResourceSliceAttributes (DraNet's gate): set when the store opens
        self.snapshots: DeviceSnapshots | None = None
        self.status: StatusWriter | None = None
        self.kubelet: KubeletPlugin | None = None
        self.nri: NriPlugin | None = None
        self.hooks: NetworkHooks | None = None
        self.leases: LeaseKeeper | None = None
        # Per-pod NIC counters, collected at scrape time (knd.driver.nic_telemetry).
        self.telemetry = NicTelemetry(sysfs_root)
        self.metrics.registry.register(self.telemetry)
        self.reconciled = ReconcileReport()
        self.records: RestoreRecords | None = None
        self.restorer: Restorer | None = None
        slices = RestSliceClient(api)
        self.node_addresses = NodeAddresses(lambda: slices.get_node(opts.node_name))
        self.last_scan: ScanResult | None = None
        self._server: HealthServer | None = None
        # Cloud + profile providers (knd.driver.providers): nothing is contacted until the
        # "cloud" step; cloud attributes join each scan through `enrich`.
        self.providers: Providers = build_providers(
            opts,
            SysfsRoot(Path(sysfs_root)),
            self._read_configmap,
            lambda: labels_of(slices.get_node(opts.node_name)),
        )
        self._inventory = Inventory(
            sysfs=SysfsRoot(Path(sysfs_root)),
            netlink=LiveNetlink(),
            admin_filter=self.admin_filter,
            options=InventoryOptions(
                move_ib_interfaces=opts.move_ib_interfaces,
                list_numa=opts.feature_gates.list_type_attributes,
                enrich=self.providers.cloud.enrich,
                shares=opts.device_shares,
            ),
        )
        self._publish_failures = 0
        self._publish_retry_at = 0.0  # clock() time of the scheduled publish retry
        self.clock = time.monotonic
        self._publisher = SlicePublisher(RestSliceClient(api), opts.node_name, opts.driver_name)
        self._rescan = _Rescan(self)
        self.providers.cloud.on_ready = self._rescan.request  # cloud loaded late: rescan
        self._events: NetlinkEvents | None = None
        self._health_monitor: HealthMonitor | None = None
        self._claims_at_close: int | None = None
        self.lifecycle = Lifecycle(
            [
                Step("metrics", self._start_server, self._stop_server),
                # stops after the store closed: an uninstall leaves no state (knd.driver.uninstall)
                Step("uninstall", _nothing, self._forget_if_uninstalled),
                Step("store", self._open_store, self._close_store),
                Step("reconcile", self._reconcile),
                Step("cloud", self.providers.start, self.providers.stop),
                Step("kubelet-plugin", self._start_kubelet, self._stop_kubelet),
                Step("nri", self._start_nri, self._stop_nri),
                Step("publisher", self._start_publisher, self._stop_publisher),
            ],
            pending_pods=self.pending_pods,
            grace_period=opts.shutdown_grace_period,
        )

    # -- steps ----------------------------------------------------------------------------
    def _start_server(self) -> None:
        self._server = HealthServer(self.opts.bind_address, self.health, self.metrics.registry)
        self._server.start()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()

    def _open_store(self) -> None:
        self.store = StateStore(self.opts.state_path)
        if self.opts.feature_gates.persistent_slice_attributes:
            self.snapshots = DeviceSnapshots(self.store)
        log.info("state %s: %d prepared claim(s)", self.opts.state_path, len(self.store.claims()))
        self.records = RestoreRecords(records_dir_for(self.opts.state_path))
        self.restorer = Restorer(
            self.store,
            self.records,
            metrics=self.metrics,
            report=self._report_device,
            held_netns=self.telemetry.take_netns,
            backoff=self.opts.retry.restore,
        )

    def _status_writer(self) -> StatusWriter:
        """The claim status writer (created on first use: start-up reconciliation reports
        through it before the kubelet plugin starts)."""
        if self.status is None:
            kube = KubeClaimApi(self.api, component=self.opts.driver_name, host=self.opts.node_name)
            self.status = StatusWriter(
                applier=kube,
                driver=self.opts.driver_name,
                backoff=self.opts.retry.status,
                on_retry=self.metrics.status_write_retries.inc,
                on_refused=self._status_refused,
            )
        return self.status

    def _status_refused(self, namespace: str, name: str, uid: str | None, message: str) -> None:
        """A Warning Event on the claim whose status the API server refused for good, so
        `kubectl describe resourceclaim` says why `status.devices` is missing. Never raises
        (the sink only enqueues)."""
        ref = ObjectRef.claim(namespace, name, uid or "")
        self.events.warning(ref, CLAIM_STATUS_REFUSED, message)

    def _report_device(self, record: PlanRecord, reason: str, message: str) -> None:
        """`Ready=False` on the claim of one device (restore trouble, start-up errors)."""
        assert self.store is not None
        claim = self.store.claim(record.claim_uid)
        if claim is None:
            return
        status = DeviceStatus(
            pool=record.pool,
            device=record.device,
            conditions=(Condition("Ready", False, reason, message),),
        )
        self._status_writer().submit(
            claim.namespace,
            claim.name,
            with_share_ids([status], claim.result.get("devices") or []),
            uid=claim.uid,
        )

    def _close_store(self) -> None:
        self.events.close()
        if self.restorer is not None:
            self.restorer.stop()
        if self.status is not None:
            self.status.flush(5.0)
            self.status.close()
        if self.store is not None:
            self._claims_at_close = len(self.store.claims())
            self.store.close()

    def _forget_if_uninstalled(self) -> None:
        """The DaemonSet is gone (an uninstall, not a restart): remove the state files unless a
        pod still holds a NIC through knd (knd.driver.uninstall; sockets go on every stop)."""
        if self._claims_at_close is None:
            return  # the store never opened or did not close cleanly: touch nothing
        if not uninstall.daemonset_deleted(self.api, uninstall.daemonset_ref()):
            return
        state = Path(self.opts.state_path)
        done = uninstall.remove_state(
            state, records_dir_for(state), self._claims_at_close, companions=[ipam_path(state)]
        )
        if done.kept:
            log.warning("uninstalled: state %s kept for %s (docs/uninstall.md)", state, done.kept)
        else:
            log.info("uninstalled: removed %s", ", ".join(done.removed) or "nothing")

    def _reconcile(self) -> None:
        """Start-up reconciliation (knd.driver.reconcile); never raises."""
        assert self.store is not None and self.restorer is not None
        assert self.records is not None
        rebuilt = rebuild_from_records(
            self.store,
            self.records,
            KubeClaimApi(self.api, component=self.opts.driver_name, host=self.opts.node_name),
            self.restorer,
            metrics=self.metrics,
        )
        self.reconciled = reconcile(
            self.store, self.restorer, metrics=self.metrics, report=self._report_device
        )
        self.reconciled.rebuilt, self.reconciled.released = rebuilt.rebuilt, rebuilt.released
        self.reconciled.errors[:0] = rebuilt.errors
        if self.store.rebooted:
            recapture_after_reboot(
                self.store,
                self.records,
                _capture_host_side,
                _host_links,
                report=self._report_device,
                out=self.reconciled,
            )
        self.restorer.start()

    def _start_kubelet(self) -> None:
        assert self.store is not None
        kube = KubeClaimApi(self.api, component=self.opts.driver_name, host=self.opts.node_name)
        self._status_writer()
        engine = PrepareEngine(
            driver=self.opts.driver_name,
            store=self.store,
            reader=kube,
            events=ClaimEvents(self.events),
            plan_builder=NetnsPlanBuilder(
                rdma_mode=self.rdma_mode,
                sysfs_root=self.sysfs_root,
                node_addresses=self.node_addresses.get,
                ipam=self.providers.ipam,
            ),
            pool=self.opts.node_name,
            profiles=self.providers.profiles,
            device_configs=self.providers.cloud.device_config,
            on_device_error=self._report_device_error,
            on_ipam_release=self.providers.release,
            on_released=_release_dhcp_from_host,
            records=self.records,
            restorer=self.restorer,
            max_shares=self.opts.device_shares,
        )
        # Link events poke the monitor (see _on_netlink_event); the poll is only a backstop.
        monitor = HealthMonitor(
            SysfsLinkProbe(
                self.health_targets, Path(self.sysfs_root), attached=self.telemetry.link_state
            ),
            poll_s=5.0,
        )
        self._health_monitor = monitor
        self.kubelet = KubeletPlugin(
            self.opts.driver_name,
            _Timed(engine, self.metrics, self.status, self._after_prepare, self._after_unprepare),
            self.opts.kubelet_root_dir,
            monitor,
        )
        self.events.start()
        self.kubelet.start()
        registered = self.kubelet.registration.registered
        threading.Thread(
            target=self._await_registration,
            args=(registered,),
            name="await-registration",
            daemon=True,
        ).start()

    def _await_registration(self, registered: threading.Event) -> None:
        registered.wait()
        self.health.set(registered=True)
        log.info("registered with the kubelet")

    def _stop_kubelet(self) -> None:
        self.health.set(shutting_down=True)
        if self.kubelet is not None:
            self.kubelet.stop()

    def _start_nri(self) -> None:
        assert self.store is not None and self.restorer is not None
        self.hooks, self.leases = build_hooks(
            self.store,
            self.status if self.status is not None else NullStatus(),
            self.metrics,
            self.restorer,
            node_addresses=self.node_addresses.cached,
            step_observer=self.step_observer,
            events=self.events,
            telemetry=self.telemetry,
        )
        cfg = PluginConfig(
            socket_path=self.opts.nri_socket,
            name=self.opts.nri_plugin_name,
            index=self.opts.nri_plugin_index,
        )
        self.nri = NriPlugin(self.hooks, cfg)
        self.nri.timer.add_observer(
            lambda method, seconds, ok: self.metrics.observe_nri(
                method, "success" if ok else "failed", seconds
            )
        )
        self.nri.start()
        threading.Thread(target=self._watch_nri, name="nri-ready", daemon=True).start()

    def _watch_nri(self) -> None:
        while self.nri is not None and not self.health.shutting_down:
            self.health.set(nri_connected=self.nri.connected)
            time.sleep(0.5)

    def _stop_nri(self) -> None:
        if self.nri is not None:
            self.nri.stop()
        if self.leases is not None:
            self.leases.stop()
        self.telemetry.close()
        self.health.set(nri_connected=False)

    def _start_publisher(self) -> None:
        self._await_nri()
        self._rescan.start()
        self._events = NetlinkEvents(self._on_netlink_event)
        try:
            self._events.start()
        except Exception:
            log.exception("netlink events unavailable; rescanning on the periodic resync only")
            self._events = None

    def _await_nri(self) -> None:
        """Publish once the runtime can reach knd's hooks. A pod scheduled onto knd's devices
        before then starts without RunPodSandbox and CreateContainer: the first Synchronize
        attaches its NIC and narrows its cpuset, but RDMA char devices cannot be added to a
        running container. Waits at most NRI_BEFORE_PUBLISH_S (registration is milliseconds
        on a healthy node), and only when the runtime's NRI socket exists: a node without NRI
        publishes at once. After a restart the slices are in the API server already, so the
        wait delays only updates."""
        nri = self.nri
        if nri is None or not os.path.exists(self.opts.nri_socket):
            return
        if nri.wait_synchronized(NRI_BEFORE_PUBLISH_S):
            return
        log.warning(
            "NRI is not connected after %g s (%s): publishing anyway; pods that start "
            "before it connects get their devices at its first Synchronize",
            NRI_BEFORE_PUBLISH_S,
            nri.last_close_reason or "no answer from the runtime",
        )

    def _on_netlink_event(self) -> None:
        """Links, addresses or routes changed: rescan (rate limited) and re-probe health."""
        self._rescan.request()
        if self.restorer is not None:
            self.restorer.poke()  # a NIC handed back from a destroyed netns
        if self._health_monitor is not None:
            self._health_monitor.poke()

    def _stop_publisher(self) -> None:
        if self._events is not None:
            self._events.stop()
        self._rescan.stop()

    # -- helpers --------------------------------------------------------------------------
    def _after_prepare(self, results: Any) -> None:
        """PersistentResourceSliceAttributes: snapshot the devices of the prepared claims."""
        if self.snapshots is None or self.last_scan is None:
            return
        live = self.last_scan.discovery.by_name()
        for claim_uid, devices in snapshot_of(results, live).items():
            self.snapshots.record(claim_uid, devices)

    def _after_unprepare(self, claims: Any, errors: Any) -> None:
        if self.snapshots is None:
            return
        for ref in claims:
            if not errors.get(ref.uid):
                self.snapshots.forget(ref.uid)

    def _with_snapshots(self, result: ScanResult) -> ScanResult:
        """The scan with allocated devices' snapshots merged in, then filtered (DraNet's order)."""
        if self.snapshots is None:
            return result
        merged = merge(result.discovery.devices, self.snapshots.active())
        kept, dropped, warnings = self.admin_filter.apply(merged)
        return ScanResult(result.discovery, kept, dropped, warnings)

    def _read_configmap(self, namespace: str, name: str) -> dict[str, str]:
        """The `data` of a ConfigMap (IPAM profiles); raises on any API error."""
        obj = self.api.request(
            "GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}", timeout_s=5.0
        )
        data = obj.get("data") or {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _report_device_error(self, claim: Any, pool: str, device: str, message: str) -> None:
        """A device failed at prepare (e.g. its profile): `Ready=False` in the claim status."""
        meta = claim.get("metadata") or {}
        if self.status is None or not meta.get("name"):
            return
        cond = Condition("Ready", False, "ProfileResolutionFailed", message)
        allocation = (claim.get("status") or {}).get("allocation") or {}
        results = (allocation.get("devices") or {}).get("results") or []
        ours = [r for r in results if r.get("driver") == self.opts.driver_name]
        self.status.submit(
            str(meta.get("namespace", "")),
            str(meta["name"]),
            with_share_ids([DeviceStatus(pool, device, (cond,))], ours),
        )

    def publish(self, result: ScanResult) -> None:
        """Publish one scan result (called by the rescan loop).

        `last_scan` keeps the live scan: health is probed on what the host has, never on a
        snapshot of a device that is inside a pod (its netdev is not on the host)."""
        self.last_scan = result
        result = self._with_snapshots(result)
        try:
            outcome = self._publisher.publish(result.published)
        except PublishError as exc:  # one line per back-off step, no traceback
            self.metrics.publish_errors.inc()
            now = self.clock()
            if now + 0.1 < self._publish_retry_at:  # a rescan between steps: the retry stands
                log.debug("publishing ResourceSlices failed again: %s", exc)
                return
            self._publish_failures += 1
            delay = self.opts.retry.publish.delay(self._publish_failures)
            self._publish_retry_at = now + delay
            log.warning("publishing ResourceSlices failed: %s; retrying in %.0f s", exc, delay)
            self._rescan.retry_later(delay)
            return
        self._publish_failures = 0
        self._publish_retry_at = 0.0
        rdma_count = sum(1 for d in result.published if d.get(RDMA_ATTR) is True)
        self.metrics.set_published(len(result.published), rdma_count)
        self.health.set(published=True)
        if outcome.writes:
            log.info("published %d device(s) in %d write(s)", len(result.published), outcome.writes)

    def health_targets(self) -> list[HealthTarget]:
        """Published devices and the kernel objects their health depends on."""
        scan = self.last_scan
        if scan is None:
            return []
        out = []
        for dev in scan.published:
            ifname = dev.get(IFNAME_ATTR)
            rdma_dev = dev.get(RDMA_DEVICE_ATTR)
            out.append(
                HealthTarget(
                    pool=self.opts.node_name,
                    device=dev.name,
                    ifname=ifname if isinstance(ifname, str) else None,
                    rdma_device=rdma_dev if isinstance(rdma_dev, str) else None,
                )
            )
        return out

    def pending_pods(self) -> int:
        """Prepared pods that have not passed their NRI hooks yet (for the shutdown drain)."""
        if self.store is None:
            return 0
        pending = 0
        for claim in self.store.claims():
            pod = self.store.pod(claim.pod_uid)
            if pod is not None and pod.last_nri_activity is None:
                pending += 1
        return pending

    def run(self) -> None:
        """Start, wait for SIGTERM/SIGINT, shut down gracefully."""
        self.lifecycle.install_signal_handlers()
        self.lifecycle.run()


class _Rescan:
    """The inventory rescan loop wired to the publisher (knd.inventory.rescan.Rescanner)."""

    def __init__(self, daemon: Daemon) -> None:
        opts = daemon.opts
        self._loop = Rescanner(
            daemon._inventory.scan,
            daemon.publish,
            resync_s=opts.inventory_max_poll_interval,
            min_interval_s=opts.inventory_min_poll_interval,
            burst=opts.inventory_poll_burst,
        )
        self._retry: threading.Timer | None = None

    def start(self) -> None:
        self._loop.start(initial=True)

    def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._loop.stop()

    def request(self) -> None:
        self._loop.request()

    def retry_later(self, delay: float = 5.0) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._retry = threading.Timer(delay, self._loop.request)
        self._retry.daemon = True
        self._retry.start()


class _Timed:
    """Counts and times the kubelet calls in the daemon's metrics."""

    def __init__(
        self,
        engine: PrepareEngine,
        metrics: DriverMetrics,
        status: StatusWriter | None = None,
        after_prepare: Any = None,
        after_unprepare: Any = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.status = status
        self.after_prepare = after_prepare
        self.after_unprepare = after_unprepare

    def prepare(self, claims: Any) -> Any:
        with self.metrics.time_dra("NodePrepareResources") as call:
            results = self.engine.prepare(claims)
            call.failed = any(r.error for r in results.values())
        if self.after_prepare is not None:
            try:
                self.after_prepare(results)
            except Exception:  # the claims are prepared; a lost snapshot must not undo that
                log.exception("after prepare")
        return results

    def unprepare(self, claims: Any) -> Any:
        with self.metrics.time_dra("NodeUnprepareResources") as call:
            errors = self.engine.unprepare(claims)
            call.failed = any(errors.values())
        if self.after_unprepare is not None:
            try:
                self.after_unprepare(claims, errors)
            except Exception:
                log.exception("after unprepare")
        if self.status is not None:
            # The writer keeps each claim's last applied entries; an unprepared claim's must
            # go, or they accumulate for the daemon's lifetime (found by bench/daemon.py).
            for ref in claims:
                if not errors.get(ref.uid):
                    self.status.forget(ref.namespace, ref.name)
        return errors


def _release_dhcp_from_host(record: Any) -> None:
    """PrepareEngine.on_released: the DHCPRELEASE of an unprepared device's lease, from the host
    (a backstop for the release sent from the pod netns at StopPodSandbox)."""
    try:
        plan = AttachPlan.from_json(_dumps(record.plan))
        if release_from_host(plan):
            log.info("DHCP lease of %s released from the host", record.device)
    except (NetnsError, OSError) as exc:
        log.info("DHCP release of %s from the host not sent: %s", record.device, exc)


def _dumps(obj: Any) -> str:
    return json.dumps(obj)
