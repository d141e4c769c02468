"""Device health for kubelet: the `v1alpha1.DRAResourceHealth/NodeWatchResources` stream.

Kubelet (1.34+, gate ResourceHealthStatus) opens one server stream and treats a device whose
health was not refreshed for 30 s as Unknown. Each message carries the driver's complete device
list. `HealthMonitor` polls a `HealthSource` every `poll_s` (default 1 s) in one background
thread; every open stream gets a message immediately, on every change, and at least every
`resend_s` (default 5 s, never more than 10 s). A source that raises yields no update for that
round (logged) rather than breaking the streams.

A sync gRPC server gives each open stream a worker thread for its whole life, so streams are
bounded: at most `max_streams` (default 4; kubelet opens one) are served at once. A new stream
beyond the bound ends the oldest one (kubelet, which reconnects, always gets the newest); a
stream whose client went away releases its thread at once (gRPC termination callback).
`KubeletPlugin` sizes its executor as prepare/unprepare workers + `max_streams`, so no number
of open health streams can take the threads NodePrepareResources needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import grpc

from knd._proto.kubelet import health_v1alpha1_pb2 as pb
from knd.kubelet import wire
from knd.kubelet.types import DeviceHealthState

log = logging.getLogger(__name__)

MAX_RESEND_S = 10.0
MAX_MESSAGE_LEN = 1024
DEFAULT_MAX_STREAMS = 4


class _Stream:
    """One open NodeWatchResources stream; `ended` once evicted or its client left."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended = False


class HealthSource(Protocol):
    """Current health of every device the driver publishes (complete list, any order)."""

    def snapshot(self) -> list[DeviceHealthState]: ...


def _key(states: list[DeviceHealthState]) -> tuple[tuple[str, str, bool | None, str], ...]:
    return tuple(sorted((s.pool, s.device, s.healthy, s.message) for s in states))


class HealthMonitor:
    """Polls a HealthSource and fans changes out to the open NodeWatchResources streams."""

    def __init__(
        self,
        source: HealthSource,
        poll_s: float = 1.0,
        resend_s: float = 5.0,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        self.source = source
        self.poll_s = poll_s
        self.resend_s = min(resend_s, MAX_RESEND_S)
        self.max_streams = max(1, max_streams)
        self._streams: list[_Stream] = []
        self.evicted = 0
        self._cond = threading.Condition()
        self._states: list[DeviceHealthState] = []
        self._version = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Probe now (e.g. on a netlink link event) instead of at the next poll."""
        self._wake.set()

    def poll_once(self) -> bool:
        """Take one snapshot; True when it differs from the previous one."""
        try:
            states = self.source.snapshot()
        except Exception:
            log.exception("device health probe failed")
            return False
        with self._cond:
            changed = _key(states) != _key(self._states) or self._version == 0
            self._states = states
            if changed:
                self._version += 1
                self._cond.notify_all()
            return changed

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.poll_once()

    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="knd-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def updates(
        self, active: Any = None, stream: _Stream | None = None
    ) -> Iterator[list[DeviceHealthState]]:
        """Current list now, then on each change or after `resend_s`, until stopped/inactive."""
        seen = -1

        def live() -> bool:
            if self._stop.is_set() or (stream is not None and stream.ended):
                return False
            return active is None or bool(active())

        while live():
            with self._cond:
                if seen == self._version:
                    self._cond.wait(self.resend_s)
                seen = self._version
                states = list(self._states)
            if not live():
                return
            yield states

    @property
    def open_streams(self) -> int:
        with self._cond:
            return len(self._streams)

    def _open_stream(self) -> _Stream:
        stream = _Stream()
        with self._cond:
            if len(self._streams) >= self.max_streams:
                oldest = self._streams.pop(0)
                oldest.ended = True
                self.evicted += 1
                log.warning(
                    "more than %d NodeWatchResources streams: ending the oldest", self.max_streams
                )
                self._cond.notify_all()
            self._streams.append(stream)
        return stream

    def _end_stream(self, stream: _Stream) -> None:
        with self._cond:
            stream.ended = True
            if stream in self._streams:
                self._streams.remove(stream)
            self._cond.notify_all()

    # -- gRPC --------------------------------------------------------------------------------
    def _watch(
        self, _request: pb.NodeWatchResourcesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.NodeWatchResourcesResponse]:
        stream = self._open_stream()
        context.add_callback(lambda: self._end_stream(stream))
        try:
            for states in self.updates(context.is_active, stream):
                yield to_response(states)
        finally:
            self._end_stream(stream)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            wire.HEALTH_V1ALPHA1_SERVICE,
            {
                wire.WATCH: grpc.unary_stream_rpc_method_handler(
                    self._watch,
                    request_deserializer=pb.NodeWatchResourcesRequest.FromString,
                    response_serializer=pb.NodeWatchResourcesResponse.SerializeToString,
                )
            },
        )


def to_response(states: list[DeviceHealthState]) -> pb.NodeWatchResourcesResponse:
    """The wire message for one snapshot."""
    now = int(time.time())
    response = pb.NodeWatchResourcesResponse()
    for s in states:
        health = pb.UNKNOWN if s.healthy is None else pb.HEALTHY if s.healthy else pb.UNHEALTHY
        response.devices.add(
            device=pb.DeviceIdentifier(pool_name=s.pool, device_name=s.device),
            health=health,
            last_updated_time=s.updated or now,
            message=s.message[:MAX_MESSAGE_LEN],
        )
    return response
