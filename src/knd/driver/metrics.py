"""The daemon's Prometheus metrics, in one registry per daemon (no global state).

knd's series (`knd_driver_*`, `knd_rest_client_*`, `knd_build_info`) follow Prometheus naming
conventions: base units, `_duration_seconds` histograms, `_total` counters, no label value that
is the sum of the others. DraNet's exact series (`dranet_driver_*`, knd.driver.metrics_dranet)
are fed from the same calls and served beside them, so DraNet dashboards keep working. knd adds
attach/detach failure, rollback, publish-error and status-retry counters, NRI/kubelet state
gauges and API-client request metrics. Every metric is documented in docs/metrics.md.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from knd import __version__
from knd.driver.metrics_dranet import DranetMetrics

NAMESPACE = "knd"
SUBSYSTEM = "driver"
#: Buckets from 1 ms to 45 s: NRI hooks must finish within 2 s, and the kubelet gives a
#: prepare 45 s, so a slow prepare lands in a bucket below +Inf.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    30.0,
    45.0,
)
#: API server calls: the client's timeout is 10 s.
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class DraCall:
    """One timed kubelet call; set `failed` when any claim in it failed."""

    failed: bool = False


class DriverMetrics:
    """All metrics of one daemon, registered in `self.registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        reg = self.registry
        self.dra_requests = Counter(
            "dra_plugin_requests",
            "DRA kubelet plugin requests by method and status",
            ["method", "status"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.dra_latency = Histogram(
            "dra_plugin_request_duration_seconds",
            "DRA kubelet plugin request duration (the kubelet allows 45 s)",
            ["method", "status"],
            buckets=LATENCY_BUCKETS,
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.nri_requests = Counter(
            "nri_plugin_requests",
            "NRI hook calls by method and status (success/failed/noop)",
            ["method", "status"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.nri_latency = Histogram(
            "nri_plugin_request_duration_seconds",
            "NRI hook duration (budget: 2 s)",
            ["method", "status"],
            buckets=LATENCY_BUCKETS,
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.published_devices = Gauge(
            "published_devices",
            "Devices in the published ResourceSlices",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.published_rdma_devices = Gauge(
            "published_rdma_devices",
            "Published devices with dra.net/rdma true",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.publish_errors = Counter(
            "publish_errors",
            "ResourceSlice publish attempts that failed (retried on the next scan)",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.nri_connected = Gauge(
            "nri_connected",
            "1 while connected to the container runtime's NRI socket",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.kubelet_registered = Gauge(
            "kubelet_plugin_registered",
            "1 while the kubelet has the DRA plugin registered",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.build_info = Gauge(
            "build_info",
            "Always 1; labels: knd version and Python version",
            ["version", "python_version"],
            namespace=NAMESPACE,
            registry=reg,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.api_requests = Counter(
            "requests",
            "API server requests by HTTP method and status code (0: unreachable)",
            ["method", "code"],
            namespace=NAMESPACE,
            subsystem="rest_client",
            registry=reg,
        )
        self.api_duration = Histogram(
            "request_duration_seconds",
            "API server request duration by HTTP method",
            ["method"],
            buckets=API_BUCKETS,
            namespace=NAMESPACE,
            subsystem="rest_client",
            registry=reg,
        )
        self.last_published = Gauge(
            "last_published_time_seconds",
            "Unix time of the last successful publish",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.attach_failures = Counter(
            "attach_failures",
            "Device attach failures by step",
            ["step"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.detach_failures = Counter(
            "detach_failures",
            "Device detach/restore failures by step",
            ["step"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.rollbacks = Counter(
            "attach_rollbacks",
            "Pods whose attach was rolled back",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.sync_heals = Counter(
            "sync_heals",
            "Pods found running without their devices at NRI Synchronize (started while knd "
            "was down), by result of the late attach (attached/failed)",
            ["result"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.sync_container_catchups = Counter(
            "sync_container_catchups",
            "Containers found at NRI Synchronize that never reached knd's CreateContainer (a "
            "hook past the runtime's deadline, or knd down), by what was done: cpuset "
            "(narrowed now) or devices_missing (RDMA char devices cannot be added: reported)",
            ["what"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.dhcp_renewals = Counter(
            "dhcp_renewals",
            "DHCP lease renewals of attached devices, by result (ack/nak/error/expired)",
            ["result"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.restores = Counter(
            "restores",
            "Devices brought back to their host state, by path (stop/unprepare/handback/"
            "retry/startup) and result (home, or gone/failed: retried with backoff)",
            ["path", "result"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.restore_pending = Gauge(
            "restore_pending",
            "Devices not home yet, waiting for a restore retry",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.reconcile_errors = Counter(
            "reconcile_errors",
            "Start-up reconciliation errors (one per pod or record; the daemon starts anyway)",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.status_write_retries = Counter(
            "status_write_retries",
            "ResourceClaim status writes retried",
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.dranet = DranetMetrics(reg)

    @contextmanager
    def time_dra(self, method: str) -> Iterator[DraCall]:
        """Count and time one DRA call: `failed` when it raises (the exception propagates) or
        when the caller sets `call.failed` (a claim in it failed, as DraNet counts)."""
        call = DraCall()
        start = time.perf_counter()
        try:
            yield call
        except BaseException:
            call.failed = True
            raise
        finally:
            seconds = time.perf_counter() - start
            status = "failed" if call.failed else "success"
            self.dra_requests.labels(method, status).inc()
            self.dra_latency.labels(method, status).observe(seconds)
            self.dranet.observe_dra(method, call.failed, seconds)

    def observe_nri(self, method: str, status: str, seconds: float) -> None:
        """Record one NRI hook call (the NRI layer measures; the daemon records)."""
        self.nri_requests.labels(method, status).inc()
        self.nri_latency.labels(method, status).observe(seconds)
        self.dranet.observe_nri(method, status, seconds)

    def observe_api(self, method: str, code: int, seconds: float) -> None:
        """Record one API server request (knd.kube.connection.RequestObserver)."""
        self.api_requests.labels(method, str(code)).inc()
        self.api_duration.labels(method).observe(seconds)

    def set_published(self, total: int, rdma: int) -> None:
        """Record a successful publish."""
        now = time.time()
        self.published_devices.set(total)
        self.published_rdma_devices.set(rdma)
        self.last_published.set(now)
        self.dranet.set_published(total, rdma, now)

    def bind_state(self, registered: Callable[[], bool], nri_connected: Callable[[], bool]) -> None:
        """Serve the registration and NRI gauges from these readers (read at scrape time)."""
        self.kubelet_registered.set_function(lambda: 1.0 if registered() else 0.0)
        self.nri_connected.set_function(lambda: 1.0 if nri_connected() else 0.0)
