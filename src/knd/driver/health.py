"""`/metrics`, `/healthz` and `/readyz` over HTTP, from a small thread (stdlib server).

Contract:
* `/healthz`: 503 until the kubelet plugin is registered, then 200 — the startup probe.
* `/readyz`: 200 only while registered AND connected to the runtime's NRI socket AND the first
  publish has happened; otherwise 503 with the missing conditions in the body.
* `/metrics`: the daemon's registry in the Prometheus text format.
Requests are answered in well under a millisecond; nothing here blocks the daemon.

Hostile clients: one thread serves every connection (non-blocking sockets), each connection has
5 s to send its request and take the response, at most 64 are open (a new one ends the oldest,
so a fresh probe is always answered), request heads are capped at 8 KiB, only GET and HEAD are
served. The bind address is `--bind-address` (HOST:PORT, `[v6]:PORT` or `:PORT`).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


@dataclass
class HealthState:
    """Conditions the probes report; set by the daemon as components come up."""

    registered: bool = False
    nri_connected: bool = False
    published: bool = False
    shutting_down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, **conditions: bool) -> None:
        """Update one or more conditions atomically."""
        with self._lock:
            for name, value in conditions.items():
                if name.startswith("_") or not hasattr(self, name):
                    raise AttributeError(name)
                setattr(self, name, value)

    def missing_for_ready(self) -> list[str]:
        """Names of the conditions that keep the daemon from being ready."""
        with self._lock:
            missing = [
                n for n in ("registered", "nri_connected", "published") if not getattr(self, n)
            ]
            if self.shutting_down:
                missing.append("not shutting_down")
            return missing


def parse_bind_address(address: str) -> tuple[str, int]:
    """`:9177` → ("", 9177) (all interfaces); `127.0.0.1:0` → ("127.0.0.1", 0)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


#: Connections open at once; a new one beyond this ends the oldest (a probe is always newest).
MAX_CONNECTIONS = 64
#: A connection must deliver its request and take its response within this time.
CONNECTION_TIMEOUT_S = 5.0
#: Request line + headers; anything longer is answered 431 and closed.
MAX_REQUEST_BYTES = 8192
_READ_ONLY_METHODS = (b"GET", b"HEAD")


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    deadline: float
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytes = b""
    sent: int = 0


class HealthServer:
    """Serves the three endpoints until `stop()`, from one thread with non-blocking sockets.

    A slow or silent client costs one socket and a few bytes, never a thread: requests are read
    and responses written by one event loop (`selectors`), each connection has
    `CONNECTION_TIMEOUT_S` to finish, at most `MAX_CONNECTIONS` are open (the oldest is closed
    for a new one, so a fresh probe is always served), and requests are capped at
    `MAX_REQUEST_BYTES`. Only GET and HEAD are served (405 otherwise); nothing here changes
    daemon state. One request per connection (`Connection: close`).
    """

    def __init__(self, address: str, state: HealthState, registry: CollectorRegistry) -> None:
        self.state = state
        self.registry = registry
        host, port = parse_bind_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._conns: dict[socket.socket, _Conn] = {}
        self._stopping = threading.Event()
        self.evicted = 0
        self.timed_out = 0
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._listener.getsockname()[1])

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every socket."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(10)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    # -- event loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        sel = self._selector
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                for key, events in sel.select(timeout=0.5):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        continue
                    elif isinstance(key.data, _Conn):
                        self._io(key.data, events)
                self._expire()
        except Exception:  # never let a probe bug kill the daemon: log, keep the loop's contract
            log.exception("health server loop failed")
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            sel.close()

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):  # drain the backlog, a bounded number per round
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again next round
                log.warning("health server: accept failed: %s", exc)
                return
            if len(self._conns) >= MAX_CONNECTIONS:
                oldest = next(iter(self._conns.values()))
                self.evicted += 1
                self._close(oldest)
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + CONNECTION_TIMEOUT_S)
            self._conns[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _io(self, conn: _Conn, events: int) -> None:
        try:
            if events & selectors.EVENT_READ and not conn.outbox:
                data = conn.sock.recv(4096)
                if not data:
                    self._close(conn)
                    return
                conn.inbox += data
                response = self._maybe_respond(conn.inbox)
                if response is None:
                    return
                conn.outbox = response
                self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
            if conn.outbox:
                conn.sent += conn.sock.send(conn.outbox[conn.sent :])
                if conn.sent >= len(conn.outbox):
                    self._close(conn)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns.values() if c.deadline < now]:
            self.timed_out += 1
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()

    # -- HTTP ---------------------------------------------------------------------------------

    def _maybe_respond(self, inbox: bytearray) -> bytes | None:
        """The full response once the request head is in; None while it is still arriving."""
        end = inbox.find(b"\r\n\r\n")
        if end < 0:
            if len(inbox) > MAX_REQUEST_BYTES:
                return _response(431, b"request header too large\n", head=False)
            return None
        request_line = bytes(inbox[: inbox.find(b"\r\n")])
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response(400, b"bad request\n", head=False)
        method, target = parts[0], parts[1]
        if method not in _READ_ONLY_METHODS:
            return _response(405, b"method not allowed\n", head=False, allow=True)
        code, body, ctype = self._route(target.split(b"?", 1)[0])
        return _response(code, body, head=method == b"HEAD", ctype=ctype)

    def _route(self, path: bytes) -> tuple[int, bytes, str]:
        if path == b"/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path == b"/healthz":
            ok = self.state.registered
            return (200, b"ok\n", "text/plain") if ok else (503, b"not registered\n", "text/plain")
        if path == b"/readyz":
            missing = self.state.missing_for_ready()
            body = "ok\n" if not missing else "missing: " + ", ".join(missing) + "\n"
            return 503 if missing else 200, body.encode(), "text/plain"
        return 404, b"not found\n", "text/plain"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def _response(
    code: int, body: bytes, *, head: bool, ctype: str = "text/plain", allow: bool = False
) -> bytes:
    lines = [
        f"HTTP/1.1 {code} {_REASONS[code]}",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if allow:
        lines.append("Allow: GET, HEAD")
    header = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return header if head else header + body
