"""A stand-in for knd.driver's hook implementation, used only by the e2e tests: it attaches a
host veth to pods annotated `knd.test/nic=<host ifname>` (move into the pod netns, rename to
net1, MTU 1450, 192.0.2.20/24, route to 198.51.100.0/24, up), restores it on StopPodSandbox
(using the netns recorded at RunPodSandbox when the event carries none: containerd 1.7), injects
a /dev/null-like char device (1:3) into containers of pods annotated `knd.test/dev`, and fails
the attach (after moving the NIC, then rolling back) for pods annotated `knd.test/fail`.
It is not knd's real data path (plans/store are another issue); it proves the transport.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyroute2 import IPRoute, NetNS

from knd.nri.errors import HookError
from knd.nri.types import ContainerAdjust, ContainerInfo, ContainerUpdate, DeviceNode, PodInfo

NIC_ANNOTATION = "knd.test/nic"
DEV_ANNOTATION = "knd.test/dev"
FAIL_ANNOTATION = "knd.test/fail"
POD_IFNAME = "net1"
POD_MTU = 1450
POD_ADDR = ("192.0.2.20", 24)
POD_ROUTE = ("198.51.100.0/24", "192.0.2.1")
DEVICE = DeviceNode(path="/dev/knd-test-null", major=1, minor=3)


@dataclass
class Attached:
    host_name: str
    host_mtu: int
    netns: str


@dataclass
class StandInHandler:
    events: list[tuple[str, PodInfo]] = field(default_factory=list)
    synced: list[tuple[list[PodInfo], list[ContainerInfo]]] = field(default_factory=list)
    attached: dict[str, Attached] = field(default_factory=dict)  # sandbox id -> attachment
    netns_by_sandbox: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def names(self) -> list[str]:
        with self.lock:
            return [n for n, _ in self.events]

    def run_pod_sandbox(self, pod: PodInfo) -> None:
        with self.lock:
            self.events.append(("RunPodSandbox", pod))
        if pod.netns:
            self.netns_by_sandbox[pod.id] = pod.netns
        host = pod.annotations.get(NIC_ANNOTATION)
        if host is None:
            return
        if pod.netns is None:
            raise HookError(f"pod {pod.namespace}/{pod.name} has a NIC claim but host network")
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=host)[0]
            mtu = int(ipr.get_links(idx)[0].get("IFLA_MTU"))
            fd = os.open(pod.netns, os.O_RDONLY)
            try:
                ipr.link("set", index=idx, net_ns_fd=fd)
            finally:
                os.close(fd)
        att = Attached(host, mtu, pod.netns)
        try:
            if FAIL_ANNOTATION in pod.annotations:
                raise HookError(f"attach of {host} failed (fixture-requested failure)")
            with NetNS(pod.netns, flags=0) as ns:
                j = ns.link_lookup(ifname=host)[0]
                ns.link("set", index=j, ifname=POD_IFNAME, mtu=POD_MTU)
                ns.addr("add", index=j, address=POD_ADDR[0], prefixlen=POD_ADDR[1])
                ns.link("set", index=j, state="up")
                ns.route("add", dst=POD_ROUTE[0], gateway=POD_ROUTE[1])
        except Exception:
            self._detach(att, current=host)
            raise
        self.attached[pod.id] = att

    def _detach(self, att: Attached, current: str) -> None:
        host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            with NetNS(att.netns, flags=0) as ns:
                found = ns.link_lookup(ifname=current)
                if found:
                    ns.link("set", index=found[0], state="down")
                    ns.link("set", index=found[0], net_ns_fd=host_fd, ifname=att.host_name)
        finally:
            os.close(host_fd)
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=att.host_name)[0]
            ipr.link("set", index=idx, mtu=att.host_mtu, state="up")

    def stop_pod_sandbox(self, pod: PodInfo) -> None:
        with self.lock:
            self.events.append(("StopPodSandbox", pod))
        att = self.attached.pop(pod.id, None)
        if att is not None:
            # containerd 1.7 sends no netns on stop: use the recorded one
            att.netns = pod.netns or self.netns_by_sandbox.get(pod.id, att.netns)
            self._detach(att, current=POD_IFNAME)

    def remove_pod_sandbox(self, pod: PodInfo) -> None:
        with self.lock:
            self.events.append(("RemovePodSandbox", pod))
        self.netns_by_sandbox.pop(pod.id, None)

    def create_container(self, pod: PodInfo, container: ContainerInfo) -> ContainerAdjust | None:
        if DEV_ANNOTATION in pod.annotations:
            return ContainerAdjust(devices=(DEVICE, DEVICE))  # duplicate on purpose: de-duped
        return None

    def synchronize(
        self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]
    ) -> Sequence[ContainerUpdate]:
        with self.lock:
            self.synced.append((list(pods), list(containers)))
        return ()
