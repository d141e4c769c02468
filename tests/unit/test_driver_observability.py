"""/metrics, /healthz, /readyz over real HTTP, metric names, and structured logs."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from knd.driver.health import HealthServer, HealthState, parse_bind_address
from knd.driver.logs import setup_logging
from knd.driver.metrics import DriverMetrics


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, DriverMetrics, HealthState]]:
    metrics = DriverMetrics()
    state = HealthState()
    server = HealthServer("127.0.0.1:0", state, metrics.registry)
    server.start()
    try:
        yield server, metrics, state
    finally:
        server.stop()


def get(server: HealthServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_healthz_is_503_until_registered(
    served: tuple[HealthServer, DriverMetrics, HealthState],
) -> None:
    server, _, state = served
    assert get(server, "/healthz")[0] == 503
    state.set(registered=True)
    assert get(server, "/healthz") == (200, "ok\n")


def test_readyz_names_missing_conditions(
    served: tuple[HealthServer, DriverMetrics, HealthState],
) -> None:
    server, _, state = served
    code, body = get(server, "/readyz")
    assert code == 503 and "registered, nri_connected, published" in body
    state.set(registered=True, nri_connected=True, published=True)
    assert get(server, "/readyz")[0] == 200
    state.set(shutting_down=True)
    assert get(server, "/readyz")[0] == 503
    assert get(server, "/nope")[0] == 404
    with pytest.raises(AttributeError):
        state.set(bogus=True)


def test_metrics_endpoint_exposes_driver_metrics(
    served: tuple[HealthServer, DriverMetrics, HealthState],
) -> None:
    server, metrics, _ = served
    with metrics.time_dra("NodePrepareResources"):
        pass
    with pytest.raises(RuntimeError), metrics.time_dra("NodeUnprepareResources"):
        raise RuntimeError("boom")
    metrics.observe_nri("RunPodSandbox", "success", 0.012)
    metrics.set_published(total=8, rdma=8)
    metrics.rollbacks.inc()
    code, text = get(server, "/metrics")
    assert code == 200
    for line in (
        'knd_driver_dra_plugin_requests_total{method="NodePrepareResources",status="success"} 1.0',
        'knd_driver_dra_plugin_requests_total{method="NodeUnprepareResources",status="failed"} 1.0',
        'knd_driver_nri_plugin_requests_total{method="RunPodSandbox",status="success"} 1.0',
        "knd_driver_published_rdma_devices 8.0",
        "knd_driver_attach_rollbacks_total 1.0",
    ):
        assert line in text, line
    assert "knd_driver_nri_plugin_request_duration_seconds_bucket" in text
    assert "knd_driver_last_published_time_seconds" in text
    assert "process_start_time_seconds" in text


def test_bind_address_forms() -> None:
    assert parse_bind_address(":9177") == ("", 9177)
    assert parse_bind_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind_address("[::1]:80") == ("::1", 80)


def test_json_logs_carry_context_keys() -> None:
    stream = io.StringIO()
    setup_logging("json", verbosity=2, stream=stream)
    try:
        log = logging.getLogger("knd.test")
        log.info("attached %s", "eth99", extra={"pod": "ns/p", "claim": "ns/c", "device": "d"})
        log.debug("hidden at -v 2")
        line = json.loads(stream.getvalue().strip())
        assert line["msg"] == "attached eth99"
        assert (line["pod"], line["claim"], line["device"], line["level"]) == (
            "ns/p",
            "ns/c",
            "d",
            "info",
        )
        assert len(stream.getvalue().strip().splitlines()) == 1
        setup_logging("text", verbosity=4, stream=stream)
        log.debug("now visible", extra={"pod": "ns/p"})
        assert stream.getvalue().strip().splitlines()[-1].endswith('"now visible" pod="ns/p"')
    finally:
        setup_logging("text", verbosity=2)
