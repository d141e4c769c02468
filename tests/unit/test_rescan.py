"""Rescan loop: token bucket arithmetic and coalescing of triggers."""

from __future__ import annotations

import threading

import pytest

from knd.inventory.rescan import Rescanner, TokenBucket

pytestmark = pytest.mark.unit


def test_token_bucket_burst_then_rate() -> None:
    now = [100.0]
    b = TokenBucket(2.0, 5, clock=lambda: now[0])
    assert [b.wait_time() for _ in range(5)] == [0.0] * 5
    assert b.wait_time() == pytest.approx(2.0)
    now[0] += 1.0
    assert b.wait_time() == pytest.approx(1.0)
    now[0] += 1.0
    assert b.wait_time() == 0.0
    now[0] += 1000.0  # refills to the burst, never beyond
    assert [b.wait_time() for _ in range(6)][-1] > 0


def test_requests_during_a_scan_coalesce_into_one() -> None:
    release = threading.Event()
    started = threading.Event()
    results: list[int] = []
    done = threading.Event()
    calls = [0]

    def scan() -> int:
        calls[0] += 1
        if calls[0] == 1:
            started.set()
            release.wait(10)
        return calls[0]

    def on_result(n: int) -> None:
        results.append(n)
        if n == 2:
            done.set()

    r: Rescanner[int] = Rescanner(scan, on_result, resync_s=3600, min_interval_s=0, burst=5)
    r.start()
    try:
        assert started.wait(10)
        for _ in range(10):
            r.request()
        release.set()
        assert done.wait(10)
        # give a spurious extra scan the chance to show up
        r.request()
        r.stop()
    finally:
        r.stop()
    assert results[:2] == [1, 2]
    assert r.requests == 11
    assert len(results) <= 3


def test_scan_errors_do_not_stop_the_loop() -> None:
    seen = threading.Event()
    calls = [0]

    def scan() -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("boom")
        return calls[0]

    r: Rescanner[int] = Rescanner(scan, lambda _n: seen.set(), resync_s=3600, min_interval_s=0)
    r.start()
    try:
        for _ in range(50):
            r.request()
            if seen.wait(0.2):
                break
    finally:
        r.stop()
    assert seen.is_set() and calls[0] >= 2
