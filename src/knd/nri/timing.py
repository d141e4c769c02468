"""Per-method hook timing: every dispatched NRI method is measured; the daemon's metrics (and
benchmarks) subscribe an observer or read the in-memory summary.

An observer is called as observer(method, seconds, ok) after each call, from the NRI worker
thread; it must be cheap and must not raise (exceptions are logged and ignored).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)

Observer = Callable[[str, float, bool], None]


@dataclass(frozen=True, slots=True)
class MethodStats:
    count: int
    errors: int
    last_s: float
    max_s: float
    p50_s: float
    p99_s: float


class HookTimer:
    """Thread-safe recorder of hook durations, keeping the last `window` samples per method."""

    def __init__(self, window: int = 2048) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = {}
        self._counts: dict[str, list[int]] = {}  # method -> [count, errors]
        self._max: dict[str, float] = {}
        self._window = window
        self._observers: list[Observer] = []

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    def observe(self, method: str, seconds: float, ok: bool) -> None:
        with self._lock:
            self._samples.setdefault(method, deque(maxlen=self._window)).append(seconds)
            c = self._counts.setdefault(method, [0, 0])
            c[0] += 1
            c[1] += 0 if ok else 1
            self._max[method] = max(self._max.get(method, 0.0), seconds)
        for obs in list(self._observers):
            try:
                obs(method, seconds, ok)
            except Exception:
                log.exception("hook timing observer failed")

    @contextmanager
    def measure(self, method: str) -> Iterator[list[bool]]:
        """`with timer.measure("RunPodSandbox") as ok:` set ok[0] = False to record an error."""
        flag = [True]
        t0 = time.perf_counter()
        try:
            yield flag
        except BaseException:
            flag[0] = False
            raise
        finally:
            self.observe(method, time.perf_counter() - t0, flag[0])

    def stats(self, method: str) -> MethodStats | None:
        with self._lock:
            samples = sorted(self._samples.get(method, ()))
            if not samples:
                return None
            count, errors = self._counts[method]
            last = self._samples[method][-1]
            mx = self._max[method]

        def q(p: float) -> float:
            return samples[min(len(samples) - 1, int(p * len(samples)))]

        return MethodStats(count, errors, last, mx, q(0.50), q(0.99))

    def methods(self) -> list[str]:
        with self._lock:
            return sorted(self._samples)
