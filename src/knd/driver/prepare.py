"""NodePrepareResources / NodeUnprepareResources: claims in, persisted AttachPlans out.

Runs in kubelet's pod sync before the sandbox exists; kubelet allows 45 s per call. This is
where slow and fallible work belongs (API reads, config resolution, host capture), so that the
NRI hooks (2 s) only execute a stored plan.

Prepare, per claim (claims of one call are handled one after another, each under its own lock,
so concurrent calls for the same claim serialize and different claims do not block each other):

1. Already prepared (same UID in the store)? Return the stored answer: no API call, no side
   effect (idempotent; kubelet repeats calls after restarts).
2. GET the claim; check UID ("claim was replaced"), `status.allocation`, and `reservedFor`
   naming exactly one core `pods` consumer.
3. Take the allocation results whose `driver` is ours (a GPU driver's results are ignored).
4. Refuse a device that the store holds for another claim that still exists in the API server
   (an entry whose claim is gone or was replaced is stale and is released). Sub-interface
   claims share a device; with `max_shares` set (`--device-shares`, the share count published
   as consumable capacity) at most that many claims hold children of one device: the next one
   is refused, checked again under one lock right before the store write so two concurrent
   prepares cannot both take the last share.
5. Resolve config per request (class + claim configs, merged, validated), apply a profile,
   build the plan (injected `PlanBuilder`).
6. Persist claim, pod, devices and plans in one transaction, then answer.

Any failure gives the claim an error naming the field or device and a Warning Event
`ClaimPrepareFailed` on the claim; nothing is stored for it (profiles already resolved are
released). Before the store, each device's pending-restore record is written
(knd.driver.restore_records), so a device is never moved without one.

Unprepare works from the store only (an unknown claim is success): a device still away from
the host, or not restored yet, is brought home first (knd.driver.restorer); one that cannot be
is retried in the background and keeps its record, and the unprepare still succeeds (the
kubelet must be able to finish the pod).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from knd.api.claims import Allocation, Consumer, DeviceResult
from knd.api.config import NetworkConfig
from knd.api.merge import merge_configs
from knd.driver import config_select
from knd.driver.claim_api import Claim, ClaimReader, EventRecorder
from knd.driver.errors import ClaimError, ClaimNotFoundError
from knd.driver.plan import ConfigOnlyPlanBuilder, PlanBuilder, ProfileProvider
from knd.driver.restore_records import RestoreRecord, RestoreRecords
from knd.driver.restorer import Restorer
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore, StoreError
from knd.kubelet.types import ClaimRef, PreparedDevice, PrepareResult

log = logging.getLogger(__name__)

PREPARE_FAILED_REASON = "ClaimPrepareFailed"


class _KeyedLocks:
    """One lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


def _result_to_json(result: PrepareResult) -> dict[str, Any]:
    return {
        "devices": [
            {
                "pool": d.pool,
                "device": d.device,
                "requestNames": list(d.request_names),
                "cdiDeviceIDs": list(d.cdi_device_ids),
                **({"shareID": d.share_id} if d.share_id is not None else {}),
            }
            for d in result.devices
        ]
    }


def _result_from_json(data: Mapping[str, Any]) -> PrepareResult:
    return PrepareResult(
        devices=tuple(
            PreparedDevice(
                pool=d["pool"],
                device=d["device"],
                request_names=tuple(d.get("requestNames", ())),
                cdi_device_ids=tuple(d.get("cdiDeviceIDs", ())),
                share_id=d.get("shareID"),
            )
            for d in data.get("devices", [])
        )
    )


class PrepareEngine:
    """Implements knd.kubelet.types.ClaimPreparer over a store, an API reader and a builder."""

    def __init__(
        self,
        *,
        driver: str,
        store: StateStore,
        reader: ClaimReader,
        events: EventRecorder,
        plan_builder: PlanBuilder | None = None,
        profiles: ProfileProvider | None = None,
        pool: str | None = None,
        on_released: Callable[[PlanRecord], None] | None = None,
        records: RestoreRecords | None = None,
        restorer: Restorer | None = None,
        device_configs: Callable[[str], NetworkConfig | None] | None = None,
        on_device_error: Callable[[Claim, str, str, str], None] | None = None,
        on_ipam_release: Callable[[str, str], None] | None = None,
        max_shares: int = 0,
    ) -> None:
        self.records = records
        self.restorer = restorer
        self.driver = driver
        #: called with each plan of an unprepared claim, after it left the store (the daemon
        #: sends the DHCPRELEASE of its lease from the host); must not raise
        self.on_released = on_released
        self.pool = pool  # this node's pool (the node name); None accepts any pool
        self.store = store
        self.reader = reader
        self.events = events
        self.plan_builder: PlanBuilder = plan_builder or ConfigOnlyPlanBuilder()
        self.profiles = profiles
        # Cloud provider config per device (Azure routing, a webhook's baseline): the lowest
        # precedence source. Answers from memory (knd.inventory.cloud.state).
        self.device_configs = device_configs
        # (claim, pool, device, message) for a device that failed: the daemon reports it in
        # the claim's status.devices[] (Ready=False).
        self.on_device_error = on_device_error
        # (claim UID, device) after a claim's state is deleted: frees node-local IPAM addresses
        # of sub-interfaces. Must not raise.
        self.on_ipam_release = on_ipam_release
        self._locks = _KeyedLocks()
        # Sub-interface claims per device (0: no limit, the device is not published shareable).
        self.max_shares = max_shares
        self._share_lock = threading.Lock()

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        results: dict[str, PrepareResult] = {}
        # one host snapshot for every device of the call, when the builder offers it
        batch = getattr(self.plan_builder, "batch", None)
        with batch() if batch is not None else nullcontext():
            for ref in claims:
                with self._locks.hold(ref.uid):
                    results[ref.uid] = self._prepare_one(ref)
        return results

    def _prepare_one(self, ref: ClaimRef) -> PrepareResult:
        stored = self.store.claim(ref.uid)
        if stored is not None:
            return _result_from_json(stored.result)
        claim: Claim | None = None
        try:
            prefetch = getattr(self.plan_builder, "prefetch", None)
            if prefetch is not None:
                prefetch()  # the host snapshot overlaps the GET (NetnsPlanBuilder.prefetch)
            claim = self.reader.get(ref.namespace, ref.name)
            return self._prepare_fetched(ref, claim)
        except Exception as exc:  # ClaimError, or a bug: fail this claim only
            message = self.failure_message(ref, exc)
            if isinstance(exc, ClaimError):
                log.warning("prepare failed: %s", message)
            else:
                log.exception("prepare failed: %s", message)
        if claim is not None:
            self.events.warning(claim, PREPARE_FAILED_REASON, message)
        return PrepareResult(error=message)

    def failure_message(self, ref: ClaimRef, exc: Exception) -> str:
        """The error prepare returns to the kubelet (and records as an Event) for `exc`."""
        if isinstance(exc, ClaimError):
            return f"{self.driver}: claim {ref.key()}: {exc}"
        return f"{self.driver}: claim {ref.key()}: internal error: {exc!r}"

    def dry_run(self, claim: Claim) -> list[PlanRecord]:
        """Everything prepare does for `claim` short of persisting it: the same checks, config
        resolution and plan builder, the same `ClaimError`s. Stores nothing; resolved profiles
        are released before returning; devices held by other claims in the store are not
        checked. The caller decides what the builder may touch (`knd plan` passes a builder
        that runs no DHCP)."""
        meta = claim.get("metadata") or {}
        ref = ClaimRef(
            str(meta.get("namespace", "")), str(meta.get("uid", "")), str(meta.get("name", ""))
        )
        resolved: list[tuple[str, str]] = []
        try:
            _, _, plans, _ = self._build(ref, claim, resolved, check_owner=False)
        finally:
            self._release_profiles(ref.uid, resolved)
            self._release_local(ref.uid, self._allocated(claim))
        return plans

    def _check(self, ref: ClaimRef, claim: Claim) -> tuple[Allocation, Consumer]:
        meta = claim.get("metadata") or {}
        uid = meta.get("uid", "")
        if uid != ref.uid:
            raise ClaimError(
                f"claim was replaced: kubelet asked for UID {ref.uid}, the API server has "
                f"UID {uid or '(none)'}; kubelet will retry with the new claim"
            )
        status = claim.get("status") or {}
        allocation = status.get("allocation")
        if not allocation:
            raise ClaimError("claim is not allocated (status.allocation is empty)")
        reserved = status.get("reservedFor") or []
        if len(reserved) != 1:
            raise ClaimError(
                f"status.reservedFor has {len(reserved)} consumers; {self.driver} prepares a "
                "claim for exactly one pod (use a ResourceClaimTemplate for one claim per pod)"
            )
        consumer = reserved[0]
        if consumer.get("apiGroup", "") != "" or consumer.get("resource") != "pods":
            raise ClaimError(
                f"status.reservedFor[0] is {consumer.get('apiGroup', '')}/"
                f"{consumer.get('resource')}; only core pods can consume {self.driver} devices"
            )
        return allocation, consumer

    def _check_owner(self, ref: ClaimRef, pool: str, device: str, shared: bool = False) -> None:
        """Refuse a device another live claim holds. Sub-interface claims (`shared`) share a
        device with each other, never with a claim that moves it: the parent of children is
        never moved, and a moved device cannot get children. Stale holders (their claim is gone
        or was replaced) are released."""
        owner = self.store.device_owner(pool, device)  # the claim that moves it, if any
        if owner is not None and owner.uid != ref.uid and self._live(owner):
            if shared:
                raise ClaimError(
                    f"device {pool}/{device} is moved into pod {owner.pod_uid} by claim "
                    f"{owner.namespace}/{owner.name} (UID {owner.uid}); a subInterface needs "
                    "its parent in the host"
                )
            raise ClaimError(
                f"device {pool}/{device} is already prepared for claim "
                f"{owner.namespace}/{owner.name} (UID {owner.uid}) of pod {owner.pod_uid}; "
                "a network device serves one claim at a time"
            )
        if shared:
            if self.max_shares > 0:
                live = [
                    s
                    for s in self.store.device_sharers(pool, device)
                    if s.uid != ref.uid and self._live(s)
                ]
                self._refuse_over_shares(pool, device, live)
            return
        for sharer in self.store.device_sharers(pool, device):
            if sharer.uid != ref.uid and self._live(sharer):
                raise ClaimError(
                    f"device {pool}/{device} has sub-interfaces (claim {sharer.namespace}/"
                    f"{sharer.name}, UID {sharer.uid}); it cannot be moved into a pod while it "
                    "has children: ask for a subInterface too, or wait until they are gone"
                )

    def _refuse_over_shares(self, pool: str, device: str, holders: Sequence[ClaimRecord]) -> None:
        if len(holders) < self.max_shares:
            return
        names = ", ".join(f"{h.namespace}/{h.name}" for h in holders[:4])
        raise ClaimError(
            f"device {pool}/{device} already has sub-interfaces for {len(holders)} claims "
            f"({names}), its share count (--device-shares {self.max_shares}); the scheduler "
            "should not have allocated it again: kubelet will retry once one is gone"
        )

    def _check_shares_before_save(self, ref: ClaimRef, plans: Sequence[PlanRecord]) -> None:
        """The share count again, from the store only (the caller holds `_share_lock`)."""
        if self.max_shares <= 0:
            return
        for p in plans:
            if p.plan.get("sub") is None:
                continue
            others = [s for s in self.store.device_sharers(p.pool, p.device) if s.uid != ref.uid]
            self._refuse_over_shares(p.pool, p.device, others)

    def _live(self, holder: ClaimRecord) -> bool:
        """True when `holder` still exists in the API server; else its state is released."""
        try:
            other = self.reader.get(holder.namespace, holder.name)
            if (other.get("metadata") or {}).get("uid") == holder.uid:
                return True
        except ClaimNotFoundError:
            pass
        log.warning(
            "releasing stale state of claim %s/%s (UID %s): it no longer exists",
            holder.namespace,
            holder.name,
            holder.uid,
        )
        self._release(holder.uid)
        return False

    def _our_results(self, allocation: Allocation) -> list[DeviceResult]:
        return [
            r
            for r in ((allocation.get("devices") or {}).get("results") or [])
            if r.get("driver") == self.driver
        ]

    def _build(
        self,
        ref: ClaimRef,
        claim: Claim,
        resolved_profiles: list[tuple[str, str]],
        check_owner: bool = True,
    ) -> tuple[Consumer, str, list[PlanRecord], list[PreparedDevice]]:
        """Check the claim and build one plan per device of ours (no store writes). Profiles
        resolved on the way are appended to `resolved_profiles` (the caller releases them).
        `check_owner=False` skips the check against other claims in the store, which may
        release stale store entries (a dry run changes nothing)."""
        allocation, consumer = self._check(ref, claim)
        pod_uid = str(consumer.get("uid", ""))
        plans: list[PlanRecord] = []
        devices: list[PreparedDevice] = []
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(self._our_results(allocation)):
            pool, device, request = str(r.get("pool")), str(r.get("device")), r.get("request")
            label = f"{pool}/{device} (status.allocation.devices.results[{i}])"
            if not request:
                raise ClaimError(f"allocation result for device {label} has no request")
            if (pool, device) in seen:  # two shares of one shareable device in one claim
                raise ClaimError(
                    f"device {label} is allocated to this claim twice; {self.driver} gives a "
                    "claim one interface per device: ask for it once"
                )
            seen.add((pool, device))
            if self.pool is not None and pool != self.pool:
                raise ClaimError(
                    f"device {label} belongs to pool {pool!r}, not to this node's pool "
                    f"{self.pool!r}; {self.driver} prepares only devices of its own node"
                )
            cloud = self.device_configs(device) if self.device_configs else None
            config = config_select.resolve_config(allocation, self.driver, request, label, cloud)
            if check_owner:
                self._check_owner(ref, pool, device, shared=config.sub_interface is not None)
            if config.profile:
                try:
                    provider = self._resolve_profile(ref.uid, device, config.profile, label, config)
                except ClaimError as exc:
                    if self.on_device_error is not None and check_owner:
                        self.on_device_error(claim, pool, device, str(exc))
                    raise
                resolved_profiles.append((device, config.profile))
                if cloud is not None:  # cloud over profile, users over both (DraNet)
                    provider = merge_configs(provider, cloud)
                config = config_select.resolve_config(
                    allocation, self.driver, request, label, provider
                )
            plan = self.plan_builder.build(device, pod_uid, claim, request, config)
            plans.append(
                PlanRecord(
                    claim_uid=ref.uid,
                    pool=pool,
                    device=device,
                    request=request,
                    pod_uid=pod_uid,
                    plan=dict(plan),
                    profile=config.profile,
                )
            )
            devices.append(
                PreparedDevice(
                    pool=pool,
                    device=device,
                    request_names=(config_select.base_request(request),),
                    share_id=r.get("shareID"),
                )
            )
        return consumer, pod_uid, plans, devices

    def _prepare_fetched(self, ref: ClaimRef, claim: Claim) -> PrepareResult:
        resolved_profiles: list[tuple[str, str]] = []
        try:
            consumer, pod_uid, plans, devices = self._build(ref, claim, resolved_profiles)
            result = PrepareResult(devices=tuple(devices))
            claim_record = ClaimRecord(
                ref.uid, ref.namespace, ref.name, pod_uid, time.time(), _result_to_json(result)
            )
            written = self._write_records(claim_record, plans)
            try:
                with self._share_lock:
                    self._check_shares_before_save(ref, plans)
                    self.store.save_prepared(
                        claim_record,
                        PodRecord(pod_uid, ref.namespace, str(consumer.get("name", ""))),
                        plans,
                    )
            except BaseException:
                for done in written:
                    self._forget_record(done)
                raise
        except StoreError as exc:
            self._release_profiles(ref.uid, resolved_profiles)
            self._release_local(ref.uid, self._allocated(claim))
            raise ClaimError(f"cannot persist the prepared state: {exc}") from exc
        except BaseException:
            self._release_profiles(ref.uid, resolved_profiles)
            self._release_local(ref.uid, self._allocated(claim))
            raise
        return result

    def _allocated(self, claim: Claim) -> list[DeviceResult]:
        """Our allocation results of `claim` (what a failed prepare may have allocated for)."""
        allocation = (claim.get("status") or {}).get("allocation") or {}
        return self._our_results(allocation) if isinstance(allocation, Mapping) else []

    def _write_records(self, claim: ClaimRecord, plans: Sequence[PlanRecord]) -> list[PlanRecord]:
        """The pending-restore record of every device, before anything can move it."""
        if self.records is None:
            return []
        written: list[PlanRecord] = []
        for p in plans:
            if self.restorer is not None and self.restorer.is_pending(p.pool, p.device):
                raise ClaimError(
                    f"device {p.pool}/{p.device} is still being restored to the host after its "
                    "previous claim; kubelet will retry"
                )
            if p.plan.get("sub") is not None:
                continue  # a sub-interface's parent never leaves the host: nothing to restore
            existing = self.records.get(p.pool, p.device)
            if existing is not None and existing.claim_uid != claim.uid:
                log.warning(
                    "replacing the restore record of %s/%s (claim %s is gone)",
                    p.pool,
                    p.device,
                    existing.claim_uid,
                )
            try:
                self.records.write(
                    RestoreRecord(
                        claim_uid=claim.uid,
                        namespace=claim.namespace,
                        name=claim.name,
                        pod_uid=p.pod_uid,
                        pool=p.pool,
                        device=p.device,
                        request=p.request,
                        plan=p.plan,
                        profile=p.profile,
                        prepared_at=claim.prepared_at,
                        result=claim.result,
                    )
                )
            except OSError as exc:
                for done in written:
                    self._forget_record(done)
                raise ClaimError(
                    f"cannot write the restore record of device {p.pool}/{p.device}: {exc}"
                ) from exc
            written.append(p)
        return written

    def _forget_record(self, plan: PlanRecord) -> None:
        if self.records is None:
            return
        try:
            self.records.remove(plan.pool, plan.device)
        except OSError:
            log.exception("cannot remove the restore record of %s", plan.device)

    def _resolve_profile(
        self, claim_uid: str, device: str, profile: str, label: str, config: NetworkConfig
    ) -> NetworkConfig:
        """The profile's config: the lowest-precedence source (user configs override it)."""
        if self.profiles is None:
            raise ClaimError(
                f"config for device {label} names profile {profile!r} but no profile "
                "provider is configured on this node"
            )
        try:
            return self.profiles.resolve(claim_uid, device, profile, config)
        except ClaimError as exc:
            raise ClaimError(f"device {label}: {exc}") from exc

    def _release_local(self, claim_uid: str, results: Sequence[DeviceResult]) -> None:
        """A failed prepare: free what the plan builder allocated for the claim's devices."""
        if self.on_ipam_release is None or self.store.claim(claim_uid) is not None:
            return
        for r in results:
            self.on_ipam_release(claim_uid, str(r.get("device")))

    def _release_profiles(self, claim_uid: str, profiles: list[tuple[str, str]]) -> None:
        for device, profile in profiles:
            self._release_profile(claim_uid, device, profile)

    def _release_profile(self, claim_uid: str, device: str, profile: str) -> None:
        if self.profiles is None:
            return
        try:
            self.profiles.release(claim_uid, device, profile)
        except Exception:
            log.exception("releasing profile %s of %s/%s failed", profile, claim_uid, device)

    # -- unprepare ---------------------------------------------------------------------------
    def _release(self, claim_uid: str) -> None:
        """Bring the claim's devices home (if still away), then forget the claim."""
        plans = self.store.plans_for_claim(claim_uid)
        if self.restorer is not None:
            for problem in self.restorer.release(plans):
                log.error("unprepare of claim %s: %s", claim_uid, problem)
        else:
            for plan in plans:
                self._forget_record(plan)
        for plan in self.store.delete_claim(claim_uid):
            if plan.profile:
                self._release_profile(claim_uid, plan.device, plan.profile)
            if self.on_released is not None:
                try:
                    self.on_released(plan)
                except Exception:
                    log.exception("after unprepare of %s/%s", claim_uid, plan.device)
            if self.on_ipam_release is not None:
                self.on_ipam_release(claim_uid, plan.device)

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        errors: dict[str, str] = {}
        for ref in claims:
            with self._locks.hold(ref.uid):
                try:
                    self._release(ref.uid)
                    errors[ref.uid] = ""
                except StoreError as exc:
                    errors[ref.uid] = f"{self.driver}: claim {ref.key()}: {exc}"
        return errors
