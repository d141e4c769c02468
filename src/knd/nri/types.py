"""Decoded, immutable views of what the runtime tells knd, and what knd answers.

The hook handler (knd.driver later) sees only these types, never protobuf objects. Decoding is
total: any field may be empty; a pod without a `network` namespace path is a host-network pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from knd._proto import nri_pb2

NETWORK_NAMESPACE = "network"
DEFAULT_DEVICE_MODE = 0o666


@dataclass(frozen=True, slots=True)
class PodInfo:
    id: str  # runtime sandbox id
    uid: str  # Kubernetes pod UID
    name: str
    namespace: str
    netns: str | None  # path of the pod network namespace; None = host network / unknown
    ips: tuple[str, ...] = ()
    pid: int = 0
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def host_network(self) -> bool:
        return self.netns is None


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    id: str
    pod_sandbox_id: str
    name: str
    state: int = 0  # nri ContainerState value
    cpus: str = ""  # linux.resources.cpu.cpus as the runtime sends it ("" = not set)
    mems: str = ""  # linux.resources.cpu.mems
    devices: tuple[str, ...] = ()  # linux.devices paths (sent in Synchronize)


@dataclass(frozen=True, slots=True)
class DeviceNode:
    """A device node to add to a container (e.g. an RDMA char device)."""

    path: str
    major: int
    minor: int
    kind: str = "c"
    file_mode: int = DEFAULT_DEVICE_MODE
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, slots=True)
class ContainerAdjust:
    devices: tuple[DeviceNode, ...] = ()
    cpus: str | None = None  # linux.resources.cpu.cpus to set; None = leave
    mems: str | None = None  # linux.resources.cpu.mems to set; None = leave


@dataclass(frozen=True, slots=True)
class ContainerUpdate:
    """A change to a container that already exists (answered in Synchronize): only its CPU
    and memory nodes can change there; device nodes need a new container."""

    container_id: str
    cpus: str | None = None  # linux.resources.cpu.cpus to set; None = leave
    mems: str | None = None  # linux.resources.cpu.mems to set; None = leave


def network_namespace(pod: nri_pb2.PodSandbox) -> str | None:
    for ns in pod.linux.namespaces:
        if ns.type == NETWORK_NAMESPACE and ns.path:
            return str(ns.path)
    return None


def pod_from_pb(pod: nri_pb2.PodSandbox) -> PodInfo:
    return PodInfo(
        id=pod.id,
        uid=pod.uid,
        name=pod.name,
        namespace=pod.namespace,
        netns=network_namespace(pod),
        ips=tuple(pod.ips),
        pid=pod.pid,
        labels=MappingProxyType(dict(pod.labels)),
        annotations=MappingProxyType(dict(pod.annotations)),
    )


def container_from_pb(c: nri_pb2.Container) -> ContainerInfo:
    cpu = c.linux.resources.cpu
    return ContainerInfo(
        id=c.id,
        pod_sandbox_id=c.pod_sandbox_id,
        name=c.name,
        state=int(c.state),
        cpus=str(cpu.cpus),
        mems=str(cpu.mems),
        devices=tuple(str(d.path) for d in c.linux.devices),
    )


def adjustment_to_pb(adjust: ContainerAdjust | None) -> nri_pb2.ContainerAdjustment:
    """The ContainerAdjustment for `adjust`, device nodes de-duplicated by path (first wins)."""
    out = nri_pb2.ContainerAdjustment()
    if adjust is None:
        return out
    for dev in dedupe_devices(adjust.devices):
        d = out.linux.devices.add()
        d.path = dev.path
        d.type = dev.kind
        d.major = dev.major
        d.minor = dev.minor
        d.file_mode.value = dev.file_mode
        if dev.uid is not None:
            d.uid.value = dev.uid
        if dev.gid is not None:
            d.gid.value = dev.gid
    if adjust.cpus is not None:
        out.linux.resources.cpu.cpus = adjust.cpus
    if adjust.mems is not None:
        out.linux.resources.cpu.mems = adjust.mems
    return out


def update_to_pb(update: ContainerUpdate) -> nri_pb2.ContainerUpdate:
    """The ContainerUpdate message: the container's id and the CPU fields that are set."""
    out = nri_pb2.ContainerUpdate(container_id=update.container_id)
    if update.cpus is not None:
        out.linux.resources.cpu.cpus = update.cpus
    if update.mems is not None:
        out.linux.resources.cpu.mems = update.mems
    return out


def dedupe_devices(devices: Iterable[DeviceNode]) -> list[DeviceNode]:
    seen: set[str] = set()
    out: list[DeviceNode] = []
    for d in devices:
        if d.path not in seen:
            seen.add(d.path)
            out.append(d)
    return out
