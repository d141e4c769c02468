"""Detach: give a pod's NICs back to the host and restore their host state (StopPodSandbox).

For each plan: first the RDMA device (exclusive mode), then the netdev: in the pod netns set it
down and move it to the host under its original name with its original MTU and MAC (one
RTM_NEWLINK); then restore alias, addresses, admin state, routes, rules and permanent
neighbours captured at prepare. Idempotent: a device already in the host is only restored.
Tolerates a netns that is gone (`netns_path=None` or unopenable): the kernel has already
returned a physical NIC to the host, possibly renamed `devN`; it is found by permanent MAC /
ifindex and renamed back. A virtual device (veth) is destroyed with its netns: reported as
`gone`. Never raises: each device is handled on its own and its result lists its errors.
A sub-interface plan deletes its child in the pod (`removed`, also when the netns, and the
child with it, is already gone) and never touches the parent, which other pods may share.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
    host already, state restored), `gone` (not found anywhere), `rdma-only`, `failed` (an
    unexpected error; see `errors`)."""

    device: str
    outcome: str
    errors: tuple[str, ...] = ()

    @property
    def home(self) -> bool:
        """The device is in the host with its captured state (nothing left to retry); for a
        sub-interface (`removed`), its parent never left and the child is gone."""
        return self.outcome in ("returned", "restored", "rdma-only", "removed") and not self.errors


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


def _host_only(
    plan: AttachPlan, host_fd: int, lsock: LinkSocket, ipr: Callable[[], Any]
) -> Detached:
    """The netns is gone: find the NIC in the host (by identity, under any name the kernel gave
    it) and restore it."""
    errors = _rdma_back(plan, host_fd)
    if plan.host is None:
        return Detached(plan.device, "rdma-only", tuple(errors))
    pod_name = plan.pod.name if plan.pod is not None else None
    pod_mac = plan.pod.mac if plan.pod is not None else None
    index = find_host_link(lsock, plan.host, pod_name, pod_mac)
    if index is None:
        return Detached(plan.device, "gone", tuple(errors))
    errors += restore_host(ipr, lsock, plan.host, index)
    return Detached(plan.device, "restored", tuple(errors))


def _from_pod(plan: AttachPlan, session: PodSession, host_fd: int) -> Detached:
    assert plan.host is not None and plan.pod is not None
    errors = _rdma_back(plan, host_fd)
    in_pod = _ours_in_pod(session, plan.host, plan.pod) is not None
    errors += return_to_host(session, plan.host, plan.pod)
    if (
        not in_pod
        and find_host_link(session.host_link, plan.host, plan.pod.name, plan.pod.mac) is None
    ):
        return Detached(plan.device, "gone", tuple(errors))
    errors = [e for e in errors if "not found in the host" not in e]
    return Detached(plan.device, "returned" if in_pod else "restored", tuple(errors))


def _remove_child(session: PodSession | None, plan: AttachPlan) -> Detached:
    """Delete a sub-interface child in the pod; `removed` also when the netns (and the child
    with it) is already gone: either way the parent, which never left the host, is home."""
    if session is None or plan.pod is None:
        return Detached(plan.device, "removed")
    try:
        index = session.pod_link.index_of(plan.pod.name)
        if index is None:
            return Detached(plan.device, "removed")
        session.pod_ipr.link("del", index=index)
    except Exception as exc:
        return Detached(plan.device, "gone", (f"delete child: {exc}",))
    return Detached(plan.device, "removed")


def _pod_session(netns_path: str, host_fd: int) -> PodSession | None:
    """A session whose pod socket is open, or None when the pod netns cannot be entered (each
    device then takes the host-only path)."""
    try:
        session = PodSession.open(netns_path, host_fd)
    except NetnsOpenError:
        return None
    try:
        session.pod_link  # noqa: B018 -- waits for the hop thread's socket
    except NetnsOpenError:
        session.close()
        return None
    return session


def detach(plans: Sequence[AttachPlan], netns_path: str | None) -> list[Detached]:
    """Return every device of the pod to the host and restore its captured state.

    Never raises: each device is handled on its own (one device's exception becomes its
    `failed` result and the others still go home); the netns session, the host netns fd and
    the sockets are closed in `finally`."""
    results: list[Detached] = []
    host_fd: int | None = None
    session: PodSession | None = None
    lsock: LinkSocket | None = None
    ipr: Any = None

    def host_ipr() -> Any:
        nonlocal ipr
        if ipr is None:
            ipr = IPRoute()
        return ipr

    try:
        host_fd = open_host_netns()
        if netns_path is not None:
            session = _pod_session(netns_path, host_fd)
        for plan in plans:
            try:
                if plan.sub is not None:
                    results.append(_remove_child(session, plan))
                elif session is None or plan.host is None or plan.pod is None:
                    if lsock is None:
                        lsock = LinkSocket()
                    results.append(_host_only(plan, host_fd, lsock, host_ipr))
                else:
                    results.append(_from_pod(plan, session, host_fd))
            except Exception as exc:
                results.append(Detached(plan.device, "failed", (f"detach: {exc}",)))
    except Exception as exc:  # no host netns fd or socket: every remaining device failed
        done = {r.device for r in results}
        results += [
            Detached(p.device, "failed", (f"detach: {exc}",)) for p in plans if p.device not in done
        ]
    finally:
        for closer in (
            session.close if session is not None else None,
            lsock.close if lsock is not None else None,
            ipr.close if ipr is not None else None,
            (lambda: os.close(host_fd)) if host_fd is not None else None,
        ):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer()
    return results
