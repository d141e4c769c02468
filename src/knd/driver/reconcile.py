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

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from knd.driver.metrics import DriverMetrics
from knd.driver.restorer import ReportFn, Restorer, parse_plan
from knd.driver.store import PlanRecord, StateStore
from knd.netns.errors import NetnsError
from knd.netns.plan import AttachPlan

log = logging.getLogger(__name__)

RECONCILE_FAILED_REASON = "NetworkDeviceReconcileFailed"


@dataclass
class ReconcileReport:
    """What start-up reconciliation found and did."""

    pods: int = 0
    restored: list[str] = field(default_factory=list)
    #: one line per pod or device that could not be reconciled (start-up went on)
    errors: list[str] = field(default_factory=list)


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
            pairs: list[tuple[PlanRecord, AttachPlan]] = []
            for record in records:
                try:
                    pairs.append((record, parse_plan(record)))
                except NetnsError as exc:
                    error(f"pod {pod_uid}: device {record.device}: unusable plan: {exc}", [record])
            for result in restorer.restore_vanished(pod_uid, pairs):
                out.restored.append(f"{result.device}: {result.outcome}")
                if not result.home:
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
