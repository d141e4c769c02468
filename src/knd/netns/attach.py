"""Attach: execute the AttachPlans of one pod in its netns, transactionally (NRI RunPodSandbox).

Time budget: the whole NRI hook has 2 s; one NIC takes ~20 ms here (the netns move itself
costs the kernel ~15 ms). No discovery, no DHCP, no subprocess: only netlink, one set-link
request for the move, and sysctl/ethtool work on a thread inside the pod netns.

Per device, the steps are (knd.netns.steps.AttachStep: AttachError.step, StepObserver.on_step):
    lookup   find the interface in the host by identity (or already in the pod: re-apply);
             refuse it if it now carries the default route or a node address
    down     set it down in the host
    move     one RTM_NEWLINK: netns fd + final name + MTU + MAC + GSO/GRO sizes (v6 and v4)
    pod-lookup  find it in the pod (on a re-apply: set MTU/MAC/sizes there)
    sysctl   arp_ignore / arp_announce / forwarding (IPv4 and IPv6), before link up
    address  add addresses
    up       set link up
    ethtool  features (kernel names), then private flags
    ebpf     detach TC/TCX programs (when requested)
    vrf      create or reuse the VRF, set it up, enslave, tcp/udp_l3mdev_accept=1
    route    routes (link-scope first; VRF table already resolved in the plan)
    rule     rules
    neighbor permanent neighbours
    rdma     move the RDMA device (exclusive netns mode only)
A sub-interface plan (`plan.sub`) replaces down/move with one step:
    child    create the macvlan/ipvlan child of the host device directly in the pod netns
             under its final name (the parent never leaves the host); undo deletes it.
             A kernel without the link kind fails this step with a message saying so.
EEXIST is success everywhere, so attaching again is harmless. Every step that changes state
pushes an undo action; when any step of any device fails, the undo log runs backwards, so each
device already moved goes back to the host with its original name, MTU, MAC, addresses,
routes, rules and neighbours, and AttachError(device, step, cause) is raised.

Tests watch or disturb an attach only through `observer` (knd.netns.steps.StepObserver): it is
called before each step of each device; an exception it raises fails that step as any other
failure would (rollback, AttachError). The daemon passes none.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from knd.netns import ebpf, rdma, sysctl
from knd.netns.errors import AttachError, NetnsError, PlanError
from knd.netns.ethtool_apply import apply_features
from knd.netns.nsfd import (
    NetnsWorker,
    Pending,
    check_netns_fd,
    open_host_netns,
    open_in_background,
    open_netns,
)
from knd.netns.plan import AttachPlan, HostSide, PodSide, SubInterface, check_plan
from knd.netns.privflags import apply_private_flags
from knd.netns.rawlink import (
    IFLA_GRO_IPV4_MAX_SIZE,
    IFLA_GRO_MAX_SIZE,
    IFLA_GSO_IPV4_MAX_SIZE,
    IFLA_GSO_MAX_SIZE,
    LinkSocket,
)
from knd.netns.restore import find_host_link, mac_change, restore_host
from knd.netns.rtnl import (
    add_neighbor,
    add_rule,
    del_rule,
    iproute_in,
    link_index,
)
from knd.netns.steps import AttachStep, StepObserver
from knd.netns.uplink import uplink_problem


@dataclass(frozen=True, slots=True)
class Attached:
    """What one device looks like in the pod after attach (for the claim's networkData)."""

    device: str
    interface_name: str | None
    hardware_address: str | None
    ips: tuple[str, ...]
    detached_ebpf: tuple[str, ...] = ()


@dataclass
class _Undo:
    device: str
    step: AttachStep
    fn: Callable[[], list[str] | None]


@dataclass
class PodSession:
    """Sockets for one pod netns (host handles included), and a worker thread on demand.

    The raw `pod_link`/`host_link` sockets serve the hot path. `pod_link` is opened inside the
    pod netns by knd.netns.nsfd.open_in_background when the session opens (no thread is
    started for it) and collected on first use: the attach first uses it just before the
    move, so the hop overlaps the host-side lookup. The worker thread
    (sysctls, ethtool, eBPF, pyroute2) and the pyroute2 handles (`pod_ipr`, `host_ipr`: rules,
    neighbours, VRF, searches, rollback and detach) are started on first use: a worker ~0.14 ms,
    each handle ~1.5 ms to open and close."""

    pod_fd: int
    host_fd: int
    _pod_link: Pending[LinkSocket]
    host_link: LinkSocket
    _own_host_fd: bool = False
    undo: list[_Undo] = field(default_factory=list)
    _worker: NetnsWorker | None = None
    _pod_ipr: Any = None
    _host_ipr: Any = None

    @property
    def pod_link(self) -> LinkSocket:
        """The raw netlink socket inside the pod netns (NetnsOpenError if it could not be
        opened there)."""
        return self._pod_link.result()

    @property
    def worker(self) -> NetnsWorker:
        """A thread inside the pod netns (started on first use)."""
        if self._worker is None:
            self._worker = NetnsWorker(self.pod_fd, name="knd-attach")
        return self._worker

    @property
    def pod_ipr(self) -> Any:
        """pyroute2 IPRoute inside the pod netns (opened on first use)."""
        if self._pod_ipr is None:
            self._pod_ipr = iproute_in(self.worker)
        return self._pod_ipr

    @property
    def host_ipr(self) -> Any:
        """pyroute2 IPRoute in the host netns (opened on first use)."""
        if self._host_ipr is None:
            self._host_ipr = IPRoute()
        return self._host_ipr

    def lazy_host_ipr(self) -> Any:
        """`host_ipr` as a callable, for code that may not need it at all."""
        return self.host_ipr

    @classmethod
    def open(cls, netns_path: str, host_fd: int | None = None) -> PodSession:
        pod_fd = open_netns(netns_path)
        own = host_fd is None
        hfd = open_host_netns() if host_fd is None else host_fd
        try:
            check_netns_fd(pod_fd, netns_path)  # before any change
            pod_link = open_in_background(pod_fd, LinkSocket)
        except BaseException:
            os.close(pod_fd)
            if own:
                os.close(hfd)
            raise
        try:
            host_link = LinkSocket()
        except BaseException:
            with contextlib.suppress(Exception):
                pod_link.result().close()
            os.close(pod_fd)
            if own:
                os.close(hfd)
            raise
        return cls(
            pod_fd=pod_fd, host_fd=hfd, _pod_link=pod_link, host_link=host_link, _own_host_fd=own
        )

    def _close_pod_link(self) -> None:
        self.pod_link.close()  # waits for the hop first (NetnsOpenError if it failed)

    def close(self) -> None:
        closers: list[Callable[[], object]] = [
            ipr.close for ipr in (self._pod_ipr, self._host_ipr) if ipr is not None
        ]
        closers += [self._close_pod_link, self.host_link.close]
        if self._worker is not None:  # it ends by itself; the hook need not wait
            closers.append(functools.partial(self._worker.close, wait=False))
        for closer in closers:
            with contextlib.suppress(Exception):
                closer()
        os.close(self.pod_fd)
        if self._own_host_fd:
            os.close(self.host_fd)


def _size_attrs(pod: PodSide) -> dict[int, int]:
    out = {}
    for kind, value in (
        (IFLA_GSO_MAX_SIZE, pod.gso_max_size),
        (IFLA_GRO_MAX_SIZE, pod.gro_max_size),
        (IFLA_GSO_IPV4_MAX_SIZE, pod.gso_ipv4_max_size),
        (IFLA_GRO_IPV4_MAX_SIZE, pod.gro_ipv4_max_size),
    ):
        if value is not None:
            out[kind] = value
    return out


def _ours_in_pod(s: PodSession, host: HostSide, pod: PodSide) -> int | None:
    """ifindex of this device in the pod: under its final name or (after a move whose rename
    failed) its host name, and only with the MAC it must have — never a CNI interface."""
    macs = {m for m in (pod.mac, host.mac, host.perm_mac) if m}
    for name in dict.fromkeys((pod.name, host.name)):
        facts = s.pod_link.link(ifname=name)
        if facts is not None and (facts.mac or "").lower() in macs:
            return facts.index
    return None


def return_to_host(s: PodSession, host: HostSide, pod: PodSide) -> list[str]:
    """Move this device from the pod back to the host (if it is there) and restore it."""
    index = _ours_in_pod(s, host, pod)
    if index is not None:
        try:
            s.pod_link.setlink(index, up=False)
            s.pod_link.setlink(
                index,
                netns_fd=s.host_fd,
                ifname=host.name,
                mtu=host.mtu,
                mac=mac_change(s.pod_link.link(index), host.mac),
            )
        except OSError as exc:
            return [f"move-back: {exc}"]
    host_index = find_host_link(s.host_link, host, pod.name, pod.mac)
    if host_index is None:
        return ["move-back: interface not found in the host"]
    return restore_host(s.lazy_host_ipr, s.host_link, host, host_index)


class _Executor:
    def __init__(
        self,
        session: PodSession,
        observer: StepObserver | None = None,
        node_addresses: frozenset[str] = frozenset(),
    ) -> None:
        self.s = session
        self.observer = observer
        self.node_addresses = node_addresses

    @contextlib.contextmanager
    def step(self, device: str, name: AttachStep) -> Iterator[None]:
        try:
            if self.observer is not None:
                self.observer.on_step(name, device)
            yield
        except AttachError:
            raise
        except Exception as exc:
            raise AttachError(device, name, exc) from exc

    def push(self, device: str, step: AttachStep, fn: Callable[[], list[str] | None]) -> None:
        self.s.undo.append(_Undo(device, step, fn))

    def rollback(self) -> list[str]:
        errors: list[str] = []
        while self.s.undo:
            u = self.s.undo.pop()
            try:
                for e in u.fn() or []:
                    errors.append(f"{u.device}/{u.step}: {e}")
            except Exception as exc:
                errors.append(f"{u.device}/{u.step}: {exc}")
        return errors

    def run(self, plan: AttachPlan) -> Attached:
        dev = plan.device
        if plan.host is None or plan.pod is None:
            self.rdma(plan)
            return Attached(dev, None, None, ())
        host, pod = plan.host, plan.pod
        s = self.s
        if plan.sub is not None:
            return self.run_child(plan)
        with self.step(dev, AttachStep.LOOKUP):
            hidx = find_host_link(s.host_link, host)
            already = hidx is None and _ours_in_pod(s, host, pod) is not None
            if hidx is None and not already:
                raise NetnsError(f"interface {host.name} is neither in the host nor in the pod")
            if hidx is not None:
                problem = uplink_problem(s.host_link, hidx, host.name, self.node_addresses)
                if problem is not None:
                    raise NetnsError(problem)
        moved_as: int | None = None
        if not already:
            assert hidx is not None
            with self.step(dev, AttachStep.DOWN):
                s.host_link.setlink(hidx, up=False)
                # Down flushes IPv6 addresses and the routes through the link: undo restores all.
                self.push(
                    dev,
                    AttachStep.DOWN,
                    lambda: restore_host(s.lazy_host_ipr, s.host_link, host, hidx),
                )
            with self.step(dev, AttachStep.MOVE):
                if s.pod_link.index_of(pod.name) is not None:
                    raise NetnsError(f"the pod already has an interface named {pod.name}")
                # The kernel may move the link and then fail the rename: undo covers both.
                s.undo.pop()
                self.push(dev, AttachStep.MOVE, lambda: return_to_host(s, host, pod))
                moved_as = self.move(hidx, pod)
        if already:  # re-apply: a failure from here on must still bring it home
            self.push(dev, AttachStep.MOVE, lambda: return_to_host(s, host, pod))
        with self.step(dev, AttachStep.POD_LOOKUP):
            pidx = moved_as
            if pidx is None:
                pidx = s.pod_link.index_of(pod.name)
            if pidx is None:
                raise NetnsError(f"{pod.name} not found in the pod after the move")
            if already and (pod.mtu or pod.mac or _size_attrs(pod)):
                s.pod_link.setlink(pidx, mtu=pod.mtu, mac=pod.mac, u32=_size_attrs(pod))
        return self.configure(plan, pidx)

    def move(self, hidx: int, pod: PodSide) -> int | None:
        """The move itself: one RTM_NEWLINK with the pod's netns fd, final name, MTU, MAC and
        sizes. It asks to keep ifindex `hidx` (what the kernel does anyway when the pod has it
        free), so the pod-side index is known without a lookup; when the pod uses that
        ifindex (EBUSY, nothing changed yet) it moves again letting the kernel pick one, and
        returns None (`pod-lookup` then finds it by name)."""
        s = self.s
        move = functools.partial(
            s.host_link.setlink,
            hidx,
            netns_fd=s.pod_fd,
            ifname=pod.name,
            mtu=pod.mtu,
            mac=pod.mac,
            u32=_size_attrs(pod),
        )
        try:
            move(new_ifindex=hidx)
        except OSError as exc:
            if exc.errno != errno.EBUSY or s.host_link.link(hidx) is None:
                raise  # EBUSY from a later attribute (MAC, after the move): undo brings it home
            move()
            return None
        return hidx

    def run_child(self, plan: AttachPlan) -> Attached:
        """A sub-interface: create the child in the pod, then configure it like a moved NIC."""
        assert plan.host is not None and plan.pod is not None and plan.sub is not None
        dev, host, pod, sub = plan.device, plan.host, plan.pod, plan.sub
        s = self.s
        with self.step(dev, AttachStep.LOOKUP):
            parent = find_host_link(s.host_link, host)
            if parent is None:
                raise NetnsError(
                    f"parent interface {host.name} is not in the host (moved into a pod?)"
                )
        with self.step(dev, AttachStep.CHILD):
            pidx = s.pod_link.index_of(pod.name)
            if pidx is None:  # else: a re-apply, the child exists already
                _add_child(s, parent, pod.name, plan.sub)
                pidx = s.pod_link.index_of(pod.name)
                if pidx is None:
                    raise NetnsError(f"{sub.kind} child {pod.name} vanished after creation")
                index = pidx
                self.push(dev, AttachStep.CHILD, lambda: _del_child(s, index))
        return self.configure(plan, pidx)

    def configure(self, plan: AttachPlan, pidx: int) -> Attached:
        """The pod-side steps shared by a moved NIC and a sub-interface."""
        assert plan.host is not None and plan.pod is not None
        dev, host, pod = plan.device, plan.host, plan.pod
        s = self.s
        ebpf_detached: tuple[str, ...] = ()
        with self.step(dev, AttachStep.SYSCTL):
            writes = [
                (sysctl.interface_path(x.family, pod.name, x.key), x.value) for x in pod.sysctls
            ]
            if writes:
                s.worker.call(_write_all, writes)
        with self.step(dev, AttachStep.ADDRESS):
            for cidr in pod.addresses:
                s.pod_link.add_address(pidx, cidr)
        with self.step(dev, AttachStep.UP):
            s.pod_link.setlink(pidx, up=True)
        with self.step(dev, AttachStep.ETHTOOL):
            if pod.features:
                s.worker.call(apply_features, pod.name, pod.features)
            if pod.private_flags:
                s.worker.call(apply_private_flags, pod.name, pod.private_flags)
        with self.step(dev, AttachStep.EBPF):
            if pod.disable_ebpf:
                ebpf_detached = ebpf.detach_tc_programs(s.pod_ipr, pidx)
                ebpf_detached += s.worker.call(ebpf.detach_tcx_programs, pidx)
        with self.step(dev, AttachStep.VRF):
            if pod.vrf is not None:
                self.vrf(dev, pod, pidx)
        with self.step(dev, AttachStep.ROUTE):
            for route in pod.routes:
                s.pod_link.add_route(pidx, route)
        with self.step(dev, AttachStep.RULE):
            for rule in pod.rules:
                if add_rule(s.pod_ipr, rule):
                    self.push(dev, AttachStep.RULE, lambda r=rule: del_rule(s.pod_ipr, r))  # type: ignore[misc]
        with self.step(dev, AttachStep.NEIGHBOR):
            for neigh in pod.neighbors:
                add_neighbor(s.pod_ipr, pidx, neigh)
        self.rdma(plan)
        mac = pod.mac or host.mac
        if plan.sub is not None:
            facts = s.pod_link.link(index=pidx)
            mac = (facts.mac if facts is not None else None) or mac
        return Attached(dev, pod.name, mac, pod.addresses, ebpf_detached)

    def vrf(self, dev: str, pod: PodSide, pidx: int) -> None:
        assert pod.vrf is not None
        s = self.s
        vidx = link_index(s.pod_ipr, pod.vrf.name)
        if vidx is None:
            s.pod_ipr.link("add", ifname=pod.vrf.name, kind="vrf", vrf_table=pod.vrf.table)
            vidx = link_index(s.pod_ipr, pod.vrf.name)
            if vidx is None:
                raise NetnsError(f"VRF {pod.vrf.name} vanished after creation")
            name = pod.vrf.name
            self.push(dev, AttachStep.VRF, lambda: s.pod_ipr.link("del", ifname=name) and None)
        s.pod_link.setlink(vidx, up=True)
        s.pod_ipr.link("set", index=pidx, master=vidx)
        s.worker.call(
            _write_all,
            [
                (sysctl.global_path("ipv4/tcp_l3mdev_accept"), 1),
                (sysctl.global_path("ipv4/udp_l3mdev_accept"), 1),
            ],
        )

    def rdma(self, plan: AttachPlan) -> None:
        if plan.rdma is None or not plan.rdma.move_link or plan.rdma.link is None:
            return
        link = plan.rdma.link
        with self.step(plan.device, AttachStep.RDMA):
            rdma.move_device(link, self.s.pod_fd)
            self.push(plan.device, AttachStep.RDMA, lambda: rdma.move_device(link, self.s.host_fd))


_IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}
_IPVLAN_FLAGS = {"bridge": 0, "private": 1, "vepa": 2}


def _add_child(s: PodSession, parent: int, name: str, sub: SubInterface) -> None:
    """Create the child of host link `parent` directly in the pod netns as `name`."""
    kwargs: dict[str, Any] = {"ifname": name, "kind": sub.kind, "link": parent}
    if sub.kind == "macvlan":
        kwargs["macvlan_mode"] = sub.mode
    else:
        kwargs["ipvlan_mode"] = _IPVLAN_MODES[sub.mode]
        if sub.flag is not None:
            kwargs["ipvlan_flags"] = _IPVLAN_FLAGS[sub.flag]
    try:
        s.lazy_host_ipr().link("add", net_ns_fd=s.pod_fd, **kwargs)
    except NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            raise NetnsError(
                f"this kernel has no {sub.kind} support (link kind {sub.kind!r} unknown: "
                "the module is not built or not loadable); use a macvlan subInterface "
                "or a kernel with " + sub.kind
            ) from exc
        raise


def _del_child(s: PodSession, index: int) -> list[str]:
    try:
        s.pod_ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            return [f"delete child: {exc}"]
    return []


def _write_all(writes: list[tuple[str, int]]) -> None:
    for path, value in writes:
        sysctl.write(path, value)


def attach(
    plans: Sequence[AttachPlan],
    netns_path: str,
    *,
    host_netns_fd: int | None = None,
    observer: StepObserver | None = None,
    node_addresses: frozenset[str] = frozenset(),
) -> list[Attached]:
    """Attach every device of one pod into `netns_path`; all or nothing.

    A device found in the host that now carries the default route or one of
    `node_addresses` is refused at the `lookup` step (knd.netns.uplink). `observer` (tests
    only) is called before each step of each device (knd.netns.steps).

    Raises AttachError(device, step, cause) after rolling back every device of the pod;
    NetnsOpenError if the pod netns cannot be opened; PlanError for a malformed plan (nothing
    was changed then).
    """
    for plan in plans:
        check_plan(plan)
    names = [p.pod.name for p in plans if p.pod is not None]
    if len(names) != len(set(names)):
        raise PlanError(f"two devices of the pod want the same interface name: {names}")
    session = PodSession.open(netns_path, host_netns_fd)
    ex = _Executor(session, observer, node_addresses)
    try:
        results = []
        for plan in plans:
            results.append(ex.run(plan))
        return results
    except AttachError as exc:
        exc.rollback_errors.extend(ex.rollback())
        raise AttachError(exc.device, exc.step, exc.cause, exc.rollback_errors) from exc.cause
    except BaseException:
        ex.rollback()
        raise
    finally:
        session.close()
