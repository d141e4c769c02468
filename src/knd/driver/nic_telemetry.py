"""Per-pod NIC telemetry: counters of every attached NIC, labelled by pod and claim.

`NicTelemetry` is a Prometheus collector. The hooks `track` a pod once its devices are attached
(RunPodSandbox, or found attached at Synchronize) and `forget` it at StopPodSandbox /
RemovePodSandbox, so series exist only for running pods: cardinality is bounded by the attached
NICs (at most `MAX_PODS` pods are tracked).

Per tracked pod the collector holds the pod's netns fd (opened at `track`) and, from the first
scrape on, a NETLINK_ROUTE socket created once inside that netns from the fd
(knd.netns.linkstats). A scrape sends one RTM_GETLINK per NIC over the held socket, on the
scraping thread: no subprocess, no thread per scrape, ~50 µs per NIC. RDMA port counters come
from sysfs for devices whose RDMA link stays in the host netns (shared mode).

Families (label set `namespace, pod, claim, device, interface, direction`; rx/tx):
`knd_pod_nic_{bytes,packets,drops,errors}_total`, and for RDMA
`knd_pod_rdma_{bytes,packets,drops,errors}_total` with `rdma_device, port` instead of
`interface`. `knd_pod_nic_read_errors_total` counts failed reads (a NIC gone, a netns gone).
`track` never raises (a netns that cannot be opened is logged and skipped): it runs in an NRI
hook and telemetry must never fail a pod.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from knd.host.rdma_counters import read_rdma_counters
from knd.kubelet.health_probe import PodLinkState
from knd.netns.errors import NetnsError
from knd.netns.linkstats import LinkStats, LinkStatsReader
from knd.netns.nsfd import open_netns
from knd.netns.plan import AttachPlan

log = logging.getLogger(__name__)

MAX_PODS = 1024
KINDS = ("bytes", "packets", "drops", "errors")
NIC_LABELS = ("namespace", "pod", "claim", "device", "interface", "direction")
RDMA_LABELS = ("namespace", "pod", "claim", "device", "rdma_device", "port", "direction")


class StatsReader(Protocol):
    def read(self, ifname: str) -> LinkStats | None: ...

    def close(self) -> None: ...


ReaderFactory = Callable[[int], StatsReader]


@dataclass(frozen=True)
class TrackedNic:
    """One attached NIC: its claim and the names it has in the pod / the host's RDMA device."""

    claim: str
    device: str
    ifname: str | None  # in the pod netns; None for an RDMA-only device
    rdma_device: str | None  # host-visible RDMA device (shared mode), else None
    rdma_moved: bool = False  # its RDMA device moved into the pod's netns (exclusive mode)


@dataclass
class _Pod:
    namespace: str
    name: str
    netns_fd: int
    nics: tuple[TrackedNic, ...]
    reader: StatsReader | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if self.reader is not None:
                self.reader.close()
                self.reader = None
            if self.netns_fd >= 0:
                os.close(self.netns_fd)
                self.netns_fd = -1


def nics_of(entries: Iterable[tuple[str, AttachPlan]]) -> tuple[TrackedNic, ...]:
    """(claim name, plan) pairs → what telemetry reads for each device."""
    out = []
    for claim, plan in entries:
        rdma_device = None
        if plan.rdma is not None and plan.rdma.link and not plan.rdma.move_link:
            rdma_device = plan.rdma.link
        moved = plan.rdma is not None and bool(plan.rdma.link) and plan.rdma.move_link
        ifname = plan.pod.name if plan.pod is not None else None
        if ifname is None and rdma_device is None:
            continue
        out.append(TrackedNic(claim, plan.device, ifname, rdma_device, moved))
    return tuple(out)


class NicTelemetry(Collector):
    """See the module docstring. Thread-safe: hooks track/forget while scrapes collect."""

    def __init__(
        self, sysfs_root: str = "/sys", reader_factory: ReaderFactory = LinkStatsReader
    ) -> None:
        self.sysfs_root = sysfs_root
        self.reader_factory = reader_factory
        self._pods: dict[str, _Pod] = {}
        self._guard = threading.Lock()
        self.read_errors = 0

    # -- hook side ------------------------------------------------------------------------
    def track(
        self,
        pod_uid: str,
        namespace: str,
        name: str,
        netns: str,
        nics: Sequence[TrackedNic],
    ) -> None:
        """Start reading the pod's NICs from its netns (path). Never raises."""
        if not nics or not netns:
            return
        with self._guard:
            if pod_uid in self._pods:
                return
            if len(self._pods) >= MAX_PODS:
                log.warning("telemetry: %d pods tracked; not tracking %s", MAX_PODS, pod_uid)
                return
            try:
                fd = open_netns(netns)
            except NetnsError as exc:
                log.warning("telemetry: pod %s/%s: %s", namespace, name, exc)
                return
            self._pods[pod_uid] = _Pod(namespace, name, fd, tuple(nics))

    def forget(self, pod_uid: str) -> None:
        """Stop reading the pod and drop its series (closes the held fd and socket)."""
        with self._guard:
            pod = self._pods.pop(pod_uid, None)
        if pod is not None:
            pod.close()

    def tracked(self) -> list[str]:
        with self._guard:
            return sorted(self._pods)

    def close(self) -> None:
        for uid in self.tracked():
            self.forget(uid)

    def link_state(self, device: str) -> PodLinkState | None:
        """Device health's view of an attached NIC (knd.kubelet.health_probe.AttachedLinks):
        its link read inside the pod that holds it, over the pod's held socket; None when no
        tracked pod holds `device` (or it has no netdev). Never raises: a failed read is
        reported as the link not found (UNHEALTHY, with the pod named)."""
        with self._guard:
            found = [(p, t) for p in self._pods.values() for t in p.nics if t.device == device]
        if not found:
            return None
        pod, nic = found[0]
        if nic.ifname is None:
            return None
        where = f"pod {pod.namespace}/{pod.name}"
        try:
            stats = self._read(pod, nic.ifname)
        except (OSError, NetnsError) as exc:
            log.debug("health: %s %s: %s", where, nic.ifname, exc)
            stats = None
        if stats is None:
            return PodLinkState(where, nic.ifname, None, None, nic.rdma_moved)
        return PodLinkState(where, nic.ifname, stats.operstate, stats.carrier, nic.rdma_moved)

    # -- scrape side ----------------------------------------------------------------------
    def describe(self) -> list[CounterMetricFamily]:
        return [
            *self._families("nic", NIC_LABELS),
            *self._families("rdma", RDMA_LABELS),
            self._errors_family(),
        ]

    def _errors_family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "knd_pod_nic_read_errors", "Failed reads of per-pod NIC counters"
        )

    @staticmethod
    def _families(prefix: str, labels: Sequence[str]) -> list[CounterMetricFamily]:
        what = "NIC" if prefix == "nic" else "RDMA port"
        return [
            CounterMetricFamily(
                f"knd_pod_{prefix}_{kind}",
                f"{what} {kind} of an attached device, per pod and claim, by direction",
                labels=labels,
            )
            for kind in KINDS
        ]

    def _read(self, pod: _Pod, ifname: str) -> LinkStats | None:
        with pod.lock:
            if pod.netns_fd < 0:
                return None  # forgotten while this scrape ran
            if pod.reader is None:
                pod.reader = self.reader_factory(pod.netns_fd)
            return pod.reader.read(ifname)

    def collect(self) -> Iterator[CounterMetricFamily]:
        nic = dict(zip(KINDS, self._families("nic", NIC_LABELS), strict=True))
        rdma = dict(zip(KINDS, self._families("rdma", RDMA_LABELS), strict=True))
        with self._guard:
            pods = list(self._pods.values())
        for pod in pods:
            for t in pod.nics:
                base = [pod.namespace, pod.name, t.claim, t.device]
                if t.ifname is not None:
                    try:
                        stats = self._read(pod, t.ifname)
                    except (OSError, NetnsError) as exc:
                        with self._guard:
                            self.read_errors += 1
                        log.debug("telemetry: %s/%s %s: %s", pod.namespace, pod.name, t, exc)
                        stats = None
                    if stats is not None:
                        for kind, rx, tx in (
                            ("bytes", stats.rx_bytes, stats.tx_bytes),
                            ("packets", stats.rx_packets, stats.tx_packets),
                            ("drops", stats.rx_dropped, stats.tx_dropped),
                            ("errors", stats.rx_errors, stats.tx_errors),
                        ):
                            nic[kind].add_metric([*base, t.ifname, "rx"], rx)
                            nic[kind].add_metric([*base, t.ifname, "tx"], tx)
                if t.rdma_device is not None:
                    for c in read_rdma_counters(t.rdma_device, self.sysfs_root):
                        rdma[c.kind].add_metric(
                            [*base, t.rdma_device, c.port, c.direction], c.value
                        )
        yield from nic.values()
        yield from rdma.values()
        errors = self._errors_family()
        errors.add_metric([], self.read_errors)
        yield errors
