"""A bounded HTTP/1.1 client for node-local services: cloud metadata servers and provider webhooks.

Contract: `fetch(...)` performs one request and returns the status and body, or raises
`FetchError`. It never takes longer than `timeout` seconds in total (connect, send, headers and
body share one deadline), never reads more than `max_bytes` of body, and never follows
redirects. URLs are `http://host[:port]/path`, `https://...`, or `unix:///socket/path` (the HTTP
request path then comes from `path=`; the URL's own path is the socket). Nothing here retries:
callers decide how often to ask.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_MAX_BYTES = 1 << 20
_CHUNK = 64 * 1024


class FetchError(Exception):
    """The request could not be completed (connect, timeout, protocol, size)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status == 200

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed base URL: where to connect and the path prefix requests go under."""

    scheme: str  # http, https, unix
    host: str
    port: int | None
    prefix: str  # path prefix without a trailing slash (empty for unix sockets)
    socket_path: str = ""

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse `url`; raises FetchError naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme == "unix":
            path = parts.path
            if not path.startswith("/"):
                raise FetchError(f"{url!r}: unix URLs need an absolute socket path (unix:///p)")
            return cls("unix", "localhost", None, "", path)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"{url!r}: scheme must be http, https or unix")
        if not parts.hostname:
            raise FetchError(f"{url!r}: no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise FetchError(f"{url!r}: {exc}") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    def url(self, path: str) -> str:
        """A printable URL for log and error messages."""
        if self.scheme == "unix":
            return f"unix://{self.socket_path}:{path}"
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}{self.prefix}{path}"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(ep: Endpoint, timeout: float) -> http.client.HTTPConnection:
    if ep.scheme == "unix":
        return _UnixConnection(ep.socket_path, timeout)
    if ep.scheme == "https":
        return http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout)
    return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)


def fetch(
    endpoint: Endpoint | str,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 1.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Response:
    """One request to `endpoint` + `path` (see the module docstring for the bounds)."""
    ep = Endpoint.parse(endpoint) if isinstance(endpoint, str) else endpoint
    if not path.startswith("/"):
        path = "/" + path
    deadline = time.monotonic() + timeout
    conn = _connection(ep, timeout)
    where = ep.url(path)
    try:
        conn.request(method, ep.prefix + path, body=body, headers=dict(headers or {}))
        _remaining(deadline, where)
        resp = conn.getresponse()
        chunks: list[bytes] = []
        size = 0
        while True:
            left = _remaining(deadline, where)
            if conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"{where}: response body exceeds {max_bytes} bytes")
            chunks.append(chunk)
        return Response(resp.status, b"".join(chunks))
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def _remaining(deadline: float, where: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"{where}: timed out")
    return left
