"""Kubernetes Events, aggregated and sent off the caller's thread.

Contract: `EventSink.warning(ref, reason, message)` never blocks and never raises: it queues the
Event (bounded queue; when full, the Event is dropped and counted in `dropped`) for a daemon
thread that writes it. Aggregation as client-go's event correlator does for repeats: the first
occurrence of (object, type, reason, message) is POSTed with `count: 1`; every repeat PATCHes
that Event's `count` and `lastTimestamp` instead of creating a new one, so a pod whose attach
fails on every kubelet retry shows one Event with a rising count. The cache of known Events is
an LRU of `cache_size` keys; a repeat whose Event has vanished (expired by the API server's TTL,
404) is POSTed again with its count. Each write is one API call bounded by the connection's
timeout; an error is logged and the Event dropped (Events are best effort).

`NRI hooks may not call the API server` (knd.driver.hooks): they call `warning`, which only
enqueues. `ObjectRef.pod(...)` and `ObjectRef.claim(...)` build the involved object.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from knd.kube.connection import MERGE_PATCH_TYPE, ApiConnection, quote
from knd.kube.errors import ApiError, NotFoundError

log = logging.getLogger(__name__)

#: DraNet's reasons (pkg/driver): a netdev or an RDMA link device failed to move into the pod.
NETWORK_ATTACH_FAILED = "NetworkDeviceAttachFailed"
RDMA_ATTACH_FAILED = "RDMADeviceAttachFailed"
#: knd only: a container runs without its RDMA char devices (it missed CreateContainer).
RDMA_DEVICES_MISSING = "RDMADevicesMissing"
#: knd's: the API server refused a claim's status.devices for good (a 4xx, not retried).
CLAIM_STATUS_REFUSED = "ClaimStatusRefused"
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class ObjectRef:
    """The involved object of an Event."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def pod(cls, namespace: str, name: str, uid: str) -> ObjectRef:
        return cls("v1", "Pod", namespace, name, uid)

    @classmethod
    def claim(cls, namespace: str, name: str, uid: str) -> ObjectRef:
        return cls("resource.k8s.io/v1", "ResourceClaim", namespace, name, uid)


class ClaimEvents:
    """The prepare engine's EventRecorder (knd.driver.claim_api) over an EventSink: claim
    Events aggregate like pod Events."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    def warning(self, claim: Any, reason: str, message: str) -> None:
        meta = claim.get("metadata", {}) if hasattr(claim, "get") else {}
        ref = ObjectRef.claim(
            str(meta.get("namespace", "default")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
        )
        self.sink.warning(ref, reason, message)


@dataclass
class _Known:
    name: str
    count: int
    first: str


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class EventSink:
    """Aggregating, asynchronous Event writer (see the module docstring). Thread-safe."""

    def __init__(
        self,
        conn: ApiConnection,
        component: str,
        host: str,
        *,
        queue_size: int = 256,
        cache_size: int = 1024,
    ) -> None:
        self._conn = conn
        self.component = component
        self.host = host
        self._queue: queue.Queue[tuple[ObjectRef, str, str, str] | None] = queue.Queue(queue_size)
        self._known: OrderedDict[tuple[Any, ...], _Known] = OrderedDict()
        self._cache_size = cache_size
        self.dropped = 0
        self.written = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- producer side ---------------------------------------------------------------------
    def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        """Queue a Warning Event; never blocks, never raises."""
        self._put((ref, "Warning", reason, message[:MAX_MESSAGE]))

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        """Queue a Normal Event; never blocks, never raises."""
        self._put((ref, "Normal", reason, message[:MAX_MESSAGE]))

    def _put(self, item: tuple[ObjectRef, str, str, str]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="knd-events", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to `timeout_s`), then stop the thread."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._thread = None

    def flush(self) -> None:
        """Write everything queued now, on the caller's thread (tests, and without start())."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._write(*item)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._write(*item)

    # -- writing --------------------------------------------------------------------------
    def _write(self, ref: ObjectRef, etype: str, reason: str, message: str) -> None:
        key = (ref, etype, reason, message)
        known = self._known.get(key)
        try:
            if known is not None:
                self._known.move_to_end(key)
                known.count += 1
                try:
                    self._patch(ref, known)
                except NotFoundError:
                    self._post(ref, etype, reason, message, known)
            else:
                known = _Known(f"{ref.name}.{uuid.uuid4().hex[:16]}", 1, _now())
                self._post(ref, etype, reason, message, known)
                self._known[key] = known
                while len(self._known) > self._cache_size:
                    self._known.popitem(last=False)
            self.written += 1
        except ApiError as exc:
            log.warning(
                "cannot record event %s on %s %s/%s: %s",
                reason,
                ref.kind,
                ref.namespace,
                ref.name,
                exc,
            )
        except Exception:  # never let the writer thread die
            log.exception(
                "recording event %s on %s %s/%s", reason, ref.kind, ref.namespace, ref.name
            )

    def _post(self, ref: ObjectRef, etype: str, reason: str, message: str, known: _Known) -> None:
        now = _now()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": known.name, "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid,
            },
            "type": etype,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": known.first,
            "lastTimestamp": now,
            "count": known.count,
        }
        self._conn.request("POST", f"/api/v1/namespaces/{quote(ref.namespace)}/events", body=body)

    def _patch(self, ref: ObjectRef, known: _Known) -> None:
        self._conn.request(
            "PATCH",
            f"/api/v1/namespaces/{quote(ref.namespace)}/events/{quote(known.name)}",
            body={"count": known.count, "lastTimestamp": _now()},
            content_type=MERGE_PATCH_TYPE,
        )
