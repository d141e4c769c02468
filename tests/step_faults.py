"""Test-side attach and restore step observers (knd.netns.steps.StepObserver): the faults the
product has no switch for. `FailAt` fails one step, `PauseBefore` sleeps before one (so a test
can kill the daemon there), `StepLog` records every step it sees."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from knd.netns.steps import AttachStep, RestoreStep

Step = AttachStep | RestoreStep

log = logging.getLogger("knd.test.faults")


class InjectedFailureError(Exception):
    """What `FailAt` raises: an attach rolls back and raises AttachError with this cause; a
    restore records the step as failed and goes on."""


@dataclass(frozen=True)
class FailAt:
    """Fails `step` (of `device` only, when given) by raising `InjectedFailureError`."""

    step: Step
    device: str | None = None

    def on_step(self, step: Step, device: str) -> None:
        if step is self.step and self.device in (None, device):
            raise InjectedFailureError(f"injected failure at {device}:{step}")


@dataclass(frozen=True)
class PauseBefore:
    """Logs `fault injection: pausing S s before attach step STEP of DEVICE` at warning level,
    then sleeps `seconds` before `step` of every device."""

    step: Step
    seconds: float

    def on_step(self, step: Step, device: str) -> None:
        if step is self.step:
            log.warning(
                "fault injection: pausing %.1f s before attach step %s of %s",
                self.seconds,
                step,
                device,
            )
            time.sleep(self.seconds)


@dataclass
class StepLog:
    """Records `(device, step)` for every step, in call order."""

    seen: list[tuple[str, Step]] = field(default_factory=list)

    def on_step(self, step: Step, device: str) -> None:
        self.seen.append((device, step))
