"""Start-up reconciliation: what happened to the moved devices while knd was not running.

A pod whose netns vanished while knd was down had its devices handed back to the host by the
kernel (a physical NIC; a veth dies with its netns): they are restored to their captured host
state through the restorer (a device not found, or not restored, is retried with backoff and
watched for by the netlink hand-back check). The pod's recorded netns is cleared; nothing else
is deleted.

Never raises: an error for one pod (an unusable plan, a store or netlink error) is logged,
counted (`knd_driver_reconcile_errors_total`) and written to the claim's `Ready` condition
(reason `NetworkDeviceReconcileFailed`), and the daemon starts anyway.
Budget: one restore per device of a vanished pod (a few ms each).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from knd.driver.claim_api import ClaimReader
from knd.driver.errors import ClaimNotFoundError
from knd.driver.metrics import DriverMetrics
from knd.driver.restore_records import RecordError, RestoreRecord, RestoreRecords
from knd.driver.restorer import ReportFn, Restorer, parse_plan
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.netns.errors import NetnsError
from knd.netns.plan import AttachPlan, HostSide
from knd.netns.rawlink import LinkFacts
from knd.netns.restore import match_link

log = logging.getLogger(__name__)

RECONCILE_FAILED_REASON = "NetworkDeviceReconcileFailed"


#: Captures the host side of an interface by name (knd.netns.capture in the daemon).
CaptureFn = Callable[[str], HostSide]
REBOOT_LOST_REASON = "NetworkDeviceNotFoundAfterReboot"


@dataclass
class ReconcileReport:
    """What start-up reconciliation found and did."""

    pods: int = 0
    restored: list[str] = field(default_factory=list)
    #: one line per pod or device that could not be reconciled (start-up went on)
    errors: list[str] = field(default_factory=list)
    #: devices whose host state was captured again after a node reboot
    recaptured: list[str] = field(default_factory=list)
    #: claims (ns/name) put back into a lost store from their pending-restore records
    rebuilt: list[str] = field(default_factory=list)
    #: devices of claims gone from the API server, brought home from their records
    released: list[str] = field(default_factory=list)
    #: virtual devices destroyed with their pod's netns (nothing to restore; not retried)
    lost: list[str] = field(default_factory=list)


def rebuild_from_records(
    store: StateStore,
    records: RestoreRecords,
    reader: ClaimReader,
    restorer: Restorer,
    *,
    metrics: DriverMetrics | None = None,
    out: ReconcileReport | None = None,
) -> ReconcileReport:
    """The store lost prepared claims (deleted, emptied or truncated; or moved aside after
    corruption) while pending-restore records remain: rebuild what can be rebuilt.

    Per claim of the records that the store does not know: a claim the kubelet unprepared
    (`released` records) is never put back; a claim that still exists on the API server with
    the same UID is put back into the store (claim, pod, plans; the pod's netns
    is unknown, so the next Synchronize re-attaches in place); a claim that is gone has its
    devices brought home (host-only restore by identity; retried and watched for if not in
    the host yet). What cannot be rebuilt (API server unreachable, unreadable record) is logged
    as an error, counted and listed in `errors`; its records stay for the next start."""
    out = out if out is not None else ReconcileReport()

    def error(message: str) -> None:
        out.errors.append(message)
        log.error("rebuild: %s", message)
        if metrics is not None:
            metrics.reconcile_errors.inc()

    loaded, problems = records.load()
    for problem in problems:
        error(f"unreadable pending-restore record: {problem}")
    missing: dict[str, list[RestoreRecord]] = {}
    for record in loaded:
        if store.claim(record.claim_uid) is None:
            missing.setdefault(record.claim_uid, []).append(record)
    if not missing:
        return out
    log.error(
        "state store %s: %d prepared claim(s) have pending-restore records but no entry in the "
        "store (the store was %s); rebuilding them from the records and the API server",
        store.path,
        len(missing),
        "emptied, truncated or replaced" if store.created else "changed behind knd's back",
    )
    for claim_uid, recs in missing.items():
        first = recs[0]
        who = f"claim {first.namespace}/{first.name} (UID {claim_uid})"
        rows = [
            PlanRecord(r.claim_uid, r.pool, r.device, r.request, r.pod_uid, dict(r.plan), r.profile)
            for r in recs
        ]
        try:
            if any(r.released for r in recs):
                live = False  # unprepared by the kubelet: only its devices are left to bring home
            else:
                try:
                    claim = reader.get(first.namespace, first.name)
                    live = (claim.get("metadata") or {}).get("uid") == claim_uid
                except ClaimNotFoundError:
                    live = False
            if live:
                store.save_prepared(
                    ClaimRecord(
                        claim_uid,
                        first.namespace,
                        first.name,
                        first.pod_uid,
                        first.prepared_at,
                        dict(first.result),
                    ),
                    PodRecord(first.pod_uid, first.namespace, ""),
                    rows,
                )
                out.rebuilt.append(f"{first.namespace}/{first.name}")
                continue
            pairs = [(row, parse_plan(row)) for row in rows]
            for result in restorer.release_orphans(pairs):
                out.released.append(f"{result.device}: {result.outcome}")
        except Exception as exc:  # TransientError (API server), StoreError, a bad plan
            error(f"{who} cannot be rebuilt: {exc}; its pending-restore records are kept")
    if out.rebuilt:
        log.warning("rebuild: claims put back into the store: %s", ", ".join(out.rebuilt))
    if out.released:
        log.warning("rebuild: devices of deleted claims: %s", ", ".join(out.released))
    return out


def _rewrite_record(
    store: StateStore, records: RestoreRecords, row: PlanRecord, plan: dict[str, object]
) -> None:
    """The device's pending-restore record with its new plan. Records are not fsync'd
    (knd.driver.restore_records), so a power loss may have lost or torn one while the store,
    which is, kept the claim: it is written again from the store before any attach."""
    try:
        old = records.get(row.pool, row.device)
    except (OSError, RecordError) as exc:
        log.warning(
            "after a reboot: restore record of %s unreadable (%s); rewritten", row.device, exc
        )
        old = None
    if old is None:
        claim = store.claim(row.claim_uid)
        if claim is None:
            return
        old = RestoreRecord(
            claim_uid=claim.uid,
            namespace=claim.namespace,
            name=claim.name,
            pod_uid=row.pod_uid,
            pool=row.pool,
            device=row.device,
            request=row.request,
            plan=plan,
            profile=row.profile,
            prepared_at=claim.prepared_at,
            result=claim.result,
        )
    records.write(dataclasses.replace(old, plan=plan))


def recapture_after_reboot(
    store: StateStore,
    records: RestoreRecords | None,
    capture: CaptureFn,
    host_links: Callable[[], list[LinkFacts]],
    *,
    report: ReportFn | None = None,
    out: ReconcileReport | None = None,
) -> ReconcileReport:
    """The boot id changed: every stored plan's host state is from the previous boot (ifindex,
    maybe the name, addresses and routes). Find each device again by identity (permanent MAC,
    PCI address; else its name and MAC) and capture its host state anew; the pod side of the
    plan is kept, and its pending-restore record is written again (from the store when the
    power loss took it). A device that cannot be found is reported (log, claim `Ready=False`, reason
    `NetworkDeviceNotFoundAfterReboot`) and its old host state is never replayed: its plan's
    host side is only ever used to find it. Never raises."""
    out = out if out is not None else ReconcileReport()
    try:
        links = host_links()
        plans = store.all_plans()
    except Exception as exc:
        out.errors.append(f"after a reboot: cannot list links or plans: {exc}")
        log.error("reconcile: %s", out.errors[-1])
        return out
    for record in plans:
        try:
            plan = parse_plan(record)
            if plan.host is None:
                continue
            index = match_link(links, plan.host)
            name = next((link.name for link in links if link.index == index), None)
            if name is None:
                h = plan.host
                pci = f", PCI {h.pci_address}" if h.pci_address else ""
                message = (
                    f"device {record.device} ({h.name}, MAC {h.perm_mac or h.mac}{pci}) is not "
                    "on this node after the reboot; its old host state is not replayed"
                )
                out.errors.append(message)
                log.error("reconcile: %s", message)
                if report is not None:
                    report(record, REBOOT_LOST_REASON, message)
                continue
            fresh = capture(name)
            keep = {t.name for t in plan.host.features}
            keep_flags = {t.name for t in plan.host.private_flags}
            host = dataclasses.replace(
                fresh,
                features=tuple(t for t in fresh.features if t.name in keep),
                private_flags=tuple(t for t in fresh.private_flags if t.name in keep_flags),
            )
            new = dataclasses.replace(plan, host=host)
            encoded = json.loads(new.to_json())
            store.update_plan(record.claim_uid, record.pool, record.device, encoded)
            if records is not None and new.sub is None:
                _rewrite_record(store, records, record, encoded)
            out.recaptured.append(f"{record.device}: {name}")
        except Exception as exc:
            out.errors.append(f"device {record.device}: recapture after reboot failed: {exc}")
            log.exception("reconcile: recapture of %s", record.device)
    if out.recaptured:
        log.warning("node rebooted: host state captured again for %s", ", ".join(out.recaptured))
    return out


def _parsed(
    pod_uid: str, records: list[PlanRecord], error: Callable[[str, list[PlanRecord]], None]
) -> list[tuple[PlanRecord, AttachPlan]]:
    """The records whose plan decodes; each other one is reported through `error`."""
    pairs: list[tuple[PlanRecord, AttachPlan]] = []
    for record in records:
        try:
            pairs.append((record, parse_plan(record)))
        except NetnsError as exc:
            error(f"pod {pod_uid}: device {record.device}: unusable plan: {exc}", [record])
    return pairs


def reconcile(
    store: StateStore,
    restorer: Restorer,
    *,
    metrics: DriverMetrics | None = None,
    report: ReportFn | None = None,
    netns_exists: Callable[[str], bool] = os.path.exists,
) -> ReconcileReport:
    """See the module docstring."""
    out = ReconcileReport()

    def error(message: str, records: list[PlanRecord]) -> None:
        if metrics is not None:
            metrics.reconcile_errors.inc()
        out.errors.append(message)
        log.error("reconcile: %s", message)
        for r in records:
            if report is None:
                continue
            try:
                report(r, RECONCILE_FAILED_REASON, message)
            except Exception:
                log.exception("reconcile: cannot report on the claim of %s", r.device)

    try:
        pods = store.attached_pods()
    except Exception as exc:
        error(f"cannot list the attached pods: {exc}", [])
        return out
    for pod_uid in pods:
        out.pods += 1
        records: list[PlanRecord] = []
        try:
            pod = store.pod(pod_uid)
            if pod is None or not pod.netns or netns_exists(pod.netns):
                continue
            records = store.plans_for_pod(pod_uid)
            pairs = _parsed(pod_uid, records, error)
            for result in restorer.restore_vanished(pod_uid, pairs):
                out.restored.append(f"{result.device}: {result.outcome}")
                pool = records[0].pool if records else ""
                if not result.home and restorer.is_lost(pool, result.device):
                    out.lost.append(result.device)  # terminal, reported once by the restorer
                elif not result.home:
                    out.errors.append(
                        f"pod {pod_uid}: device {result.device} not home yet ({result.outcome}); "
                        "retried with backoff"
                    )
                    if metrics is not None:
                        metrics.reconcile_errors.inc()
            store.set_netns(pod_uid, None)
        except Exception as exc:
            log.exception("reconcile: pod %s", pod_uid)
            error(f"pod {pod_uid}: reconciliation failed: {exc}", records)
    if out.restored:
        log.info("reconcile: restored %s", ", ".join(out.restored))
    return out
