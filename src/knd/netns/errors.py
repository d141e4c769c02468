"""Errors of the plumbing layer (`knd.netns`): a small tree, every one chains its cause.

NetnsError                      base of everything raised here
├── NetnsOpenError              a netns path cannot be opened / entered
├── PlanError                   a plan (or its inputs) is malformed or cannot be resolved;
│                               raised at prepare time or when a persisted plan is decoded
├── AttachError(device, step)   executing a plan failed; everything was rolled back
│                               (`rollback_errors` lists undo steps that failed in turn)
├── DetachError(device, step)   giving a device back failed
├── RdmaUnavailableError             the kernel has no RDMA netlink (reported, never fatal)
└── DhcpError                   no lease within the timeout, or a malformed reply
"""

from __future__ import annotations


class NetnsError(Exception):
    """Base of all plumbing errors."""


class NetnsOpenError(NetnsError):
    """A network namespace could not be opened or entered."""


class PlanError(NetnsError):
    """A plan is malformed (hand-edited, corrupted) or cannot be built from its inputs."""


class AttachError(NetnsError):
    """Attaching `device` failed at `step`; every device of the pod was rolled back.

    `rollback_errors` holds "device/step: message" lines for undo actions that failed too
    (empty when the rollback was complete).
    """

    def __init__(
        self, device: str, step: str, cause: BaseException, rollback_errors: list[str] | None = None
    ) -> None:
        self.device = device
        self.step = step
        self.cause = cause
        self.rollback_errors = list(rollback_errors or [])
        text = f"attach {device}: step {step}: {cause}"
        if self.rollback_errors:
            text += f" (rollback incomplete: {'; '.join(self.rollback_errors)})"
        super().__init__(text)
        self.__cause__ = cause


class DetachError(NetnsError):
    """Returning `device` to the host failed at `step`."""

    def __init__(self, device: str, step: str, cause: BaseException) -> None:
        self.device = device
        self.step = step
        self.cause = cause
        super().__init__(f"detach {device}: step {step}: {cause}")
        self.__cause__ = cause


class RdmaUnavailableError(NetnsError):
    """RDMA netlink is not available on this kernel (no CONFIG_INFINIBAND); callers treat the
    subsystem as being in shared mode."""


class DhcpError(NetnsError):
    """DHCPv4 at prepare time failed (timeout, NAK, malformed reply)."""


class DhcpNakError(DhcpError):
    """The DHCP server refused to renew a lease (DHCPNAK)."""
