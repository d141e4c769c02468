"""DraNet's metric names, served beside knd's so DraNet dashboards and alerts keep working.

Contract: `DranetMetrics(registry)` registers, in `registry`, the six series DraNet's
pkg/driver/metrics.go exports, with DraNet's names, labels, label values and histogram buckets
(the Prometheus client defaults): `dranet_driver_dra_plugin_requests_total{method,status}`,
`dranet_driver_dra_plugin_requests_latency_seconds{method}`,
`dranet_driver_nri_plugin_requests_total{method,status}`,
`dranet_driver_nri_plugin_requests_latency_seconds{method,status}`,
`dranet_driver_published_devices_total{feature="total"|"rdma"}` (a gauge despite the suffix, as
DraNet's) and `dranet_driver_last_published_time_seconds`. DraNet's DRA method labels are its Go
function names (`PrepareResourceClaims`, `UnprepareResourceClaims`); `knd_to_dranet_method` maps
knd's gRPC names. The knd series (knd.driver.metrics) follow Prometheus conventions instead.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NAMESPACE = "dranet"
SUBSYSTEM = "driver"

_DRA_METHODS = {
    "NodePrepareResources": "PrepareResourceClaims",
    "NodeUnprepareResources": "UnprepareResourceClaims",
}


def knd_to_dranet_method(method: str) -> str:
    """DraNet's label for a kubelet DRA call (NRI hook names are the same in both)."""
    return _DRA_METHODS.get(method, method)


class DranetMetrics:
    """DraNet's series, fed by knd.driver.metrics.DriverMetrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        common = {"namespace": NAMESPACE, "subsystem": SUBSYSTEM, "registry": registry}
        self.dra_requests = Counter(
            "dra_plugin_requests",
            "Total number of DRA plugin requests (DraNet's name).",
            ["method", "status"],
            **common,  # type: ignore[arg-type]
        )
        self.dra_latency = Histogram(
            "dra_plugin_requests_latency_seconds",
            "DRA plugin request latency in seconds (DraNet's name).",
            ["method"],
            **common,  # type: ignore[arg-type]
        )
        self.nri_requests = Counter(
            "nri_plugin_requests",
            "Total number of NRI plugin requests (DraNet's name).",
            ["method", "status"],
            **common,  # type: ignore[arg-type]
        )
        self.nri_latency = Histogram(
            "nri_plugin_requests_latency_seconds",
            "NRI plugin request latency in seconds (DraNet's name).",
            ["method", "status"],
            **common,  # type: ignore[arg-type]
        )
        self.published = Gauge(
            "published_devices_total",
            "Total number of published devices (DraNet's name).",
            ["feature"],
            **common,  # type: ignore[arg-type]
        )
        self.last_published = Gauge(
            "last_published_time_seconds",
            "The timestamp of the last successful resource publication (DraNet's name).",
            **common,  # type: ignore[arg-type]
        )

    def observe_dra(self, method: str, failed: bool, seconds: float) -> None:
        name = knd_to_dranet_method(method)
        self.dra_requests.labels(name, "failed" if failed else "success").inc()
        self.dra_latency.labels(name).observe(seconds)

    def observe_nri(self, method: str, status: str, seconds: float) -> None:
        self.nri_requests.labels(method, status).inc()
        self.nri_latency.labels(method, status).observe(seconds)

    def set_published(self, total: int, rdma: int, when: float) -> None:
        self.published.labels("rdma").set(rdma)
        self.published.labels("total").set(total)
        self.last_published.set(when)
