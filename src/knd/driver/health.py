"""`/metrics`, `/healthz` and `/readyz` over HTTP, from a small thread (stdlib server).

Contract:
* `/healthz`: 503 until the kubelet plugin is registered, then 200 — the startup probe.
* `/readyz`: 200 only while registered AND connected to the runtime's NRI socket AND the first
  publish has happened; otherwise 503 with the missing conditions in the body.
* `/metrics`: the daemon's registry in the Prometheus text format.
Requests are answered in well under a millisecond; nothing here blocks the daemon.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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


class HealthServer:
    """Serves the three endpoints until `stop()`."""

    def __init__(self, address: str, state: HealthState, registry: CollectorRegistry) -> None:
        self.state = state
        self.registry = registry
        handler = self._handler_class()
        self._server = ThreadingHTTPServer(parse_bind_address(address), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = server.state.registered
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not registered\n")
                elif path == "/readyz":
                    missing = server.state.missing_for_ready()
                    body = "ok\n" if not missing else "missing: " + ", ".join(missing) + "\n"
                    self._send(503 if missing else 200, body.encode())
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
