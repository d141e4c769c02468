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
   (an entry whose claim is gone or was replaced is stale and is released).
5. Resolve config per request (class + claim configs, merged, validated), apply a profile,
   build the plan (injected `PlanBuilder`).
6. Persist claim, pod, devices and plans in one transaction, then answer.

Any failure gives the claim an error naming the field or device and a Warning Event
`ClaimPrepareFailed` on the claim; nothing is stored for it (profiles already resolved are
released). Unprepare works from the store only: an unknown claim is success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from knd.api.config import NetworkConfig
from knd.driver import config_select
from knd.driver.claim_api import Claim, ClaimReader, EventRecorder
from knd.driver.errors import ClaimError, ClaimNotFoundError
from knd.driver.plan import ConfigOnlyPlanBuilder, PlanBuilder, ProfileProvider
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
    ) -> None:
        self.driver = driver
        self.pool = pool  # this node's pool (the node name); None accepts any pool
        self.store = store
        self.reader = reader
        self.events = events
        self.plan_builder: PlanBuilder = plan_builder or ConfigOnlyPlanBuilder()
        self.profiles = profiles
        self._locks = _KeyedLocks()

    # -- prepare -----------------------------------------------------------------------------
    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        results: dict[str, PrepareResult] = {}
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
        return plans

    def _check(self, ref: ClaimRef, claim: Claim) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
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

    def _check_owner(self, ref: ClaimRef, pool: str, device: str) -> None:
        owner = self.store.device_owner(pool, device)
        if owner is None or owner.uid == ref.uid:
            return
        try:
            other = self.reader.get(owner.namespace, owner.name)
            live = (other.get("metadata") or {}).get("uid") == owner.uid
        except ClaimNotFoundError:
            live = False
        if live:
            raise ClaimError(
                f"device {pool}/{device} is already prepared for claim "
                f"{owner.namespace}/{owner.name} (UID {owner.uid}) of pod {owner.pod_uid}; "
                "a network device serves one claim at a time"
            )
        log.warning(
            "releasing stale state of claim %s/%s (UID %s): it no longer exists",
            owner.namespace,
            owner.name,
            owner.uid,
        )
        self._release(owner.uid)

    def _build(
        self,
        ref: ClaimRef,
        claim: Claim,
        resolved_profiles: list[tuple[str, str]],
        check_owner: bool = True,
    ) -> tuple[Mapping[str, Any], str, list[PlanRecord], list[PreparedDevice]]:
        """Check the claim and build one plan per device of ours (no store writes). Profiles
        resolved on the way are appended to `resolved_profiles` (the caller releases them).
        `check_owner=False` skips the check against other claims in the store, which may
        release stale store entries (a dry run changes nothing)."""
        allocation, consumer = self._check(ref, claim)
        pod_uid = str(consumer.get("uid", ""))
        results = [
            r
            for r in ((allocation.get("devices") or {}).get("results") or [])
            if r.get("driver") == self.driver
        ]
        plans: list[PlanRecord] = []
        devices: list[PreparedDevice] = []
        for i, r in enumerate(results):
            pool, device, request = str(r.get("pool")), str(r.get("device")), r.get("request")
            label = f"{pool}/{device} (status.allocation.devices.results[{i}])"
            if not request:
                raise ClaimError(f"allocation result for device {label} has no request")
            if self.pool is not None and pool != self.pool:
                raise ClaimError(
                    f"device {label} belongs to pool {pool!r}, not to this node's pool "
                    f"{self.pool!r}; {self.driver} prepares only devices of its own node"
                )
            if check_owner:
                self._check_owner(ref, pool, device)
            config = config_select.resolve_config(allocation, self.driver, request, label)
            if config.profile:
                provider = self._resolve_profile(ref.uid, device, config.profile, label)
                resolved_profiles.append((device, config.profile))
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
            self.store.save_prepared(
                ClaimRecord(
                    ref.uid, ref.namespace, ref.name, pod_uid, time.time(), _result_to_json(result)
                ),
                PodRecord(pod_uid, ref.namespace, str(consumer.get("name", ""))),
                plans,
            )
        except StoreError as exc:
            self._release_profiles(ref.uid, resolved_profiles)
            raise ClaimError(f"cannot persist the prepared state: {exc}") from exc
        except BaseException:
            self._release_profiles(ref.uid, resolved_profiles)
            raise
        return result

    def _resolve_profile(
        self, claim_uid: str, device: str, profile: str, label: str
    ) -> NetworkConfig:
        """The profile's config: the lowest-precedence source (user configs override it)."""
        if self.profiles is None:
            raise ClaimError(
                f"config for device {label} names profile {profile!r} but no profile "
                "provider is configured on this node"
            )
        return self.profiles.resolve(claim_uid, device, profile)

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
        for plan in self.store.delete_claim(claim_uid):
            if plan.profile:
                self._release_profile(claim_uid, plan.device, plan.profile)

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
