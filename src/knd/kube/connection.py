"""The daemon's HTTP(S) connection to the Kubernetes API server: JSON in, JSON out.

Contract:
- `ApiConnection.request(method, path, body=..., query=..., content_type=...)` sends one call and
  returns the decoded JSON answer. A non-2xx answer raises `knd.kube.errors.ApiError` (or its
  `NotFoundError` / `ConflictError`) carrying the HTTP status and the `Status.message` of the
  body; an unreachable server raises `ApiError` with status 0. Thread-safe: each thread keeps
  one keep-alive connection; a connection the server closed while idle is reopened once.
- Credentials come from one of three constructors: `connect_url` (the lab's emulator: a plain
  URL, no auth), `connect_in_cluster` (the DaemonSet case: the service-account token, re-read
  from its file every minute because bound tokens rotate, and the cluster CA), and
  `connect_kubeconfig` (development: a kubeconfig file, parsed by the `kubernetes` package so
  every auth method it knows, exec plugins included, works; the token is asked for per call so
  its refresh hooks run).

Why not the `kubernetes` client for the calls themselves: importing its package costs ~37 MB of
resident memory (its `__init__` loads config, dynamic, watch, stream, jsonschema...), which is
half of the daemon's idle budget (bench/daemon.py, ≤ 80 MB), for the six REST calls the daemon
makes. The package is imported only by `connect_kubeconfig`.

Time budget: one call to a local API server costs ~1 ms plus the server's time; `timeout_s`
(default 10 s) bounds each call.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knd.host.files import read_bounded
from knd.kube.errors import ApiError, for_status

JSON_TYPE = "application/json"
APPLY_PATCH_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_TYPE = "application/merge-patch+json"

#: Where a pod finds its service-account credentials (Kubernetes' fixed mount point).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: client-go re-reads a rotated service-account token about once a minute; so do we.
TOKEN_RELOAD_S = 60.0
#: Service-account tokens are ~1 KB; kubeconfigs with embedded certificates a few KB.
MAX_TOKEN_BYTES = 64 * 1024
MAX_KUBECONFIG_BYTES = 3 * 1024 * 1024

#: Returns the value of the Authorization header for the next call, or None for no header.
AuthSource = Callable[[], str | None]
#: Observes one finished request: (HTTP method, status — 0 when unreachable —, seconds).
RequestObserver = Callable[[str, int, float], None]

_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    BrokenPipeError,
    ConnectionResetError,
)


_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def canonical_json(body: Any) -> bytes:
    """`body` as Go's encoding/json writes a decoded map: compact, keys sorted, UTF-8, with
    `<`, `>`, `&`, U+2028 and U+2029 escaped.

    Why it matters: kube-apiserver (1.37.2 tested) stores an opaque config's `parameters` (a
    RawExtension) byte for byte as the client sent them, but every patch of the object
    (server-side apply, merge or JSON patch) re-encodes them in this canonical form. For a
    claim whose stored bytes differ, the scheduler's copy in `status.allocation` then
    "changes", and every status patch is refused with 422 (docs/lab.md). kubectl sends this
    form; knd does too, so whatever knd creates (the lab, `knd lab apply`) stays patchable.
    Floats are written as Python writes them (`1.0`, where Go writes `1`): claim parameters
    carry integers and strings."""
    text = json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.translate(_GO_ESCAPES).encode()


class CredentialsError(ValueError):
    """The credentials named cannot be used (missing file, no server, unknown scheme)."""


def quote(segment: str) -> str:
    """One path segment, percent-encoded (names are validated elsewhere; this is defence)."""
    return urllib.parse.quote(segment, safe="")


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str


def _endpoint(server: str) -> _Endpoint:
    url = urllib.parse.urlsplit(server)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CredentialsError(f"API server must be an http(s) URL, got {server!r}")
    port = url.port or (443 if url.scheme == "https" else 80)
    return _Endpoint(url.scheme, url.hostname, port, url.path.rstrip("/"))


def _status_message(data: bytes, fallback: str) -> str:
    try:
        decoded = json.loads(data)
    except ValueError:
        return fallback
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return fallback


class ApiConnection:
    """JSON REST calls to one API server with fixed credentials (see the module contract)."""

    def __init__(
        self,
        server: str,
        *,
        tls: ssl.SSLContext | None = None,
        tls_server_name: str | None = None,
        auth: AuthSource | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._endpoint = _endpoint(server)
        if self._endpoint.scheme == "https" and tls is None:
            tls = ssl.create_default_context()
        self._tls = tls
        self._tls_server_name = tls_server_name
        self._auth = auth
        self.timeout_s = timeout_s
        self._local = threading.local()
        #: Called after every request as (method, HTTP status or 0 if unreachable, seconds);
        #: the daemon's API-client metrics. Must not raise and must be fast.
        self.observer: RequestObserver | None = None

    def _connection(self, timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it was used before (may have gone stale)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.timeout = timeout_s
            if conn.sock is not None:
                conn.sock.settimeout(timeout_s)
            return conn, True
        ep = self._endpoint
        if ep.scheme == "https":
            conn = _SniConnection(
                ep.host, ep.port, timeout=timeout_s, context=self._tls, sni=self._tls_server_name
            )
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout_s)
        self._local.conn = conn
        return conn, False

    def _drop_connection(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop_connection()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        content_type: str = JSON_TYPE,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """`method path?query` with `body` as JSON; the decoded answer ({} when empty)."""
        target = self._endpoint.base_path + path
        if query:
            target += "?" + urllib.parse.urlencode(list(query.items()))
        headers = {"Accept": JSON_TYPE, "User-Agent": "knd"}
        payload = None
        if body is not None:
            payload = canonical_json(body)
            headers["Content-Type"] = content_type
        if self._auth is not None:
            value = self._auth()
            if value:
                headers["Authorization"] = value
        started = time.monotonic()
        status = 0
        try:
            status, reason, data = self._exchange(
                method, target, payload, headers, timeout_s or self.timeout_s
            )
        finally:
            if self.observer is not None:
                self.observer(method, status, time.monotonic() - started)
        if not 200 <= status <= 299:
            raise for_status(status, _status_message(data, reason), f"{method} {path}")
        if not data:
            return {}
        try:
            out: dict[str, Any] = json.loads(data)
        except ValueError as exc:
            raise ApiError(status, "answer is not JSON", f"{method} {path}") from exc
        return out

    def _exchange(
        self,
        method: str,
        target: str,
        payload: bytes | None,
        headers: dict[str, str],
        timeout_s: float,
    ) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            conn, reused = self._connection(timeout_s)
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self._drop_connection()
                return resp.status, resp.reason, data
            except _STALE_CONNECTION as exc:
                self._drop_connection()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection; reopen once
                raise ApiError(
                    0,
                    f"API server {self.server} closed the connection: {exc}",
                    f"{method} {target}",
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                raise ApiError(
                    0, f"API server {self.server} unreachable: {exc}", f"{method} {target}"
                ) from exc
        raise AssertionError("unreachable")


class _SniConnection(http.client.HTTPSConnection):
    """HTTPS with an explicit TLS server name (kubeconfig `tls-server-name`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        context: ssl.SSLContext | None,
        sni: str | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._sni = sni
        self._ctx = context or ssl.create_default_context()

    def connect(self) -> None:
        if self._sni is None:
            super().connect()
            return
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._sni)


def tls_context(
    *,
    ca_file: str | None = None,
    ca_data: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client TLS context: trust `ca_file`/`ca_data` (PEM; the system store when neither),
    present `cert_file`/`key_file` when given; `verify=False` is kubeconfig's
    `insecure-skip-tls-verify`."""
    ctx = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class FileToken:
    """A bearer token read from a file, re-read when older than `reload_s` (rotation)."""

    def __init__(self, path: Path, reload_s: float = TOKEN_RELOAD_S) -> None:
        self.path = path
        self.reload_s = reload_s
        self._lock = threading.Lock()
        self._value = ""
        self._read_at = float("-inf")

    def __call__(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self.reload_s:
                try:
                    raw = read_bounded(self.path, MAX_TOKEN_BYTES)
                    self._value = raw.decode("utf-8", errors="replace").strip()
                except OSError as exc:
                    if not self._value:
                        raise CredentialsError(f"cannot read token {self.path}: {exc}") from exc
                    # keep the last good token; the next call tries again
                self._read_at = now
            return f"Bearer {self._value}" if self._value else None


def connect_url(server: str, timeout_s: float = 10.0) -> ApiConnection:
    """A connection without credentials (the lab's API server emulator)."""
    return ApiConnection(server, timeout_s=timeout_s)


def connect_in_cluster(
    *,
    environ: Mapping[str, str] | None = None,
    account_dir: Path = SERVICE_ACCOUNT_DIR,
    timeout_s: float = 10.0,
) -> ApiConnection:
    """The pod's own credentials: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service-account token
    (re-read every minute) and CA. Raises CredentialsError outside a pod."""
    env = os.environ if environ is None else environ
    host = env.get("KUBERNETES_SERVICE_HOST", "")
    port = env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise CredentialsError(
            "not running in a pod (KUBERNETES_SERVICE_HOST/PORT unset): pass --kubeconfig"
        )
    token_path, ca_path = account_dir / "token", account_dir / "ca.crt"
    for required in (token_path, ca_path):
        if not required.is_file():
            raise CredentialsError(f"service-account file {required} is missing")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    auth = FileToken(token_path)
    auth()  # fail now, not at the first call, when the token is unreadable
    return ApiConnection(
        f"https://{host}:{port}",
        tls=tls_context(ca_file=str(ca_path)),
        auth=auth,
        timeout_s=timeout_s,
    )


def _check_kubeconfig(path: str) -> None:
    """Refuse a kubeconfig that is not a bounded regular file holding one YAML mapping, before
    the `kubernetes` loader (which reads without limits) sees it."""
    from knd.api.documents import DocumentError, parse_documents  # noqa: PLC0415 - imports yaml

    try:
        docs = parse_documents(read_bounded(path, MAX_KUBECONFIG_BYTES), f"kubeconfig {path}")
    except OSError as exc:
        raise CredentialsError(f"kubeconfig {exc}") from exc
    except DocumentError as exc:
        raise CredentialsError(str(exc)) from exc
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise CredentialsError(f"kubeconfig {path}: not a YAML mapping")


def connect_kubeconfig(
    path: str, context: str | None = None, timeout_s: float = 10.0
) -> ApiConnection:
    """Credentials of a kubeconfig file (its current context unless `context` is given),
    resolved by the `kubernetes` package's loader (imported here only)."""
    _check_kubeconfig(path)
    try:
        from kubernetes import client, config  # noqa: PLC0415 - ~37 MB; only for kubeconfig users
    except ImportError as exc:  # an optional extra: the image leaves it out
        raise CredentialsError(
            f"kubeconfig {path}: --kubeconfig needs the `kubernetes` package "
            "(pip install 'knd[kubeconfig]'); in a pod knd uses in-cluster credentials"
        ) from exc

    cfg: Any = client.Configuration()
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, client_configuration=cfg
        )
    except Exception as exc:  # the loader raises anything on odd input (TypeError, KeyError...)
        raise CredentialsError(f"kubeconfig {path}: {exc or type(exc).__name__}") from exc

    def auth() -> str | None:
        settings = cfg.auth_settings().get("BearerToken")
        return str(settings["value"]) if settings and settings.get("value") else None

    tls = None
    if str(cfg.host).startswith("https"):
        tls = tls_context(
            ca_file=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            verify=bool(cfg.verify_ssl),
        )
    return ApiConnection(
        str(cfg.host),
        tls=tls,
        tls_server_name=cfg.tls_server_name or None,
        auth=auth,
        timeout_s=timeout_s,
    )


def connect(*, apiserver: str = "", kubeconfig: str = "", timeout_s: float = 10.0) -> ApiConnection:
    """The daemon's rule: an explicit URL (lab), else a kubeconfig file, else in-cluster."""
    if apiserver:
        return connect_url(apiserver, timeout_s)
    if kubeconfig:
        return connect_kubeconfig(kubeconfig, timeout_s=timeout_s)
    return connect_in_cluster(timeout_s=timeout_s)
