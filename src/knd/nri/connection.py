"""One NRI trunk: a unix stream socket multiplexed into conn 1 (our ttrpc server, called by the
runtime) and conn 2 (our ttrpc client, calling the runtime).

Threads (documented choice: threads, not asyncio; the hooks call blocking netlink code):
* reader: the only thread that reads the socket; demultiplexes frames, reassembles ttrpc
  messages, validates them, completes our outstanding calls (conn 2) and queues incoming
  requests (conn 1);
* worker: runs incoming requests one at a time, in arrival order (the runtime sends one event at
  a time anyway), and writes the response;
* callers of `call()` block on their own stream's result.
All writes go through one lock, so frames of different messages never interleave.

Robustness contract: any malformed, truncated, oversized or out-of-order input (reserved conn
id, oversized frame or message, unknown message type, even or non-increasing request stream id,
Data or streaming frames, undecodable envelope) closes this connection with a logged reason
and fails every outstanding call with `ConnectionClosedError`; exceptions never escape the
threads, so the daemon survives. A late response for a call that already timed out is dropped
and logged at most once per `STRAY_LOG_INTERVAL_S` (with the count since the last line), so a
peer flooding stray responses cannot flood the log.

Bounded memory: at most `MAX_IN_FLIGHT` requests (and `MAX_IN_FLIGHT_BYTES` of payload) from the
runtime may wait unanswered; a peer that sends more without waiting for answers is not a runtime
(containerd and CRI-O send one event at a time) and the connection is closed with that reason.
Closing drops every queued request, so their memory returns at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from knd._proto import ttrpc_pb2
from knd.nri import mux, ttrpc
from knd.nri.errors import CallError, ConnectionClosedError, ProtocolError

log = logging.getLogger(__name__)

RECV_SIZE = 65536
#: Requests from the runtime queued or running, unanswered, per connection.
MAX_IN_FLIGHT = 64
MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024
STRAY_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class Reply:
    """What a server-side dispatcher returns: a payload, or a non-zero status code + message."""

    payload: bytes = b""
    code: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    service: str
    method: str
    payload: bytes
    deadline: float | None  # time.monotonic() deadline from timeout_nano, None = no deadline


Dispatcher = Callable[[IncomingRequest], Reply]


class _Pending:
    __slots__ = ("done", "error", "payload")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.payload = b""
        self.error: Exception | None = None


class NriConnection:
    """A started trunk. `dispatch` serves conn 1; `call` is the conn 2 client."""

    def __init__(self, sock: socket.socket, dispatch: Dispatcher, name: str = "nri") -> None:
        self._sock = sock
        self._dispatch = dispatch
        self._name = name
        self._wlock = threading.Lock()
        self._plock = threading.Lock()
        self._sid_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_sid = 1
        self._last_server_sid = 0
        self._work: queue.Queue[tuple[int, IncomingRequest] | None] = queue.Queue()
        self._closed = threading.Event()
        self.close_reason = ""
        self._threads: list[threading.Thread] = []
        self._in_flight = 0  # requests queued or running (reader increments, worker decrements)
        self._in_flight_bytes = 0
        self._flight_lock = threading.Lock()
        self.stray_responses = 0
        self._stray_logged = 0
        self._stray_log_at = float("-inf")
        self.stray_log_interval_s = STRAY_LOG_INTERVAL_S

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving conn 1 and reading conn 2 (call before the first `call`)."""
        for target, suffix in ((self._reader, "reader"), (self._worker, "worker")):
            t = threading.Thread(target=target, name=f"{self._name}-{suffix}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    def close(self, reason: str = "closed locally") -> None:
        """Close the trunk (idempotent); fail outstanding calls; stop the worker."""
        with self._plock:
            if self._closed.is_set():
                return
            self.close_reason = reason
            self._closed.set()
            pending = list(self._pending.values())
            self._pending.clear()
        for p in pending:
            p.error = ConnectionClosedError(reason)
            p.done.set()
        self._drop_queued()
        self._work.put(None)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _drop_queued(self) -> None:
        """Forget every request still queued (their payloads are freed with them)."""
        while True:
            try:
                self._work.get_nowait()
            except queue.Empty:
                return

    @property
    def in_flight(self) -> int:
        with self._flight_lock:
            return self._in_flight

    # -- client (conn 2) ---------------------------------------------------------------------

    def call(self, service: str, method: str, payload: bytes, timeout: float) -> bytes:
        """Unary ttrpc call on conn 2; returns the response payload or raises
        CallError (non-OK status), ConnectionClosedError, or TimeoutError."""
        pending = _Pending()
        # allocate the id and write under one lock, so ids hit the wire strictly increasing; the
        # pending table has its own short-held lock, so the reader never waits on a slow send
        with self._sid_lock:
            with self._plock:
                if self._closed.is_set():
                    raise ConnectionClosedError(self.close_reason)
                sid = self._next_sid
                self._next_sid += 2
                self._pending[sid] = pending
            data = ttrpc.request_bytes(sid, service, method, payload, int(timeout * 1e9))
            try:
                self._send(mux.RUNTIME_SERVICE_CONN, data)
            except OSError as e:
                self.close(f"write failed: {e}")
                raise ConnectionClosedError(self.close_reason) from e
        if not pending.done.wait(timeout):
            with self._plock:
                self._pending.pop(sid, None)
            raise TimeoutError(f"{service}/{method}: no response in {timeout:.1f} s")
        if pending.error is not None:
            raise pending.error
        return pending.payload

    # -- internals ---------------------------------------------------------------------------

    def _send(self, conn_id: int, message: bytes) -> None:
        frames = mux.frames_for_message(conn_id, message)
        with self._wlock:
            self._sock.sendall(b"".join(frames))

    def _reader(self) -> None:
        trunk = mux.MuxDecoder()
        server = ttrpc.MessageDecoder()
        client = ttrpc.MessageDecoder()
        try:
            while not self._closed.is_set():
                try:
                    data = self._sock.recv(RECV_SIZE)
                except OSError as e:
                    self.close(f"socket error: {e}")
                    return
                if not data:
                    tail = trunk.pending + server.pending + client.pending
                    self.close("peer closed" + (f" ({tail} bytes truncated)" if tail else ""))
                    return
                for frame in trunk.feed(data):
                    if frame.conn_id == mux.PLUGIN_SERVICE_CONN:
                        for m in server.feed(frame.payload):
                            self._on_server_message(m)
                    elif frame.conn_id == mux.RUNTIME_SERVICE_CONN:
                        for m in client.feed(frame.payload):
                            self._on_client_message(m)
                    # frames for conns we never opened are dropped, as the Go mux does
        except ProtocolError as e:
            log.warning("%s: closing NRI connection: %s", self._name, e)
            self.close(f"protocol error: {e}")
        except Exception as e:  # never let a decoder bug kill the daemon
            log.exception("%s: closing NRI connection after unexpected error", self._name)
            self.close(f"internal error: {e!r}")

    def _on_server_message(self, m: ttrpc.TtrpcMessage) -> None:
        if m.type != ttrpc.MsgType.REQUEST:
            raise ProtocolError(f"unexpected ttrpc message type {m.type} on stream {m.stream_id}")
        if m.stream_id % 2 == 0:
            raise ProtocolError(f"even ttrpc stream id {m.stream_id} from the runtime")
        if m.stream_id <= self._last_server_sid:
            raise ProtocolError(
                f"ttrpc stream id {m.stream_id} not above the last one ({self._last_server_sid})"
            )
        self._last_server_sid = m.stream_id
        env = ttrpc.decode_request(m.data)
        if m.flags != 0:
            self._respond(
                m.stream_id,
                Reply(code=ttrpc.Code.UNIMPLEMENTED, message="streaming is not supported"),
            )
            return
        deadline = time.monotonic() + env.timeout_nano / 1e9 if env.timeout_nano > 0 else None
        size = len(env.payload)
        with self._flight_lock:
            if (
                self._in_flight >= MAX_IN_FLIGHT
                or self._in_flight_bytes + size > MAX_IN_FLIGHT_BYTES
            ):
                raise ProtocolError(
                    f"more than {MAX_IN_FLIGHT} requests or {MAX_IN_FLIGHT_BYTES} bytes in flight "
                    "(the runtime sends one event at a time)"
                )
            self._in_flight += 1
            self._in_flight_bytes += size
        self._work.put(
            (m.stream_id, IncomingRequest(env.service, env.method, env.payload, deadline))
        )

    def _on_client_message(self, m: ttrpc.TtrpcMessage) -> None:
        if m.type != ttrpc.MsgType.RESPONSE:
            raise ProtocolError(f"unexpected ttrpc message type {m.type} from the runtime server")
        env: ttrpc_pb2.Response = ttrpc.decode_response(m.data)
        with self._plock:
            pending = self._pending.pop(m.stream_id, None)
        if pending is None:
            self._log_stray(m.stream_id)
            return
        if env.HasField("status") and env.status.code != 0:
            pending.error = CallError(env.status.code, env.status.message)
        else:
            pending.payload = env.payload
        pending.done.set()

    def _log_stray(self, sid: int) -> None:
        self.stray_responses += 1
        now = time.monotonic()
        if now - self._stray_log_at < self.stray_log_interval_s:
            return
        since = self.stray_responses - self._stray_logged
        self._stray_log_at, self._stray_logged = now, self.stray_responses
        log.info(
            "%s: dropped %d response(s) for unknown/expired streams (latest %d; %d in all)",
            self._name,
            since,
            sid,
            self.stray_responses,
        )

    def _worker(self) -> None:
        while True:
            item = self._work.get()
            if item is None or self._closed.is_set():
                return
            sid, req = item
            try:
                reply = self._dispatch(req)
            except Exception as e:
                log.exception("%s: handler for %s/%s failed", self._name, req.service, req.method)
                reply = Reply(code=ttrpc.Code.UNKNOWN, message=f"internal error: {e}")
            finally:
                with self._flight_lock:
                    self._in_flight -= 1
                    self._in_flight_bytes -= len(req.payload)
            if req.deadline is not None and time.monotonic() > req.deadline:
                log.warning(
                    "%s: %s answered after the runtime's deadline; the runtime drops the plugin",
                    self._name,
                    req.method,
                )
            self._respond(sid, reply)

    def _respond(self, sid: int, reply: Reply) -> None:
        data = ttrpc.response_bytes(sid, reply.payload, reply.code, reply.message)
        try:
            self._send(mux.PLUGIN_SERVICE_CONN, data)
        except OSError as e:
            self.close(f"write failed: {e}")
