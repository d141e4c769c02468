"""The named steps of attach (knd.netns.attach) and of the host restore (knd.netns.restore),
and the optional observer called before each.

`AttachStep` is the one list of step names: `AttachError.step`, the `attach_failures` metric's
label and `StepObserver.on_step` all carry one of its values (a `str` subclass, so it compares
and formats as the plain name). `STEPS` is the order a moved NIC goes through; a sub-interface
plan replaces `down`/`move` with `child`.

`StepObserver` is the only seam for watching or disturbing an attach from outside: the
executor calls `on_step(step, device)` just before each step of each device, in the attaching
thread. Nothing in the product implements it: the daemon runs without one (a `None` check per
step is all it costs). Tests pass one to fail a step (raise: the attach rolls back and raises
`AttachError(device, step, cause)` with the observer's exception as cause), or to pause before
a step so the daemon can be killed there. An observer that blocks delays the whole NRI hook and
must stay well inside its 2 s budget, or the runtime drops the plugin.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Protocol


class AttachStep(StrEnum):
    """One step of attaching one device (docs/plumbing.md, "Attach"), in executor order."""

    LOOKUP = "lookup"
    DOWN = "down"
    MOVE = "move"
    POD_LOOKUP = "pod-lookup"
    SYSCTL = "sysctl"
    ADDRESS = "address"
    UP = "up"
    ETHTOOL = "ethtool"
    EBPF = "ebpf"
    VRF = "vrf"
    ROUTE = "route"
    RULE = "rule"
    NEIGHBOR = "neighbor"
    RDMA = "rdma"
    #: a sub-interface plan only: replaces `down` and `move`
    CHILD = "child"


#: The steps of a moved NIC, in order (every step but `child`).
STEPS: Final[tuple[AttachStep, ...]] = tuple(s for s in AttachStep if s is not AttachStep.CHILD)


class RestoreStep(StrEnum):
    """One step of restoring a NIC's captured host state (knd.netns.restore.restore_host), in
    order. A failed step is recorded (`"STEP: why"`) and the others still run."""

    RENAME = "rename"
    LINK = "link"
    SIZES = "sizes"
    ETHTOOL = "ethtool"
    PRIVATE_FLAGS = "private-flags"
    ALIAS = "alias"
    ADDRESS = "address"
    UP = "up"
    ROUTE = "route"
    RULE = "rule"
    NEIGHBOR = "neighbor"


class StepObserver(Protocol):
    """Called by the attach executor before each named step (see the module docstring)."""

    def on_step(self, step: AttachStep | RestoreStep, device: str) -> None:
        """`step` of `device` (the plan's device name; for a restore step the host-side name)
        is about to run; raising fails it."""
