"""The daemon's Prometheus metrics, in one registry per daemon (no global state).

Names mirror DraNet's (`dranet_driver_*` → `knd_driver_*`, same labels) so dashboards port with a
prefix rename; knd adds attach/detach failure, rollback and status-retry counters. Every metric
is documented in docs/metrics.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

NAMESPACE = "knd"
SUBSYSTEM = "driver"
#: Buckets from 1 ms to 10 s: NRI hooks must finish within 2 s, prepare within 45 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


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
            "dra_plugin_requests_latency_seconds",
            "DRA kubelet plugin request latency",
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
            "nri_plugin_requests_latency_seconds",
            "NRI hook latency (budget: 2 s)",
            ["method", "status"],
            buckets=LATENCY_BUCKETS,
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
            registry=reg,
        )
        self.published_devices = Gauge(
            "published_devices",
            "Devices in the published ResourceSlices",
            ["feature"],
            namespace=NAMESPACE,
            subsystem=SUBSYSTEM,
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

    @contextmanager
    def time_dra(self, method: str) -> Iterator[None]:
        """Count and time one DRA call; an exception marks it `failed` and propagates."""
        with self._timed(self.dra_requests, self.dra_latency, method):
            yield

    def observe_nri(self, method: str, status: str, seconds: float) -> None:
        """Record one NRI hook call (the NRI layer measures; the daemon records)."""
        self.nri_requests.labels(method, status).inc()
        self.nri_latency.labels(method, status).observe(seconds)

    def set_published(self, total: int, rdma: int) -> None:
        """Record a successful publish."""
        self.published_devices.labels("total").set(total)
        self.published_devices.labels("rdma").set(rdma)
        self.last_published.set(time.time())

    @contextmanager
    def _timed(self, counter: Counter, histogram: Histogram, method: str) -> Iterator[None]:
        start = time.perf_counter()
        status = "success"
        try:
            yield
        except BaseException:
            status = "failed"
            raise
        finally:
            counter.labels(method, status).inc()
            histogram.labels(method, status).observe(time.perf_counter() - start)
