"""The metrics/health listener under hostile clients: 300 slow clients cost no threads and
/healthz still answers; slow clients are cut off; only GET/HEAD; IPv6 bind addresses."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from knd.driver import health as hmod
from knd.driver.health import HealthServer, HealthState
from knd.driver.metrics import DriverMetrics

pytestmark = pytest.mark.unit


@pytest.fixture
def served() -> Iterator[tuple[HealthServer, HealthState]]:
    state = HealthState()
    state.set(registered=True)
    server = HealthServer("127.0.0.1:0", state, DriverMetrics().registry)
    server.start()
    try:
        yield server, state
    finally:
        server.stop()


def get(port: int, path: str, method: str = "GET", host: str = "127.0.0.1") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _slow_clients(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
        out.append(s)
    return out


def test_300_slow_clients_cost_no_threads_and_healthz_answers(
    served: tuple[HealthServer, HealthState],
) -> None:
    server, _ = served
    threads_before = threading.active_count()
    clients = _slow_clients(server.port, 300)
    try:
        status, body = get(server.port, "/healthz")
        assert (status, body) == (200, b"ok\n")
        assert get(server.port, "/readyz")[0] == 503
        assert threading.active_count() <= threads_before + 1  # urllib adds none that linger
        assert server.open_connections <= hmod.MAX_CONNECTIONS
        assert server.evicted >= 300 - hmod.MAX_CONNECTIONS
    finally:
        for c in clients:
            c.close()


def test_a_silent_client_is_cut_off(
    served: tuple[HealthServer, HealthState], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = served
    monkeypatch.setattr(hmod, "CONNECTION_TIMEOUT_S", 0.2)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        assert s.recv(100) == b""  # closed by the server, without an answer
        assert server.timed_out >= 1
    finally:
        s.close()


def test_only_reads_are_served_and_nothing_changes_state(
    served: tuple[HealthServer, HealthState],
) -> None:
    server, state = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, _ = get(server.port, "/healthz", method=method)
        assert status == 405
    assert state.registered and not state.published
    status, body = get(server.port, "/healthz", method="HEAD")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"GET /healthz\r\n\r\n", b"400"),
        (b"\x00\xff garbage\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n", b"431"),
    ],
)
def test_malformed_requests_get_an_error_status(
    served: tuple[HealthServer, HealthState], raw: bytes, code: bytes
) -> None:
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(raw)
        head = s.recv(64)
    assert head.split()[1] == code
    assert get(server.port, "/healthz")[0] == 200


def test_ipv6_bind_address() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    state = HealthState()
    try:
        server = HealthServer("[::1]:0", state, DriverMetrics().registry)
    except OSError as exc:
        pytest.skip(f"::1 not configured here: {exc}")
    server.start()
    try:
        assert get(server.port, "/healthz", host="[::1]")[0] == 503
    finally:
        server.stop()
