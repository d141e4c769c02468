"""Typed shapes of the ResourceClaim JSON (resource.k8s.io/v1), down to the keys knd reads.

A claim stays the dict the API server sent: these are `TypedDict`s over that JSON, not a model
it is converted into, so no field is ever dropped or rewritten (an apply, a log line or a dry
run sees exactly what the server sent) and mypy still checks every key name knd reads. Every
shape is partial (`total=False`): the server may leave any field out, and keys knd does not
name flow through untouched.

The JSON is input: code reading these must still treat each value as possibly missing, null or
of the wrong type (`claim.get("status") or {}`), because the type describes what a well-formed
server sends, not what arrived.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]


class OpaqueConfig(TypedDict, total=False):
    """`opaque`: a driver's own parameters (knd's are `knd.api.config.NetworkConfig`)."""

    driver: str
    parameters: object


class DeviceConfig(TypedDict, total=False):
    """One entry of `status.allocation.devices.config` (or a DeviceClass/claim `config`)."""

    source: str  # FromClass | FromClaim
    requests: list[str]
    opaque: OpaqueConfig


class DeviceResult(TypedDict, total=False):
    """One entry of `status.allocation.devices.results`: a device allocated for a request."""

    request: str
    driver: str
    pool: str
    device: str
    adminAccess: bool
    shareID: str
    consumedCapacity: dict[str, Any]


class DeviceAllocation(TypedDict, total=False):
    results: list[DeviceResult]
    config: list[DeviceConfig]


class Allocation(TypedDict, total=False):
    """`status.allocation`."""

    devices: DeviceAllocation
    nodeSelector: dict[str, Any]
    allocationTimestamp: str


class Consumer(TypedDict, total=False):
    """One entry of `status.reservedFor`."""

    apiGroup: str
    resource: str
    name: str
    uid: str


class ClaimStatus(TypedDict, total=False):
    allocation: Allocation
    reservedFor: list[Consumer]
    devices: list[dict[str, Any]]


class ResourceClaim(TypedDict, total=False):
    """A ResourceClaim as the API server sends it."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: ClaimStatus
