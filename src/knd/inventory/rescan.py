"""The rescan loop: netlink events, a periodic resync and manual requests, coalesced and rate
limited (DraNet's numbers: at most one scan per 2 s on average, burst 5; resync every 60 s).

A daemon thread waits for a trigger (event, `request()`, or the resync timer), takes a token from
the bucket (sleeping if none), runs `scan()` and hands the result to `on_result()`. Triggers that
arrive while a scan waits or runs are coalesced into one follow-up scan. Exceptions from a scan
are logged and the loop continues. `clock`/`sleep` are injectable for tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class TokenBucket:
    """`burst` tokens, refilled one per `interval_s`."""

    def __init__(
        self, interval_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval_s
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def wait_time(self) -> float:
        """Take a token if one is there (0.0), else the seconds until one is."""
        now = self.clock()
        if self.interval > 0:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) / self.interval)
        else:
            self.tokens = float(self.burst)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * self.interval


class Rescanner(Generic[T]):
    def __init__(
        self,
        scan: Callable[[], T],
        on_result: Callable[[T], None],
        resync_s: float = 60.0,
        min_interval_s: float = 2.0,
        burst: int = 5,
    ) -> None:
        self._scan = scan
        self._on_result = on_result
        self.resync_s = resync_s
        self.bucket = TokenBucket(min_interval_s, burst)
        self._trigger = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scans = 0
        self.requests = 0

    def request(self) -> None:
        """Ask for a rescan (non-blocking; coalesced with pending requests)."""
        self.requests += 1
        self._trigger.set()

    def start(self, initial: bool = True) -> None:
        if initial:
            self._trigger.set()
        self._thread = threading.Thread(target=self._run, name="inventory-rescan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._trigger.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._trigger.wait(self.resync_s)
            if self._stop.is_set():
                return
            self._trigger.clear()
            delay = self.bucket.wait_time()
            while delay > 0 and not self._stop.wait(delay):
                delay = self.bucket.wait_time()
            if self._stop.is_set():
                return
            try:
                result = self._scan()
            except Exception:
                log.exception("inventory scan failed")
                continue
            self.scans += 1
            try:
                self._on_result(result)
            except Exception:
                log.exception("inventory result handler failed")
