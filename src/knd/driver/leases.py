"""Keep the DHCPv4 leases of attached devices alive (`interface.dhcp: true`).

A lease is obtained at prepare on the host interface (knd.netns.dhcp) and its address moves into
the pod with the NIC; without renewal the server would hand the address to someone else once
the lease runs out, while the pod still uses it. `LeaseKeeper` renews from the pod netns, as a
DHCP client would (RFC 2131 timers):

- at T1 = half the lease: RENEWING (unicast REQUEST to the granting server);
- from T2 = 7/8 of the lease: REBINDING (broadcast REQUEST, any server);
- an ACK starts the timers again from now; no answer retries after half the time left to the
  next timer (at least `min_retry_s`); past the lease's end it keeps rebinding every
  `expired_retry_s` and logs an error each time: the address stays on the interface (taking it
  away would cut the pod off), so the operator must act;
- a NAK stops renewing that lease and logs an error (the server wants the address back).

Tracked: the plans with `pod.dhcp` of pods attached by this daemon (run_pod_sandbox, or found
attached at Synchronize after a restart); forgotten at StopPodSandbox. Renewals after a restart
start from the lease as obtained at prepare (an early renewal is harmless). Outcomes are
counted in `knd_driver_dhcp_renewals_total{result}` (ack, nak, error, expired), and an
observer (`set_observer`; the daemon reports into the claim's status) hears when a lease is
lost (NAK, or past its end) and when a lost lease is renewed again.
Thread: one daemon thread sleeping until the next due renewal; each renewal is one DHCP
exchange (≤ `timeout_s`) in a NetnsWorker of the pod's netns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from knd.netns.dhcp import release_lease, renew_lease
from knd.netns.errors import DhcpNakError
from knd.netns.hoststate import DhcpLease
from knd.netns.nsfd import NetnsWorker, open_netns
from knd.netns.plan import AttachPlan, DhcpBinding

log = logging.getLogger(__name__)

#: renew(netns path, ifname, mac, address CIDR, server, rebinding) → the ACKed lease.
RenewFn = Callable[[str, str, str, str, str | None, bool], DhcpLease]
#: result label → counted once per renewal attempt
CountFn = Callable[[str], None]
#: (lease, valid, reason, message): a lease was lost (valid False) or renewed after a loss
ObserverFn = Callable[["Tracked", bool, str, str], None]


def renew_in_netns(
    netns: str, ifname: str, mac: str, address: str, server: str | None, rebinding: bool
) -> DhcpLease:
    """One renewal exchange from inside the pod netns `netns` (a path)."""
    fd = open_netns(netns)
    try:
        with NetnsWorker(fd, name="knd-dhcp") as worker:
            return worker.call(
                lambda: renew_lease(ifname, mac, address, server, rebinding=rebinding)
            )
    finally:
        os.close(fd)


def release_in_netns(netns: str, ifname: str, mac: str, address: str, server: str | None) -> None:
    """Send the DHCPRELEASE of `address` from inside the pod netns `netns` (a path); raises
    NetnsError/DhcpError when the netns or the interface is gone."""
    fd = open_netns(netns)
    try:
        with NetnsWorker(fd, name="knd-dhcp") as worker:
            worker.call(lambda: release_lease(ifname, mac, address, server))
    finally:
        os.close(fd)


def release_from_host(plan: AttachPlan) -> bool:
    """At unprepare, the NIC is back on the host without its leased address: send the plan's
    DHCPRELEASE from the host interface (unicast, else broadcast on the link; servers key
    leases by client, so a lease already released at StopPodSandbox is left alone). Returns
    False when the plan has no lease; raises DhcpError when it cannot be sent."""
    pod, host = plan.pod, plan.host
    if pod is None or host is None or pod.dhcp is None:
        return False
    release_lease(host.name, pod.mac or host.mac, pod.dhcp.address, pod.dhcp.server)
    return True


@dataclass(frozen=True)
class Tracked:
    """One lease being kept: where it lives and its current binding."""

    pod_uid: str
    device: str
    netns: str
    ifname: str
    mac: str
    binding: DhcpBinding
    due: float  # epoch seconds of the next attempt
    lost: bool = False  # a loss was reported and no renewal succeeded since

    @property
    def t2(self) -> float:
        assert self.binding.lease_time is not None
        return self.binding.obtained_at + self.binding.lease_time * 7 / 8

    @property
    def expires(self) -> float:
        assert self.binding.lease_time is not None
        return float(self.binding.obtained_at + self.binding.lease_time)


class LeaseKeeper:
    """Renews tracked DHCP leases on time (see the module docstring). Thread-safe."""

    def __init__(
        self,
        renew: RenewFn = renew_in_netns,
        *,
        clock: Callable[[], float] = time.time,
        count: CountFn | None = None,
        min_retry_s: float = 60.0,
        expired_retry_s: float = 60.0,
    ) -> None:
        self._renew = renew
        self._clock = clock
        self._count = count or (lambda _result: None)
        self.min_retry_s = min_retry_s
        self.expired_retry_s = expired_retry_s
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._leases: dict[tuple[str, str], Tracked] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._observer: ObserverFn | None = None

    def set_observer(self, observer: ObserverFn | None) -> None:
        """Call `observer` when a lease is lost or renewed after a loss (from the keeper's
        thread; it must not raise or block for long)."""
        self._observer = observer

    def _tell(self, item: Tracked, valid: bool, reason: str, message: str) -> None:
        if self._observer is None:
            return
        try:
            self._observer(item, valid, reason, message)
        except Exception:
            log.exception("reporting the DHCP lease state of %s failed", item.device)

    # -- tracking -------------------------------------------------------------------------
    def track(self, pod_uid: str, netns: str, plans: Sequence[AttachPlan]) -> int:
        """Keep the leases of these attached plans; returns how many are tracked for the pod."""
        added = 0
        with self._lock:
            for plan in plans:
                pod, host = plan.pod, plan.host
                if pod is None or host is None or pod.dhcp is None:
                    continue
                if pod.dhcp.lease_time is None:
                    continue  # infinite lease
                key = (pod_uid, plan.device)
                if key in self._leases and self._leases[key].netns == netns:
                    added += 1
                    continue  # already kept (a Synchronize after run_pod_sandbox)
                binding = pod.dhcp
                self._leases[key] = Tracked(
                    pod_uid=pod_uid,
                    device=plan.device,
                    netns=netns,
                    ifname=pod.name,
                    mac=pod.mac or host.mac,
                    binding=binding,
                    due=binding.obtained_at + binding.lease_time / 2,  # type: ignore[operator]
                )
                added += 1
            self._wake.notify_all()
        return added

    def forget(self, pod_uid: str) -> None:
        """Stop renewing the leases of a pod (its NICs are going back to the host)."""
        with self._lock:
            for key in [k for k in self._leases if k[0] == pod_uid]:
                del self._leases[key]

    def tracked(self) -> list[Tracked]:
        """The leases being kept (copies), soonest first."""
        with self._lock:
            return sorted(self._leases.values(), key=lambda t: t.due)

    # -- renewing -------------------------------------------------------------------------
    def run_due(self) -> int:
        """Renew every lease that is due now; returns how many attempts were made."""
        now = self._clock()
        with self._lock:
            due = [t for t in self._leases.values() if t.due <= now]
        for item in due:
            self._attempt(item, now)
        return len(due)

    def _attempt(self, item: Tracked, now: float) -> None:
        old = item
        rebinding = now >= item.t2
        who = f"pod {item.pod_uid} device {item.device} ({item.binding.address})"
        try:
            lease = self._renew(
                item.netns, item.ifname, item.mac, item.binding.address, item.binding.server,
                rebinding,
            )  # fmt: skip
        except DhcpNakError as exc:
            self._count("nak")
            log.error("DHCP lease of %s refused by the server, no longer renewed: %s", who, exc)
            self._drop(item)
            self._tell(
                item,
                False,
                "DHCPLeaseRefused",
                f"the DHCP server refused to renew {item.binding.address} (NAK); the address "
                "is still configured in the pod",
            )
            return
        except Exception as exc:  # DhcpError, a vanished netns...: retry later, never spin
            expired = now >= item.expires
            self._count("expired" if expired else "error")
            if expired:
                retry = self.expired_retry_s
                if not item.lost:
                    item = replace(item, lost=True)
                    self._tell(
                        item,
                        False,
                        "DHCPLeaseExpired",
                        f"the DHCP lease of {item.binding.address} expired without renewal "
                        f"({exc}); the address is still configured in the pod",
                    )
                log.error(
                    "DHCP lease of %s has expired and cannot be renewed (%s); the address "
                    "stays configured in the pod, retrying in %.0f s",
                    who,
                    exc,
                    retry,
                )
            else:
                next_timer = item.t2 if now < item.t2 else item.expires
                retry = max(self.min_retry_s, (next_timer - now) / 2)
                log.warning("DHCP renewal of %s failed (%s); retrying in %.0f s", who, exc, retry)
            self._reschedule(old, replace(item, due=now + retry))
            return
        self._count("ack")
        binding = replace(
            item.binding,
            server=lease.server or item.binding.server,
            lease_time=lease.lease_time or item.binding.lease_time,
            obtained_at=int(now),
        )
        if lease.address.split("/")[0] != item.binding.address.split("/")[0]:
            log.error(
                "DHCP server renewed %s with another address %s; the pod keeps %s",
                who,
                lease.address,
                item.binding.address,
            )
        assert binding.lease_time is not None
        self._reschedule(
            item, replace(item, binding=binding, due=now + binding.lease_time / 2, lost=False)
        )
        log.info("DHCP lease of %s renewed for %d s", who, binding.lease_time)
        if item.lost:
            self._tell(
                item,
                True,
                "DHCPLeaseRenewed",
                f"lease of {item.binding.address} renewed for {binding.lease_time} s",
            )

    def _reschedule(self, old: Tracked, new: Tracked) -> None:
        with self._lock:
            key = (old.pod_uid, old.device)
            if self._leases.get(key) == old:  # not forgotten or replaced meanwhile
                self._leases[key] = new

    def _drop(self, old: Tracked) -> None:
        with self._lock:
            key = (old.pod_uid, old.device)
            if self._leases.get(key) == old:
                del self._leases[key]

    # -- thread ---------------------------------------------------------------------------
    def start(self) -> None:
        """Renew in a daemon thread until stop()."""
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="dhcp-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                soonest = min((t.due for t in self._leases.values()), default=None)
                wait = 3600.0 if soonest is None else max(0.0, soonest - self._clock())
                if wait > 0:
                    self._wake.wait(timeout=min(wait, 3600.0))
                    continue
            try:
                self.run_due()
            except Exception:  # never let the keeper die
                log.exception("DHCP lease renewal failed unexpectedly")
