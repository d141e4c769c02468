"""`knd driver`: the node daemon, one process — discovery + publisher, kubelet plugin, NRI
plugin, state store, claim status writer, device health, metrics and probes.

Start order (docs/architecture.md): metrics/probe server → load state → reconcile it with the
live host → register with the kubelet → connect to NRI → publish. The probe server comes first
so the startup probe can see the daemon come up (`/healthz` is 503 until the kubelet plugin is
registered). Shutdown (SIGTERM/SIGINT) follows knd.driver.lifecycle: the kubelet plugin stops
first (no new prepares), prepared pods get a bounded grace period to pass their NRI hooks, then
NRI, the publisher and the store stop.

Every collaborator that talks to the outside (API client, sysfs root, kubelet root, NRI socket)
comes from `DaemonOptions`, so the lab and the tests run the same daemon against emulators.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knd.driver.claim_api import KubeClaimApi
from knd.driver.health import HealthServer, HealthState
from knd.driver.hooks import NetworkHooks, attach_pause_from_env
from knd.driver.leases import LeaseKeeper
from knd.driver.lifecycle import Lifecycle
from knd.driver.metrics import DriverMetrics
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.driver.nic_telemetry import NicTelemetry
from knd.driver.options import DaemonOptions
from knd.driver.prepare import PrepareEngine
from knd.driver.status_writer import StatusWriter
from knd.driver.store import StateStore
from knd.host.netlink import LiveNetlink
from knd.host.netlink_events import NetlinkEvents
from knd.host.sysfs import SysfsRoot
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
from knd.netns.detach import detach
from knd.netns.errors import NetnsError
from knd.netns.plan import AttachPlan
from knd.nri.plugin import NriPlugin, PluginConfig

log = logging.getLogger(__name__)

RDMA_ATTR = "dra.net/rdma"
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


@dataclass
class ReconcileReport:
    """What start-up reconciliation found and did."""

    pods: int = 0
    restored: list[str] = field(default_factory=list)


class Daemon:
    """Builds and runs the whole node daemon from `DaemonOptions` and an API server connection."""

    def __init__(self, opts: DaemonOptions, api: ApiConnection, sysfs_root: str = "/sys") -> None:
        self.opts = opts
        self.api = api
        self.sysfs_root = sysfs_root
        self.metrics = DriverMetrics()
        self.health = HealthState()
        self.admin_filter = AdminFilter(opts.filter, opts.driver_name)  # fails start-up early
        self.rdma_mode, rdma_problem = rdma.netns_mode_or_shared()
        if rdma_problem:
            log.info("RDMA netlink unavailable (%s): assuming shared netns mode", rdma_problem)
        self.store: StateStore | None = None
        self.status: StatusWriter | None = None
        self.kubelet: KubeletPlugin | None = None
        self.nri: NriPlugin | None = None
        self.hooks: NetworkHooks | None = None
        self.leases: LeaseKeeper | None = None
        # Per-pod NIC counters, collected at scrape time (knd.driver.nic_telemetry).
        self.telemetry = NicTelemetry(sysfs_root)
        self.metrics.registry.register(self.telemetry)
        self.reconciled = ReconcileReport()
        self.last_scan: ScanResult | None = None
        self._server: HealthServer | None = None
        self._inventory = Inventory(
            sysfs=SysfsRoot(Path(sysfs_root)),
            netlink=LiveNetlink(),
            admin_filter=self.admin_filter,
            options=InventoryOptions(move_ib_interfaces=opts.move_ib_interfaces),
        )
        self._publisher = SlicePublisher(RestSliceClient(api), opts.node_name, opts.driver_name)
        self._rescan = _Rescan(self)
        self._events: NetlinkEvents | None = None
        self._health_monitor: HealthMonitor | None = None
        self.lifecycle = Lifecycle(
            [
                Step("metrics", self._start_server, self._stop_server),
                Step("store", self._open_store, self._close_store),
                Step("reconcile", self._reconcile),
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
        log.info("state %s: %d prepared claim(s)", self.opts.state_path, len(self.store.claims()))

    def _close_store(self) -> None:
        if self.status is not None:
            self.status.flush(5.0)
            self.status.close()
        if self.store is not None:
            self.store.close()

    def _reconcile(self) -> None:
        """Devices of pods whose netns vanished while knd was down are back on the host
        (the kernel returns them): restore their host state now. Nothing is deleted."""
        assert self.store is not None
        report = ReconcileReport()
        for claim in self.store.claims():
            pod = self.store.pod(claim.pod_uid)
            if pod is None or not pod.netns:
                continue
            report.pods += 1
            if os.path.exists(pod.netns):
                continue
            plans = []
            for record in self.store.plans_for_claim(claim.uid):
                try:
                    plans.append(AttachPlan.from_json(_dumps(record.plan)))
                except NetnsError:
                    log.exception("reconcile: unusable plan for %s", record.device)
            for result in detach(plans, None):
                report.restored.append(f"{result.device}: {result.outcome}")
            self.store.set_netns(pod.uid, None)
        self.reconciled = report
        if report.restored:
            log.info("reconcile: restored %s", ", ".join(report.restored))

    def _start_kubelet(self) -> None:
        assert self.store is not None
        kube = KubeClaimApi(self.api, component=self.opts.driver_name, host=self.opts.node_name)
        # Retries with backoff capped at 10 s for about ten minutes: an API server outage
        # delays status, it never loses it while the daemon runs.
        self.status = StatusWriter(
            applier=kube,
            driver=self.opts.driver_name,
            max_attempts=64,
            on_retry=self.metrics.status_write_retries.inc,
        )
        engine = PrepareEngine(
            driver=self.opts.driver_name,
            store=self.store,
            reader=kube,
            events=kube,
            plan_builder=NetnsPlanBuilder(rdma_mode=self.rdma_mode, sysfs_root=self.sysfs_root),
            pool=self.opts.node_name,
        )
        # Link events poke the monitor (see _on_netlink_event); the poll is only a backstop.
        monitor = HealthMonitor(
            SysfsLinkProbe(self.health_targets, Path(self.sysfs_root)), poll_s=5.0
        )
        self._health_monitor = monitor
        self.kubelet = KubeletPlugin(
            self.opts.driver_name,
            _Timed(engine, self.metrics, self.status),
            self.opts.kubelet_root_dir,
            monitor,
        )
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
        assert self.store is not None
        self.leases = LeaseKeeper(
            count=lambda result: self.metrics.dhcp_renewals.labels(result).inc()
        )
        self.leases.start()
        self.hooks = NetworkHooks(
            store=self.store,
            status=self.status,
            metrics=self.metrics,
            attach_pause=attach_pause_from_env(),  # test-only; None unless the env is set
            leases=self.leases,
            telemetry=self.telemetry,
        )
        self.leases.set_observer(self.hooks.report_lease)
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
        self._rescan.start()
        self._events = NetlinkEvents(self._on_netlink_event)
        try:
            self._events.start()
        except Exception:
            log.exception("netlink events unavailable; rescanning on the periodic resync only")
            self._events = None

    def _on_netlink_event(self) -> None:
        """Links, addresses or routes changed: rescan (rate limited) and re-probe health."""
        self._rescan.request()
        if self._health_monitor is not None:
            self._health_monitor.poke()

    def _stop_publisher(self) -> None:
        if self._events is not None:
            self._events.stop()
        self._rescan.stop()

    # -- helpers --------------------------------------------------------------------------
    def publish(self, result: ScanResult) -> None:
        """Publish one scan result (called by the rescan loop)."""
        self.last_scan = result
        try:
            outcome = self._publisher.publish(result.published)
        except PublishError:
            log.exception("publishing ResourceSlices failed; retrying on the next scan")
            self._rescan.retry_later()
            return
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
        self, engine: PrepareEngine, metrics: DriverMetrics, status: StatusWriter | None = None
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.status = status

    def prepare(self, claims: Any) -> Any:
        with self.metrics.time_dra("NodePrepareResources"):
            return self.engine.prepare(claims)

    def unprepare(self, claims: Any) -> Any:
        with self.metrics.time_dra("NodeUnprepareResources"):
            errors = self.engine.unprepare(claims)
        if self.status is not None:
            # The writer keeps each claim's last applied entries; an unprepared claim's must
            # go, or they accumulate for the daemon's lifetime (found by bench/daemon.py).
            for ref in claims:
                if not errors.get(ref.uid):
                    self.status.forget(ref.namespace, ref.name)
        return errors


def _dumps(obj: Any) -> str:
    return json.dumps(obj)
