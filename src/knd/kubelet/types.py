"""Wire-neutral types shared by the DRA service and whoever prepares claims (knd.driver).

The DRA servers of both API versions convert to and from these, so the preparation engine never
sees protobuf messages and v1/v1beta1 behave identically by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ClaimRef:
    """What kubelet sends for a claim: namespace, UID and name (nothing else)."""

    namespace: str
    uid: str
    name: str

    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class PreparedDevice:
    """One device returned to kubelet for a prepared claim."""

    pool: str
    device: str
    request_names: tuple[str, ...] = ()
    cdi_device_ids: tuple[str, ...] = ()
    share_id: str | None = None


@dataclass(frozen=True, slots=True)
class PrepareResult:
    """Per-claim answer: devices, or a non-empty error a user can act on (kubelet retries)."""

    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class DeviceHealthState:
    """Health of one published device as streamed to kubelet."""

    pool: str
    device: str
    healthy: bool | None  # None = unknown
    message: str = ""
    updated: int = field(default=0, compare=False)  # unix seconds


class ClaimPreparer(Protocol):
    """The engine behind NodePrepareResources / NodeUnprepareResources (both API versions).

    Each returns one entry per requested claim UID. Implementations must be idempotent and safe
    to call concurrently; an exception fails the whole gRPC call (kubelet retries everything).
    """

    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]: ...

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]: ...
