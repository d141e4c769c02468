"""Metric names: DraNet's series beside knd's, Prometheus conventions for knd's, build_info, the
NRI/kubelet state gauges, the publish-error counter and the API-client request metrics."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from knd import __version__
from knd.driver.daemon import Daemon
from knd.driver.metrics import LATENCY_BUCKETS, DriverMetrics
from knd.driver.options import parse
from knd.inventory.model import Device, Discovery
from knd.inventory.scanner import ScanResult
from knd.kube.connection import connect_url
from knd.kube.errors import ApiError

pytestmark = pytest.mark.unit


def exposition(metrics: DriverMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def samples(metrics: DriverMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(exposition(metrics)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: DriverMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def exercise(metrics: DriverMetrics) -> None:
    with metrics.time_dra("NodePrepareResources"):
        pass
    with metrics.time_dra("NodePrepareResources") as call:
        call.failed = True  # one claim of the batch failed
    with pytest.raises(OSError), metrics.time_dra("NodeUnprepareResources"):
        raise OSError("boom")
    metrics.observe_nri("RunPodSandbox", "success", 0.02)
    metrics.observe_nri("StopPodSandbox", "noop", 0.001)
    metrics.set_published(total=12, rdma=4)


def test_dranet_series_have_dranet_names_labels_and_values() -> None:
    m = DriverMetrics()
    exercise(m)
    dra = "dranet_driver_dra_plugin_requests_total"
    assert value(m, dra, method="PrepareResourceClaims", status="success") == 1
    assert value(m, dra, method="PrepareResourceClaims", status="failed") == 1
    assert value(m, dra, method="UnprepareResourceClaims", status="failed") == 1
    # DraNet's DRA histogram has only the method label
    hist = "dranet_driver_dra_plugin_requests_latency_seconds_count"
    assert value(m, hist, method="PrepareResourceClaims") == 2
    nri = "dranet_driver_nri_plugin_requests_total"
    assert value(m, nri, method="RunPodSandbox", status="success") == 1
    assert value(m, nri, method="StopPodSandbox", status="noop") == 1
    assert (
        value(
            m,
            "dranet_driver_nri_plugin_requests_latency_seconds_count",
            method="RunPodSandbox",
            status="success",
        )
        == 1
    )
    assert value(m, "dranet_driver_published_devices_total", feature="total") == 12
    assert value(m, "dranet_driver_published_devices_total", feature="rdma") == 4
    assert value(m, "dranet_driver_last_published_time_seconds") is not None


def test_knd_series_follow_prometheus_conventions() -> None:
    m = DriverMetrics()
    exercise(m)
    m.observe_api("GET", 200, 0.01)
    families = list(text_string_to_metric_families(exposition(m)))
    knd = [f for f in families if f.name.startswith("knd_")]
    assert knd, "no knd series"
    for family in knd:
        if family.type == "histogram":
            assert family.name.endswith("_duration_seconds"), family.name
        if family.type == "counter" and family.samples:  # labelled, unused: no samples yet
            assert any(s.name == family.name + "_total" for s in family.samples), family.name
        for s in family.samples:
            # no label value that is the sum of its siblings
            assert "total" not in s.labels.values(), (family.name, s.labels)
    assert value(m, "knd_driver_published_devices") == 12
    assert value(m, "knd_driver_published_rdma_devices") == 4
    assert (
        value(
            m,
            "knd_driver_dra_plugin_requests_total",
            method="NodePrepareResources",
            status="failed",
        )
        == 1
    )


def test_prepare_buckets_reach_the_kubelets_45_seconds() -> None:
    assert LATENCY_BUCKETS[-1] == 45.0 and 30.0 in LATENCY_BUCKETS
    m = DriverMetrics()
    m.dra_latency.labels("NodePrepareResources", "success").observe(40.0)
    bucket = "knd_driver_dra_plugin_request_duration_seconds_bucket"
    labels = {"method": "NodePrepareResources", "status": "success"}
    assert value(m, bucket, le="30.0", **labels) == 0
    assert value(m, bucket, le="45.0", **labels) == 1


def test_build_info_and_state_gauges() -> None:
    m = DriverMetrics()
    state = {"registered": False, "nri": True}
    m.bind_state(lambda: state["registered"], lambda: state["nri"])
    assert value(m, "knd_driver_kubelet_plugin_registered") == 0
    assert value(m, "knd_driver_nri_connected") == 1
    state.update(registered=True, nri=False)
    assert value(m, "knd_driver_kubelet_plugin_registered") == 1
    assert value(m, "knd_driver_nri_connected") == 0
    info = [k for k in samples(m) if k[0] == "knd_build_info"]
    assert len(info) == 1 and ("version", __version__) in info[0][1]


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 404 if self.path.endswith("/missing") else 500
        body = b'{"kind":"Status","message":"nope"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_api_client_requests_are_counted_by_method_and_code(failing_api: str) -> None:
    m = DriverMetrics()
    api = connect_url(failing_api)
    api.observer = m.observe_api
    for path in ("/api/v1/nodes/missing", "/api/v1/nodes/x"):
        with pytest.raises(ApiError):
            api.request("GET", path)
    unreachable = connect_url("http://127.0.0.1:1", timeout_s=2)
    unreachable.observer = m.observe_api
    with pytest.raises(ApiError):
        unreachable.request("GET", "/api")
    assert value(m, "knd_rest_client_requests_total", method="GET", code="404") == 1
    assert value(m, "knd_rest_client_requests_total", method="GET", code="500") == 1
    assert value(m, "knd_rest_client_requests_total", method="GET", code="0") == 1
    assert value(m, "knd_rest_client_request_duration_seconds_count", method="GET") == 3


def test_daemon_counts_publish_errors_and_its_api_calls(failing_api: str) -> None:
    api = connect_url(failing_api)
    daemon = Daemon(parse(["--hostname-override", "n1"], {}), api)
    scan = ScanResult(Discovery(), published=[Device("eth9", {"dra.net/rdma": False})])
    try:
        daemon.publish(scan)
    finally:
        daemon._rescan.stop()
    m = daemon.metrics
    assert value(m, "knd_driver_publish_errors_total") == 1
    assert value(m, "knd_rest_client_requests_total", method="GET", code="500") == 1
    assert value(m, "knd_driver_kubelet_plugin_registered") == 0
