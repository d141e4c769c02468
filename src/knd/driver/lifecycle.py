"""Start and stop the daemon's components in a safe order.

Start order (each step must succeed before the next): load state → reconcile it with the live
netns and runtime → register with the kubelet → connect to NRI → publish. If a step fails, the
components already started are stopped in reverse order and the error propagates (fatal).

Shutdown on SIGTERM/SIGINT, DraNet's order for the same reason (dranet#88: a pod must not start
while the NRI plugin is gone): stop the kubelet plugin first (no new prepares; sockets removed),
then wait — at most the grace period — until every prepared pod has passed its NRI hooks, then
stop the remaining components in reverse start order (NRI, publisher, store).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

log = logging.getLogger(__name__)


class Component(Protocol):
    """A part of the daemon with a start and an idempotent stop."""

    name: str

    def start(self) -> None:
        """Start; raise to abort daemon start-up."""

    def stop(self) -> None:
        """Stop; must not raise for a component that never started."""


@dataclass
class Lifecycle:
    """Runs `components` in order; `first_to_stop` names the one stopped before draining
    (the kubelet plugin); `pending_pods` counts prepared pods still waiting for NRI hooks."""

    components: Sequence[Component]
    first_to_stop: str = "kubelet-plugin"
    pending_pods: Callable[[], int] = lambda: 0
    grace_period: float = 25.0
    poll_interval: float = 0.5
    _started: list[Component] = field(default_factory=list)
    _stop_requested: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Start every component in order; on failure stop the started ones and re-raise."""
        for component in self.components:
            log.info("starting %s", component.name)
            try:
                component.start()
            except BaseException:
                log.exception("start of %s failed; stopping what was started", component.name)
                self._stop_all(drain=False)
                raise
            self._started.append(component)

    def request_stop(self) -> None:
        """Ask `run` to return (thread- and signal-safe)."""
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a graceful stop (call from the main thread)."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> None:
        """Start, block until a stop is requested, then shut down gracefully."""
        self.start()
        self._stop_requested.wait()
        self.shutdown()

    def shutdown(self) -> None:
        """Graceful stop (see module docstring). Idempotent."""
        self._stop_all(drain=True)

    def _stop_all(self, drain: bool) -> None:
        first = [c for c in self._started if c.name == self.first_to_stop]
        for component in first:
            self._stop_one(component)
        if drain and first:
            self._drain()
        for component in reversed(self._started):
            if component not in first:
                self._stop_one(component)
        self._started.clear()

    def _stop_one(self, component: Component) -> None:
        log.info("stopping %s", component.name)
        try:
            component.stop()
        except Exception:
            log.exception("stop of %s failed", component.name)

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace_period
        while True:
            pending = self.pending_pods()
            if pending <= 0:
                return
            if time.monotonic() >= deadline:
                log.warning(
                    "grace period over with %d prepared pod(s) still without NRI hooks", pending
                )
                return
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
