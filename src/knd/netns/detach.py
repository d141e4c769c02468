"""Detach: give a pod's NICs back to the host and restore their host state (StopPodSandbox).

For each plan: first the RDMA device (exclusive mode), then the netdev: in the pod netns set it
down and move it to the host under its original name with its original MTU and MAC (one
RTM_NEWLINK); then restore alias, addresses, admin state, routes, rules and permanent
neighbours captured at prepare. Idempotent: a device already in the host is only restored.
Tolerates a netns that is gone (`netns_path=None` or unopenable): the kernel has already
returned a physical NIC to the host, possibly renamed `devN`; it is found by permanent MAC /
ifindex and renamed back. A virtual device (veth) is destroyed with its netns: reported as
`gone`. Never raises for one device's trouble: each result lists its errors.
A sub-interface plan deletes its child in the pod (`removed`; `gone` when the netns, and the
child with it, is gone) and never touches the parent, which other pods may share.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute

from knd.netns import rdma
from knd.netns.attach import PodSession, _ours_in_pod, return_to_host
from knd.netns.errors import NetnsError, NetnsOpenError, RdmaUnavailableError
from knd.netns.nsfd import open_host_netns
from knd.netns.plan import AttachPlan
from knd.netns.rawlink import LinkSocket
from knd.netns.restore import find_host_link, restore_host


@dataclass(frozen=True, slots=True)
class Detached:
    """Outcome for one device: `returned` (moved back from the pod), `restored` (was in the
    host already, state restored), `gone` (not found anywhere), `rdma-only`."""

    device: str
    outcome: str
    errors: tuple[str, ...] = ()


def _rdma_back(plan: AttachPlan, host_fd: int) -> list[str]:
    if plan.rdma is None or not plan.rdma.move_link or plan.rdma.link is None:
        return []
    try:
        rdma.move_device(plan.rdma.link, host_fd)
    except RdmaUnavailableError as exc:
        return [f"rdma: {exc}"]
    except (OSError, NetnsError) as exc:
        return [f"rdma: {exc}"]
    return []


def _host_only(plan: AttachPlan, host_fd: int) -> Detached:
    """The netns is gone: find the NIC in the host and restore it."""
    errors = _rdma_back(plan, host_fd)
    if plan.host is None:
        return Detached(plan.device, "rdma-only", tuple(errors))
    with IPRoute() as ipr:
        lsock = LinkSocket()
        try:
            index = find_host_link(lambda: ipr, lsock, plan.host)
            if index is None:
                return Detached(plan.device, "gone", tuple(errors))
            errors += restore_host(lambda: ipr, lsock, plan.host, index)
        finally:
            lsock.close()
    return Detached(plan.device, "restored", tuple(errors))


def _remove_child(session: PodSession | None, plan: AttachPlan) -> Detached:
    if session is None or plan.pod is None:
        return Detached(plan.device, "gone")
    try:
        index = session.pod_link.index_of(plan.pod.name)
        if index is None:
            return Detached(plan.device, "gone")
        session.pod_ipr.link("del", index=index)
    except Exception as exc:
        return Detached(plan.device, "gone", (f"delete child: {exc}",))
    return Detached(plan.device, "removed")


def detach(plans: Sequence[AttachPlan], netns_path: str | None) -> list[Detached]:
    """Return every device of the pod to the host and restore its captured state."""
    host_fd = open_host_netns()
    try:
        session: PodSession | None = None
        if netns_path is not None:
            with contextlib.suppress(NetnsOpenError):
                session = PodSession.open(netns_path, host_fd)
        results = []
        for plan in plans:
            if plan.sub is not None:
                results.append(_remove_child(session, plan))
                continue
            if session is None or plan.host is None or plan.pod is None:
                results.append(_host_only(plan, host_fd))
                continue
            errors = _rdma_back(plan, host_fd)
            try:
                in_pod = _ours_in_pod(session, plan.host, plan.pod) is not None
                errors += return_to_host(session, plan.host, plan.pod)
            except Exception as exc:
                errors.append(f"detach: {exc}")
                in_pod = False
            if (
                not in_pod
                and find_host_link(session.lazy_host_ipr, session.host_link, plan.host) is None
            ):
                results.append(Detached(plan.device, "gone", tuple(errors)))
                continue
            errors = [e for e in errors if "not found in the host" not in e]
            outcome = "returned" if in_pod else "restored"
            results.append(Detached(plan.device, outcome, tuple(errors)))
        if session is not None:
            session.close()
        return results
    finally:
        os.close(host_fd)
