"""Daemon start order, rollback of a failed start, and the SIGTERM drain order."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from knd.driver.lifecycle import Lifecycle


class Fake:
    def __init__(self, name: str, calls: list[str], fail: bool = False) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def start(self) -> None:
        self.calls.append(f"start {self.name}")
        if self.fail:
            raise RuntimeError(f"{self.name} failed")

    def stop(self) -> None:
        self.calls.append(f"stop {self.name}")


ORDER = ["store", "reconcile", "kubelet-plugin", "nri", "publisher"]


def test_start_in_order_and_shutdown_stops_kubelet_first_then_drains() -> None:
    calls: list[str] = []
    pending = [2]

    def pending_pods() -> int:
        calls.append(f"pending {pending[0]}")
        pending[0] -= 1
        return pending[0] + 1

    lc = Lifecycle(
        [Fake(n, calls) for n in ORDER],
        pending_pods=pending_pods,
        grace_period=5,
        poll_interval=0.01,
    )
    lc.start()
    assert calls == [f"start {n}" for n in ORDER]
    calls.clear()
    lc.shutdown()
    assert calls == [
        "stop kubelet-plugin",
        "pending 2",
        "pending 1",
        "pending 0",
        "stop publisher",
        "stop nri",
        "stop reconcile",
        "stop store",
    ]
    calls.clear()
    lc.shutdown()
    assert calls == []  # idempotent


def test_failed_start_stops_what_started_in_reverse() -> None:
    calls: list[str] = []
    comps = [Fake(n, calls, fail=(n == "nri")) for n in ORDER]
    lc = Lifecycle(comps)
    with pytest.raises(RuntimeError, match="nri failed"):
        lc.start()
    assert calls == [
        "start store",
        "start reconcile",
        "start kubelet-plugin",
        "start nri",
        "stop kubelet-plugin",
        "stop reconcile",
        "stop store",
    ]


def test_drain_is_bounded_by_grace_period() -> None:
    calls: list[str] = []
    lc = Lifecycle(
        [Fake("kubelet-plugin", calls), Fake("nri", calls)],
        pending_pods=lambda: 1,
        grace_period=0.05,
        poll_interval=0.01,
    )
    lc.start()
    lc.shutdown()
    assert calls[-2:] == ["stop kubelet-plugin", "stop nri"]


def test_sigterm_requests_graceful_stop() -> None:
    calls: list[str] = []
    lc = Lifecycle([Fake(n, calls) for n in ORDER])
    old = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    lc.install_signal_handlers()
    try:
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        lc.run()  # returns only because SIGTERM arrived
        timer.join()
    finally:
        signal.signal(signal.SIGTERM, old[0])
        signal.signal(signal.SIGINT, old[1])
    assert calls[len(ORDER)] == "stop kubelet-plugin"
    assert calls[-1] == "stop store"
