"""The restore guarantee: every device knd moved goes back to its captured host state, on every
path, and nothing here ever raises into a hook, a kubelet call or start-up.

Paths (docs/operations.md, "Bringing devices home"):
* StopPodSandbox (`return_pod`): detach every device of the pod (knd.netns.detach);
* NodeUnprepareResources (`release`): a device still away, or not yet restored, is detached
  now; its pending-restore record (knd.driver.restore_records) is removed only once it is home;
* the pod netns destroyed without StopPodSandbox (`poke`, from netlink link events): the kernel
  hands a physical NIC back to the host under its pod-side name or `devN`; the device is
  recognised by identity (permanent MAC / PCI address, else MAC and one of those names) and
  restored under its host name;
* a failed restore of any path is retried after the `backoff` policy's delay
  (`knd.driver.retry`: 1 s doubling to 60 s, forever: a NIC is never given up on) on the
  restorer's thread; the error is logged on the first failure and then on attempts 2, 4, 8, ...
  (not every minute);
* one terminal state: a device found nowhere (`gone`) that has no identity the kernel could
  hand back (no permanent MAC, no PCI address: a veth, macvlan or dummy, which the kernel
  destroys with its netns instead of returning it) is `lost`: counted once per path
  (`knd_driver_restores_total{result="lost"}`), logged and reported on its claim once (reason
  `NetworkDeviceLost`), never retried, and its pending-restore record is dropped once its claim
  is unprepared (nothing is left to restore). A physical NIC that is `gone` is retried: the
  kernel may still hand it back, or it may be plugged in again;
* daemon restart (`sweep`): devices of pods whose netns vanished while knd was down.
One lock serialises every move of this restorer with the NRI attach (`lock`), so a device is
never restored while an attach or detach of it runs.

Outcomes are counted (`knd_driver_restores_total{path,result}`), a device waiting for a retry
is in `knd_driver_restore_pending`, and a device that could not be brought home, or that the
kernel handed back while its pod ran, is reported on its claim (`report`).
Budget: one restore is a few netlink requests (~1-5 ms); a hand-back check is one link dump
(~1 ms for 256 links) and runs only while some device is away.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from knd.driver.metrics import DriverMetrics
from knd.driver.restore_records import RestoreRecords
from knd.driver.retry import RESTORE_BACKOFF, Backoff
from knd.driver.store import PlanRecord, StateStore
from knd.netns.detach import Detached, detach
from knd.netns.errors import NetnsError
from knd.netns.nsfd import held_netns_path, is_held_netns_path
from knd.netns.plan import AttachPlan
from knd.netns.rawlink import LinkFacts, LinkSocket
from knd.netns.restore import match_link

log = logging.getLogger(__name__)

DetachFn = Callable[[Sequence[AttachPlan], str | None], list[Detached]]
#: (plan record, reason, message): a device is not (or no longer) where its claim wants it.
ReportFn = Callable[[PlanRecord, str, str], None]
HANDED_BACK_REASON = "NetworkDeviceReturnedToHost"
RESTORE_FAILED_REASON = "NetworkDeviceRestoreFailed"
DEVICE_LOST_REASON = "NetworkDeviceLost"


@dataclass
class _Away:
    """A device that must be brought home (a failed restore, or a released claim's)."""

    record: PlanRecord
    plan: AttachPlan
    netns: str | None
    attempt: int = 0
    due: float = 0.0
    last_error: str = ""
    released: bool = False  # the claim is unprepared: drop the pending-restore record once home


def _host_links() -> list[LinkFacts]:
    lsock = LinkSocket()
    try:
        return lsock.links()
    finally:
        lsock.close()


def _in_host(plan: AttachPlan, links: list[LinkFacts]) -> bool:
    """Whether `plan`'s device is among the host's `links` (by identity)."""
    if plan.host is None:
        return False
    pod_name = plan.pod.name if plan.pod is not None else None
    pod_mac = plan.pod.mac if plan.pod is not None else None
    return match_link(links, plan.host, pod_name, pod_mac) is not None


def _vanishes_with_netns(plan: AttachPlan) -> bool:
    """A device the kernel deletes with its netns rather than handing it back: a virtual
    device (random MAC: no permanent MAC; no PCI parent). Such a device that is found nowhere
    will never be found again."""
    return plan.host is not None and not plan.host.perm_mac and not plan.host.pci_address


def _key(record: PlanRecord) -> tuple[str, str]:
    return (record.pool, record.device)


def parse_plan(record: PlanRecord) -> AttachPlan:
    """The stored plan (raises NetnsError if it is unusable)."""
    return AttachPlan.from_json(json.dumps(record.plan))


class Restorer:
    """See the module docstring. Thread-safe; its thread starts on `start()` or with the first
    retry."""

    def __init__(
        self,
        store: StateStore,
        records: RestoreRecords | None = None,
        *,
        detach_fn: DetachFn = detach,
        metrics: DriverMetrics | None = None,
        report: ReportFn | None = None,
        backoff: Backoff = RESTORE_BACKOFF,
        netns_exists: Callable[[str], bool] = os.path.exists,
        host_links: Callable[[], list[LinkFacts]] = _host_links,
        held_netns: Callable[[str], int | None] | None = None,
    ) -> None:
        self.host_links = host_links
        #: pod UID → an fd knd itself holds on the pod's netns (ownership passes to the
        #: restorer), used when the netns's mount is gone but the fd keeps it, and its NICs,
        #: alive (knd.driver.nic_telemetry.NicTelemetry.take_netns).
        self.held_netns = held_netns
        self.store = store
        self.records = records
        self.detach_fn = detach_fn
        self.metrics = metrics
        self.report = report
        self.backoff = backoff
        self.netns_exists = netns_exists
        #: Serialises every move: held by the NRI attach too.
        self.lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())
        self._away: dict[tuple[str, str], _Away] = {}
        #: (pod UID, device) brought home since the pod's last attach.
        self._home: set[tuple[str, str]] = set()
        #: (pool, device) found lost (a virtual device destroyed with its netns), reported once.
        self._lost: set[tuple[str, str]] = set()
        self._poked = False
        self._plan_cache: dict[tuple[str, str], tuple[str, AttachPlan]] = {}
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="knd-restore", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        with self._cond:
            self._thread = None

    def poke(self) -> None:
        """A netlink link event: look for devices the kernel handed back. Never blocks."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def is_pending(self, pool: str, device: str) -> bool:
        """The device waits for a restore retry."""
        with self._cond:
            return (pool, device) in self._away

    def is_lost(self, pool: str, device: str) -> bool:
        """The device reached the terminal `lost` state (see the module docstring)."""
        with self._cond:
            return (pool, device) in self._lost

    def pending(self) -> list[str]:
        """`pool/device: last error` of every device waiting for a retry."""
        with self._cond:
            return [f"{k[0]}/{k[1]}: {a.last_error}" for k, a in sorted(self._away.items())]

    # -- paths ------------------------------------------------------------------------------
    def note_attached(self, pod_uid: str, records: Sequence[PlanRecord]) -> None:
        """An attach of these devices into the pod succeeded (call under `lock`)."""
        with self._cond:
            for r in records:
                self._home.discard((pod_uid, r.device))
                self._away.pop(_key(r), None)
                self._lost.discard(_key(r))
        self._set_gauge()

    def return_pod(
        self, pod_uid: str, pairs: Sequence[tuple[PlanRecord, AttachPlan]], netns: str | None
    ) -> list[Detached]:
        """StopPodSandbox: bring every device of the pod home; failures are retried."""
        return self._bring_home(pairs, netns, "stop")

    def release(self, records: Sequence[PlanRecord]) -> list[str]:
        """NodeUnprepareResources: every device of the claim must be home before its
        pending-restore record goes. Returns one line per device still away (it is retried)."""
        pairs: list[tuple[PlanRecord, AttachPlan]] = []
        problems: list[str] = []
        for record in records:
            try:
                pairs.append((record, parse_plan(record)))
            except NetnsError as exc:
                problems.append(f"{record.pool}/{record.device}: unusable plan: {exc}")
        by_pod: dict[str, list[tuple[PlanRecord, AttachPlan]]] = {}
        for record, plan in pairs:
            by_pod.setdefault(record.pod_uid, []).append((record, plan))
        for pod_uid, group in by_pod.items():
            pod = self.store.pod(pod_uid)
            netns = pod.netns if pod is not None else None
            held = None
            if (netns is None or not self.netns_exists(netns)) and self.held_netns is not None:
                held = self.held_netns(pod_uid)
                if held is not None:
                    netns = held_netns_path(held)
                    log.info("unprepare: pod %s's netns is reached through a held fd", pod_uid)
            try:
                problems += self._release_pod(pod_uid, group, netns)
            finally:
                if held is not None:
                    os.close(held)
        return problems

    def _release_pod(
        self, pod_uid: str, group: list[tuple[PlanRecord, AttachPlan]], netns: str | None
    ) -> list[str]:
        """One pod's devices of a released claim (see `release`)."""
        problems: list[str] = []
        with self._cond:
            maybe_away = [
                (r, p)
                for r, p in group
                if _key(r) in self._away
                or (netns is not None and (pod_uid, r.device) not in self._home)
            ]
        home = [(r, p) for r, p in group if (r, p) not in maybe_away]
        for record, _ in home:
            self._drop_record(record)
        if maybe_away:
            for result in self._bring_home(maybe_away, netns, "unprepare", released=True):
                with self._cond:
                    lost = (group[0][0].pool, result.device) in self._lost
                if not result.home and not lost:
                    self._mark_released(group[0][0].pool, result.device)
                    problems.append(
                        f"{result.device}: not home yet ({result.outcome}: "
                        f"{'; '.join(result.errors) or 'not found'}); knd keeps retrying"
                    )
        return problems

    def release_orphans(self, pairs: Sequence[tuple[PlanRecord, AttachPlan]]) -> list[Detached]:
        """Devices whose claim is gone (found only in pending-restore records): bring them
        home by identity; their records go once they are home."""
        return self._bring_home(pairs, None, "rebuild", released=True)

    def restore_vanished(
        self, pod_uid: str, pairs: Sequence[tuple[PlanRecord, AttachPlan]]
    ) -> list[Detached]:
        """Start-up: the pod's netns vanished while knd was down; restore its devices."""
        return self._bring_home(pairs, None, "startup")

    # -- the work ---------------------------------------------------------------------------
    def _bring_home(
        self,
        pairs: Sequence[tuple[PlanRecord, AttachPlan]],
        netns: str | None,
        path: str,
        *,
        released: bool = False,
    ) -> list[Detached]:
        with self.lock:
            try:
                results = self.detach_fn([p for _, p in pairs], netns)
            except Exception as exc:  # detach never raises; a replacement might
                log.exception("%s: detach raised", path)
                results = [Detached(p.device, "failed", (f"detach: {exc}",)) for _, p in pairs]
            by_device = {r.device: r for r in results}
            out = []
            for record, plan in pairs:
                result = by_device.get(
                    record.device, Detached(record.device, "failed", ("no detach result",))
                )
                out.append(result)
                self._settle(record, plan, netns, result, path, released=released)
        self._set_gauge()
        return out

    def _settle(
        self,
        record: PlanRecord,
        plan: AttachPlan,
        netns: str | None,
        result: Detached,
        path: str,
        *,
        released: bool,
        attempt: int = 0,
    ) -> None:
        """Record one device's outcome: home, lost (terminal), or scheduled for a retry."""
        if result.outcome == "gone" and not result.errors and _vanishes_with_netns(plan):
            self._settle_lost(record, path, released=released)
            return
        self._count(path, "home" if result.home else result.outcome)
        if result.home:
            with self._cond:
                self._home.add((record.pod_uid, record.device))
                away = self._away.pop(_key(record), None)
            if released or (away is not None and away.released):
                self._drop_record(record)
            if attempt:
                log.info("%s/%s is home after %d retries", record.pool, record.device, attempt)
            return
        error = "; ".join(result.errors) or f"{result.outcome}: not found in the host"
        delay = self.backoff.delay(attempt + 1)
        with self._cond:
            previous = self._away.get(_key(record))
            self._away[_key(record)] = _Away(
                record,
                plan,
                netns
                if netns is not None
                and not is_held_netns_path(netns)  # its fd is closed after this call
                and self.netns_exists(netns)
                else None,
                attempt=attempt + 1,
                due=time.monotonic() + delay,
                last_error=error,
                released=released or (previous is not None and previous.released),
            )
            self._cond.notify_all()
        noisy = attempt & (attempt - 1) == 0  # the first failure, then attempts 1, 2, 4, 8, ...
        log.log(
            logging.ERROR if noisy else logging.DEBUG,
            "%s: device %s/%s is not home (%s); retry %d in %.1f s",
            path,
            record.pool,
            record.device,
            error,
            attempt + 1,
            delay,
            extra={"device": record.device},
        )
        if attempt == 0:
            self._report(
                record,
                RESTORE_FAILED_REASON,
                f"device {record.device} could not be restored to the host yet ({error}); "
                "knd retries with backoff",
            )
        self.start()

    def _settle_lost(self, record: PlanRecord, path: str, *, released: bool) -> None:
        """The terminal state (see the module docstring): no retry, one report."""
        self._count(path, "lost")
        with self._cond:
            away = self._away.pop(_key(record), None)
            first = _key(record) not in self._lost
            self._lost.add(_key(record))
        if released or (away is not None and away.released):
            self._drop_record(record)
        if not first:
            log.info("%s: device %s/%s is still lost", path, record.pool, record.device)
            return
        message = (
            f"device {record.device} no longer exists: a virtual device (no permanent MAC, no "
            "PCI address) is destroyed by the kernel with its pod's network namespace and "
            "cannot come back; nothing to restore, knd does not retry"
        )
        log.error("%s: %s", path, message, extra={"device": record.device})
        self._report(record, DEVICE_LOST_REASON, message)

    def _mark_released(self, pool: str, device: str) -> None:
        """The claim is unprepared but the device is not home: its record must never bring
        the claim back into the store (knd.driver.reconcile.rebuild_from_records)."""
        if self.records is None:
            return
        try:
            record = self.records.get(pool, device)
            if record is not None and not record.released:
                self.records.write(dataclasses.replace(record, released=True))
        except (OSError, ValueError):
            log.exception("cannot mark the restore record of %s released", device)

    def _drop_record(self, record: PlanRecord) -> None:
        if self.records is None:
            return
        try:
            self.records.remove(record.pool, record.device)
        except OSError:
            log.exception("cannot remove the restore record of %s", record.device)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._poked and not self._due_now():
                    self._cond.wait(self._wait_s())
                if self._stop:
                    return
                poked, self._poked = self._poked, False
                due = [a for a in self._away.values() if a.due <= time.monotonic()]
            try:
                if poked:
                    self.check_handback()
                for away in due:
                    self._retry(away)
            except Exception:  # the loop must survive anything
                log.exception("restorer loop")

    def _due_now(self) -> bool:
        now = time.monotonic()
        return any(a.due <= now for a in self._away.values())

    def _wait_s(self) -> float | None:
        if not self._away:
            return None
        return max(0.0, min(a.due for a in self._away.values()) - time.monotonic())

    def _retry(self, away: _Away) -> None:
        with self.lock:
            with self._cond:
                if self._away.get(_key(away.record)) is not away:
                    return  # settled meanwhile (attached again, or home)
            netns = away.netns if away.netns is not None and self.netns_exists(away.netns) else None
            try:
                results = self.detach_fn([away.plan], netns)
            except Exception as exc:
                results = [Detached(away.plan.device, "failed", (f"detach: {exc}",))]
            result = results[0] if results else Detached(away.plan.device, "failed", ())
            self._settle(
                away.record,
                away.plan,
                netns,
                result,
                "retry",
                released=away.released,
                attempt=away.attempt,
            )
        self._set_gauge()

    def check_handback(self) -> list[str]:
        """Devices of attached pods (or waiting for a retry) that are in the host now: the
        kernel handed them back from a destroyed netns. Restore each; returns their names.

        The search (store reads, one link dump) runs without `lock`, so NRI attaches never
        wait for it; only a device found in the host is re-checked and restored under it."""
        try:
            candidates = [(r, p) for r, p in self._candidates() if p.host is not None]
            if not candidates:
                return []
            links = self.host_links()
        except OSError as exc:
            log.warning("hand-back check: cannot list the host's links: %s", exc)
            return []
        suspects = [(r, p) for r, p in candidates if _in_host(p, links)]
        if not suspects:
            return []
        found: list[str] = []
        with self.lock:
            try:
                links = self.host_links()  # again, under the lock: an attach may have run
                fresh = {(_key(r), r.pod_uid) for r, _ in self._candidates()}
            except OSError as exc:
                log.warning("hand-back check: cannot list the host's links: %s", exc)
                return []
            for record, plan in suspects:
                if (_key(record), record.pod_uid) not in fresh:
                    continue  # attached again or home meanwhile
                result = self._restore_if_in_host(plan, links)
                if result is None:
                    continue
                found.append(record.device)
                log.warning(
                    "device %s/%s is back in the host although its pod %s had it: its network "
                    "namespace was destroyed without StopPodSandbox; restoring its host state",
                    record.pool,
                    record.device,
                    record.pod_uid,
                    extra={"device": record.device},
                )
                with self._cond:
                    released = (a := self._away.get(_key(record))) is not None and a.released
                self._settle(record, plan, None, result, "handback", released=released)
                if result.home:
                    self._report(
                        record,
                        HANDED_BACK_REASON,
                        f"device {record.device} is back in the host: the pod's network "
                        "namespace was destroyed without StopPodSandbox; knd restored its host "
                        "state",
                    )
        self._set_gauge()
        return found

    def _restore_if_in_host(self, plan: AttachPlan, links: list[LinkFacts]) -> Detached | None:
        """Restore `plan`'s device if it is in the host (a host-only detach), else None."""
        if not _in_host(plan, links):
            return None
        try:
            result = self.detach_fn([plan], None)[0]
        except Exception as exc:
            return Detached(plan.device, "failed", (f"detach: {exc}",))
        return None if result.outcome == "gone" else result

    def _candidates(self) -> list[tuple[PlanRecord, AttachPlan]]:
        out: list[tuple[PlanRecord, AttachPlan]] = []
        seen: set[tuple[str, str]] = set()
        with self._cond:
            for away in self._away.values():
                out.append((away.record, away.plan))
                seen.add(_key(away.record))
            home = set(self._home)
        for pod_uid in self.store.attached_pods():
            for record in self.store.plans_for_pod(pod_uid):
                if _key(record) in seen or (pod_uid, record.device) in home:
                    continue
                plan = self._parsed(record)
                if plan is not None:
                    out.append((record, plan))
        return out

    def _parsed(self, record: PlanRecord) -> AttachPlan | None:
        """The record's plan, decoded once per plan content (the hand-back check runs on every
        link event burst)."""
        text = json.dumps(record.plan, sort_keys=True)
        cached = self._plan_cache.get(_key(record))
        if cached is not None and cached[0] == text:
            return cached[1]
        try:
            plan = AttachPlan.from_json(text)
        except NetnsError:
            log.exception("hand-back check: unusable plan for %s", record.device)
            return None
        if len(self._plan_cache) > 4096:
            self._plan_cache.clear()
        self._plan_cache[_key(record)] = (text, plan)
        return plan

    # -- reporting --------------------------------------------------------------------------
    def _report(self, record: PlanRecord, reason: str, message: str) -> None:
        if self.report is None:
            return
        try:
            self.report(record, reason, message)
        except Exception:
            log.exception("reporting %s on the claim of %s failed", reason, record.device)

    def _count(self, path: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.restores.labels(path, result).inc()

    def _set_gauge(self) -> None:
        if self.metrics is not None:
            with self._cond:
                self.metrics.restore_pending.set(len(self._away))


__all__ = [
    "DEVICE_LOST_REASON",
    "HANDED_BACK_REASON",
    "RESTORE_FAILED_REASON",
    "Restorer",
    "parse_plan",
]
