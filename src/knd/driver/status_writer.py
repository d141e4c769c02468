"""Claim status writer: `status.devices[]` by server-side apply, off every caller's path.

Fed by the NRI side after attach (and on detach). `submit()` never blocks and never raises: it
merges the device's entry into the claim's pending status and wakes one background worker. The
worker applies the claim's *complete* set of this driver's entries (SSA semantics: entries this
field manager stops sending are removed), with field manager = driver name and force. A failed
apply is retried with exponential backoff (0.2 s doubling to 10 s, `max_attempts` tries) unless
the API server refused it for good (PermanentError: a 4xx other than 409/429, a failed
`metadata.uid` precondition); a newer submit for the same claim supersedes a pending retry.
`lastTransitionTime` changes only when a condition's status changes; a submit that changes
nothing since the last successful apply writes nothing. The queue is bounded by
`max_claims` distinct claims; beyond that a submit is dropped with a log line and counted.
The last applied entries of each claim are kept (until `forget`) so every apply carries the
complete set; after a restart the NRI side resubmits every device of a claim it touches.

Entries carry conditions (`Ready`, `NetworkReady`, `RDMALinkReady`) with reasons and messages
and `networkData` {interfaceName, ips (CIDR), hardwareAddress}, within the API's limits.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from knd.api import limits
from knd.driver.claim_api import StatusApplier
from knd.driver.errors import PermanentError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Condition:
    type: str  # Ready | NetworkReady | DHCPLease | RDMALinkReady
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class NetworkData:
    interface_name: str = ""
    ips: tuple[str, ...] = ()
    hardware_address: str = ""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    pool: str
    device: str
    conditions: tuple[Condition, ...] = ()
    network: NetworkData | None = None
    share_id: str | None = None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def device_entry(
    driver: str, status: DeviceStatus, generation: int | None = None
) -> dict[str, Any]:
    """The JSON `status.devices[]` entry, clipped to API limits."""
    entry: dict[str, Any] = {"driver": driver, "pool": status.pool, "device": status.device}
    if status.share_id is not None:
        entry["shareID"] = status.share_id
    conds = []
    for c in status.conditions[: limits.MAX_DEVICE_STATUS_CONDITIONS]:
        cond: dict[str, Any] = {
            "type": c.type,
            "status": "True" if c.status else "False",
            "reason": c.reason,
            "message": c.message[:32768],
            "lastTransitionTime": _now(),
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        conds.append(cond)
    if conds:
        entry["conditions"] = conds
    if status.network is not None:
        net: dict[str, Any] = {}
        n = status.network
        if n.interface_name:
            net["interfaceName"] = n.interface_name[: limits.MAX_INTERFACE_NAME_STATUS_BYTES]
        if n.ips:
            net["ips"] = list(dict.fromkeys(n.ips))[: limits.MAX_NETWORK_DATA_IPS]
        if n.hardware_address:
            net["hardwareAddress"] = n.hardware_address[: limits.MAX_HARDWARE_ADDRESS_STATUS_BYTES]
        entry["networkData"] = net
    return entry


def _keep_transitions(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new` with each condition's `lastTransitionTime` taken from `old` when that condition's
    status did not change (Kubernetes' meaning of a transition)."""
    if not old:
        return new
    before = {c["type"]: c for c in old.get("conditions", ())}
    for cond in new.get("conditions", ()):
        prior = before.get(cond["type"])
        if prior is not None and prior["status"] == cond["status"]:
            cond["lastTransitionTime"] = prior["lastTransitionTime"]
    return new


@dataclass
class _Pending:
    namespace: str
    name: str
    entries: dict[tuple[str, str, str | None], dict[str, Any]] = field(default_factory=dict)
    attempt: int = 0
    version: int = 0
    forgotten: bool = False
    uid: str | None = None


class StatusWriter:
    """Bounded, retrying, non-blocking writer of claim device status."""

    def __init__(
        self,
        *,
        applier: StatusApplier,
        driver: str,
        max_claims: int = 1024,
        max_attempts: int = 8,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        on_retry: Callable[[], None] | None = None,
        on_refused: Callable[[str, str, str | None, str], None] | None = None,
    ) -> None:
        self.applier = applier
        self.on_retry = on_retry
        # (namespace, name, uid, message) of an apply refused for good; must not raise
        self.on_refused = on_refused
        self.retries = 0
        self.driver = driver
        self.max_claims = max_claims
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.dropped = 0
        self.unchanged = 0
        self.applied = 0
        self.failed = 0
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        # last applied entries per claim: an apply must carry all of them (SSA ownership)
        self._applied: dict[str, dict[tuple[str, str, str | None], dict[str, Any]]] = {}
        self._due: list[tuple[float, int, str]] = []  # (when, version, key)
        self._busy = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="knd-status", daemon=True)
        self._thread.start()

    def submit(
        self,
        namespace: str,
        name: str,
        devices: Sequence[DeviceStatus],
        remove: bool = False,
        uid: str | None = None,
    ) -> bool:
        """Queue entries (or their removal) for a claim; False when dropped. Never blocks.

        `uid` (the claim's `metadata.uid`) makes the apply conditional: a claim deleted and
        re-created under the same name never gets this status. A condition keeps its
        `lastTransitionTime` while its status stays the same, and a submit that changes
        nothing since the last successful apply writes nothing."""
        key = f"{namespace}/{name}"
        with self._cond:
            pending = self._pending.get(key)
            fresh = pending is None
            if pending is None:
                if len(self._pending) >= self.max_claims:
                    self.dropped += 1
                    log.warning("status queue full (%d claims); dropped %s", self.max_claims, key)
                    return False
                pending = self._pending[key] = _Pending(namespace, name)
                pending.entries = dict(self._applied.get(key, {}))
            pending.forgotten = False
            if uid:
                pending.uid = uid
            for d in devices:
                k = (d.pool, d.device, d.share_id)
                if remove:
                    pending.entries.pop(k, None)
                else:
                    pending.entries[k] = _keep_transitions(
                        pending.entries.get(k), device_entry(self.driver, d)
                    )
            if fresh and key in self._applied and pending.entries == self._applied[key]:
                del self._pending[key]  # nothing changed since the last apply: no write
                self.unchanged += 1
                return True
            pending.attempt = 0
            pending.version += 1
            heapq.heappush(self._due, (time.monotonic(), pending.version, key))
            self._cond.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        break
                    self._cond.wait(self._due[0][0] - now if self._due else None)
                if self._stop:
                    return
                _, version, key = heapq.heappop(self._due)
                pending = self._pending.get(key)
                if pending is None or pending.version != version:
                    continue  # superseded
                body = list(pending.entries.values())
                self._busy += 1
            ok = permanent = False
            refusal = ""
            try:
                if pending.uid:
                    self.applier.apply_devices(
                        pending.namespace, pending.name, body, self.driver, uid=pending.uid
                    )
                else:
                    self.applier.apply_devices(pending.namespace, pending.name, body, self.driver)
                ok = True
            except PermanentError as exc:
                permanent = True
                refusal = str(exc)
                log.error("status apply for %s refused, not retried: %s", key, exc)
            except Exception as exc:
                log.warning("status apply for %s failed: %s", key, exc)
            with self._cond:
                self._busy -= 1
                current = self._pending.get(key)
                if current is pending and pending.version == version:
                    if ok:
                        self.applied += 1
                        if not pending.forgotten:
                            self._applied[key] = pending.entries
                        del self._pending[key]
                    elif permanent:
                        self.failed += 1
                        del self._pending[key]
                        if self.on_refused is not None:
                            self.on_refused(pending.namespace, pending.name, pending.uid, refusal)
                    else:
                        pending.attempt += 1
                        if pending.attempt >= self.max_attempts:
                            self.failed += 1
                            log.error(
                                "giving up on status of %s after %d tries", key, pending.attempt
                            )
                            del self._pending[key]
                        else:
                            delay = min(
                                self.backoff_max_s,
                                self.backoff_initial_s * 2 ** (pending.attempt - 1),
                            )
                            heapq.heappush(self._due, (time.monotonic() + delay, version, key))
                            self.retries += 1
                            if self.on_retry is not None:
                                self.on_retry()
                elif ok:
                    self.applied += 1
                self._cond.notify_all()

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is known about a claim (after unprepare); a pending apply still runs but
        its entries are not kept afterwards."""
        key = f"{namespace}/{name}"
        with self._cond:
            self._applied.pop(key, None)
            pending = self._pending.get(key)
            if pending is not None:
                pending.forgotten = True

    def known_claims(self) -> int:
        """Claims whose last applied entries are kept (bounded by prepared claims)."""
        with self._cond:
            return len(self._applied)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending (tests, shutdown). True if drained."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
