"""The daemon's retry delays, kept as data: one `Backoff` type, one value per retrying part.

* claim status writes (`knd.driver.status_writer`): 0.2 s doubling to 10 s, 64 tries (about ten
  minutes: an API server outage delays status, it never loses it while the daemon runs); a
  permanent refusal (`knd.kube.errors.Action.PERMANENT`) is never retried;
* restoring a device that did not come home (`knd.driver.restorer`): 1 s doubling to 60 s,
  forever (a NIC is never given up on);
* publishing ResourceSlices (`knd.driver.daemon`): 5 s doubling to 20 s, forever; the cap bounds
  how long slices lag behind an API server outage once it ends.

`DaemonOptions.retry` carries a `RetryPolicies`; tests pass faster ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """An exponential retry delay as data: `initial_s`, multiplied by `factor` per failure, at
    most `max_s`; `attempts` tries in all (None: never give up)."""

    initial_s: float
    max_s: float
    factor: float = 2.0
    attempts: int | None = None

    def delay(self, failures: int, hint_s: float | None = None) -> float:
        """Seconds to wait after `failures` (≥ 1) failures in a row; a server's `Retry-After`
        hint wins when it is longer, and is capped like any delay."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, failures - 1))
        return min(self.max_s, max(base, hint_s or 0.0))

    def gives_up(self, failures: int) -> bool:
        """True when `failures` tries were the last allowed."""
        return self.attempts is not None and failures >= self.attempts

    def delays(self) -> list[float]:
        """The whole schedule of a bounded policy (for docs and tests)."""
        if self.attempts is None:
            raise ValueError("an unbounded backoff has no finite schedule")
        return [self.delay(n) for n in range(1, self.attempts)]


STATUS_BACKOFF = Backoff(0.2, 10.0, attempts=64)
RESTORE_BACKOFF = Backoff(1.0, 60.0)
PUBLISH_BACKOFF = Backoff(5.0, 20.0)


@dataclass(frozen=True, slots=True)
class RetryPolicies:
    """Every retry policy of the daemon (see the module docstring for why each value)."""

    status: Backoff = STATUS_BACKOFF
    restore: Backoff = RESTORE_BACKOFF
    publish: Backoff = PUBLISH_BACKOFF
