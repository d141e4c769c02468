"""Publishing to a Node that does not exist: one clear warning per back-off step, no traceback,
no replanning storm; the back-off doubles to a cap."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from knd.driver.daemon import Daemon
from knd.driver.options import parse
from knd.driver.retry import RetryPolicies
from knd.inventory.model import Device, Discovery
from knd.inventory.scanner import ScanResult
from knd.kube.connection import connect_url
from knd.lab.apiserver import ApiServerEmulator

pytestmark = pytest.mark.unit


@pytest.fixture
def server() -> Iterator[ApiServerEmulator]:
    with ApiServerEmulator() as srv:
        yield srv


def test_backoff_steps() -> None:
    publish = RetryPolicies().publish
    assert [publish.delay(n) for n in range(1, 6)] == [5, 10, 20, 20, 20]


def test_missing_node_logs_one_line_per_step(
    server: ApiServerEmulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opts = parse(["--bind-address", "127.0.0.1:0"], environ={"NODE_NAME": "ghost"})
    daemon = Daemon(opts, connect_url(server.url))
    delays: list[float] = []
    monkeypatch.setattr(daemon._rescan, "retry_later", delays.append)
    now = [1000.0]
    daemon.clock = lambda: now[0]
    devices = [Device("eth1", {"dra.net/ifName": "eth1"})]
    result = ScanResult(Discovery(devices=devices, offline=True), devices)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            daemon.publish(result)  # the retry timer's publish: a new back-off step
            daemon.publish(result)  # a rescan (netlink event) before the next step: quiet
            now[0] += delays[-1]  # the step's delay passes; its retry publishes next
    lines = [r for r in caplog.records if "ResourceSlices" in r.getMessage()]
    assert len(lines) == 3  # one per step, not one per attempt or replanning
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)
    assert "node ghost not found" in lines[0].getMessage()
    assert delays == [5.0, 10.0, 20.0]
    assert not any(r.exc_info for r in caplog.records)
    assert server.writes == 0
    # The Node appears: the next publish succeeds (and logs no warning).
    server.add_node("ghost")
    caplog.clear()
    daemon.publish(result)
    assert daemon.health.published
    assert server.writes >= 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
