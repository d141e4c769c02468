"""knd's NRI plugin: connect, register, serve the runtime, reconnect.

Lifecycle per connection (protocols.md §2.3): dial the runtime socket (or adopt the fd in
NRI_PLUGIN_SOCKET when the runtime launched us), start serving conn 1 *before* sending
RegisterPlugin on conn 2 (the runtime may send Configure before we read the register reply),
answer Configure with an explicit event mask valid for the runtime's NRI version, answer
Synchronize (joining split requests while `more` is set), then serve events. Events arrive as
StateChange (NRI < v0.12) or as dedicated methods (v0.12+); both reach the same handler method.
Every other method is answered UNIMPLEMENTED (12), which makes v0.12 runtimes fall back to
StateChange for those. Which events are subscribed, which method reaches which hook and what a
failing hook does are one table, `knd.nri.routes.EVENT_TABLE`.

When the connection drops (runtime restart: containerd never calls back) the plugin dials again
with exponential backoff (initial..max, reset after a successful registration). A plugin
started by the runtime (NRI_PLUGIN_SOCKET) cannot redial; it stops when its socket closes.

Threading: `NriPlugin.start()` runs the dial loop in one daemon thread; each connection adds a
reader and a worker thread (see knd.nri.connection). Hook handlers run on the worker thread.
Every dispatched method is timed through `HookTimer` (per method name, errors flagged).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import Message as PbMessage

from knd._proto import nri_pb2
from knd.nri import events as ev
from knd.nri import routes, ttrpc
from knd.nri.connection import IncomingRequest, NriConnection, Reply
from knd.nri.errors import CallError, ConnectionClosedError, HookError, ProtocolError
from knd.nri.handler import NriHandler
from knd.nri.timing import HookTimer
from knd.nri.types import (
    ContainerInfo,
    PodInfo,
    adjustment_to_pb,
    container_from_pb,
    pod_from_pb,
    update_to_pb,
)

log = logging.getLogger(__name__)

PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin"
RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime"
DEFAULT_SOCKET = "/var/run/nri/nri.sock"
ENV_SOCKET = "NRI_PLUGIN_SOCKET"
#: NRI's DefaultPluginRequestTimeout, which applies when Configure sends 0 (containerd 1.7)
DEFAULT_REQUEST_TIMEOUT_MS = 2000
KND_NRI_VERSION = "v0.8.0"  # the NRI API level knd's proto restates (plus v0.12 methods)

_NAME_RE = re.compile(r"[A-Za-z0-9_.+-]+")
_IDX_RE = re.compile(r"[0-9]{2}")

M = TypeVar("M", bound=PbMessage)


@dataclass(frozen=True, slots=True)
class PluginConfig:
    socket_path: str = DEFAULT_SOCKET
    name: str = "dra.net"
    index: str = "00"
    events: frozenset[ev.Event] = routes.DEFAULT_EVENTS
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    register_timeout_s: float = 5.0
    use_env_socket: bool = True

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"invalid NRI plugin name {self.name!r} (allowed: [A-Za-z0-9_.+-])")
        if not _IDX_RE.fullmatch(self.index):
            raise ValueError(f"invalid NRI plugin index {self.index!r} (two digits)")
        routes.check_subscription(self.events)


@dataclass(slots=True)
class RuntimeInfo:
    """What the runtime told us in Configure."""

    name: str = ""
    version: str = ""
    nri_version: tuple[int, int, int] | None = None
    request_timeout_ms: int = 0
    registration_timeout_ms: int = 0
    event_mask: int = 0


@dataclass(slots=True)
class _Session:
    runtime: RuntimeInfo = field(default_factory=RuntimeInfo)
    sync_pods: list[nri_pb2.PodSandbox] = field(default_factory=list)
    sync_containers: list[nri_pb2.Container] = field(default_factory=list)
    synchronized: threading.Event = field(default_factory=threading.Event)


def _decode(cls: type[M], data: bytes) -> M:
    msg = ttrpc.parse(cls, data, cls.DESCRIPTOR.name)
    assert isinstance(msg, cls)
    return msg


class NriPlugin:
    """Runs knd's NRI plugin against one runtime socket until `stop()`."""

    def __init__(
        self,
        handler: NriHandler,
        config: PluginConfig | None = None,
        timer: HookTimer | None = None,
    ) -> None:
        self.handler = handler
        self.config = config or PluginConfig()
        self.timer = timer or HookTimer()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: NriConnection | None = None
        self._session = _Session()
        self._routes = self._make_routes()
        self._lock = threading.Lock()
        self.registrations = 0  # successful RegisterPlugin calls (one per connection)
        self.hook_errors = 0  # swallowed Stop/Remove/Synchronize errors
        self.over_budget = 0  # hooks that took longer than the runtime's request timeout
        self.last_close_reason = ""

    # -- public ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nri-plugin", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.close("plugin stopping")
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def connected(self) -> bool:
        """Registered and synchronized on a connection that is still open (for /readyz)."""
        conn = self._conn
        return conn is not None and not conn.closed and self._session.synchronized.is_set()

    @property
    def runtime(self) -> RuntimeInfo:
        return self._session.runtime

    def wait_synchronized(self, timeout: float) -> bool:
        """Wait until the current (or next) connection has finished Synchronize."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._session.synchronized.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                return True
        return False

    def wait_registrations(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.registrations >= count and self._session.synchronized.is_set():
                return True
            time.sleep(0.02)
        return False

    # -- connection loop ---------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.config.backoff_initial_s
        env_fd = os.environ.get(ENV_SOCKET) if self.config.use_env_socket else None
        while not self._stop.is_set():
            try:
                sock = self._open(env_fd)
            except OSError as e:
                if env_fd is not None:
                    log.error("%s=%s is not a usable socket: %s", ENV_SOCKET, env_fd, e)
                    return
                log.debug("NRI socket %s not reachable: %s", self.config.socket_path, e)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            if self._serve(sock):
                backoff = self.config.backoff_initial_s
            if env_fd is not None:
                log.warning("runtime-provided NRI socket closed; cannot redial, stopping")
                return
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self.config.backoff_max_s)

    def _open(self, env_fd: str | None) -> socket.socket:
        if env_fd is not None:
            try:
                return socket.socket(fileno=int(env_fd))
            except ValueError as e:
                raise OSError(f"bad fd number: {e}") from e
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.config.socket_path)
        except OSError:
            sock.close()
            raise
        return sock

    def _serve(self, sock: socket.socket) -> bool:
        """One connection, start to close. True when registration succeeded."""
        with self._lock:
            self._session = _Session()
        self._routes = self._make_routes()
        conn = NriConnection(
            sock, self._dispatch, name=f"nri:{self.config.index}-{self.config.name}"
        )
        self._conn = conn
        conn.start()  # conn 1 is served before we register
        req = nri_pb2.RegisterPluginRequest(
            plugin_name=self.config.name, plugin_idx=self.config.index, NRI_version=KND_NRI_VERSION
        )
        try:
            conn.call(
                RUNTIME_SERVICE,
                "RegisterPlugin",
                req.SerializeToString(),
                self.config.register_timeout_s,
            )
        except (CallError, ConnectionClosedError, TimeoutError, OSError) as e:
            log.warning("NRI registration failed: %s", e)
            conn.close(f"registration failed: {e}")
            self.last_close_reason = conn.close_reason
            return False
        self.registrations += 1
        log.info("NRI plugin %s-%s registered", self.config.index, self.config.name)
        while not conn.wait_closed(0.5):
            if self._stop.is_set():
                conn.close("plugin stopping")
        self.last_close_reason = conn.close_reason
        log.warning("NRI connection closed: %s", conn.close_reason)
        conn.join(2.0)
        return True

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, req: IncomingRequest) -> Reply:
        if req.service != PLUGIN_SERVICE:
            return Reply(code=ttrpc.Code.UNIMPLEMENTED, message=f"service {req.service}")
        log.debug("NRI request %s", req.method)
        route = self._routes.get(req.method)
        if route is None:
            return Reply(code=ttrpc.Code.UNIMPLEMENTED, message=f"method {req.method}")
        try:
            return route(req.payload)
        except ProtocolError as e:  # an undecodable payload fails this call, not the connection
            log.warning("NRI %s: %s", req.method, e)
            return Reply(code=ttrpc.Code.INVALID_ARGUMENT, message=str(e))

    def _state_change(self, payload: bytes) -> Reply:
        sc = _decode(nri_pb2.StateChangeEvent, payload)
        spec = routes.BY_EVENT.get(ev.Event(sc.event)) if 0 < sc.event <= 14 else None
        if spec is None or spec.call is None:  # not a pod event of ours: acknowledge, ignore
            return Reply(nri_pb2.Empty().SerializeToString())
        reply = self._pod_event(spec, sc.pod)
        return reply if reply.code else Reply(nri_pb2.Empty().SerializeToString())

    def _configure(self, payload: bytes) -> Reply:
        with self.timer.measure("Configure"):
            cr = _decode(nri_pb2.ConfigureRequest, payload)
            version = ev.nri_version(cr.NRI_version, cr.runtime_name, cr.runtime_version)
            mask = ev.subscription_mask(self.config.events, version)
            self._session.runtime = RuntimeInfo(
                name=cr.runtime_name,
                version=cr.runtime_version,
                nri_version=version,
                request_timeout_ms=cr.request_timeout,
                registration_timeout_ms=cr.registration_timeout,
                event_mask=mask,
            )
            log.info(
                "NRI Configure from %s %s (NRI %s, request timeout %d ms): mask 0x%x",
                cr.runtime_name,
                cr.runtime_version,
                version,
                cr.request_timeout,
                mask,
            )
            return Reply(nri_pb2.ConfigureResponse(events=mask).SerializeToString())

    def _synchronize(self, payload: bytes) -> Reply:
        with self.timer.measure("Synchronize") as ok:
            sr = _decode(nri_pb2.SynchronizeRequest, payload)
            s = self._session
            s.sync_pods.extend(sr.pods)
            s.sync_containers.extend(sr.containers)
            if sr.more:
                return Reply(nri_pb2.SynchronizeResponse(more=True).SerializeToString())
            pods = [pod_from_pb(p) for p in s.sync_pods]
            containers = [container_from_pb(c) for c in s.sync_containers]
            s.sync_pods, s.sync_containers = [], []
            resp = nri_pb2.SynchronizeResponse(more=False)
            try:
                updates = self.handler.synchronize(pods, containers)
                resp.update.extend(update_to_pb(u) for u in updates)
            except Exception:  # routes.SYNCHRONIZE_FAILURE: log and succeed
                ok[0] = False
                self.hook_errors += 1
                del resp.update[:]
                log.exception("Synchronize handler failed (answered with success)")
            s.synchronized.set()
            return Reply(resp.SerializeToString())

    def _shutdown(self, _payload: bytes) -> Reply:
        log.info("runtime asked the NRI plugin to shut down")
        return Reply(nri_pb2.Empty().SerializeToString())

    def _make_routes(self) -> dict[str, Callable[[bytes], Reply]]:
        """Method name → handler: the control methods, then one per row of the event table."""
        table: dict[str, Callable[[bytes], Reply]] = {
            "Configure": self._configure,
            "Synchronize": self._synchronize,
            "Shutdown": self._shutdown,
            "StateChange": self._state_change,
        }
        for spec in routes.EVENT_TABLE:
            if spec.call is None:
                table[spec.method] = functools.partial(self._create_container, spec)
            else:
                table[spec.method] = functools.partial(self._dedicated, spec)
        return table

    def _dedicated(self, spec: routes.EventRoute, payload: bytes) -> Reply:
        # the pod events' request messages share one shape: field 1 = pod
        req = _decode(nri_pb2.RunPodSandboxRequest, payload)
        reply = self._pod_event(spec, req.pod)
        return reply if reply.code else Reply(b"")  # their responses are empty messages

    def _failed(self, spec: routes.EventRoute, exc: Exception, what: str) -> Reply:
        """The answer to a hook that raised, by the event's failure policy."""
        if spec.failure is routes.Failure.LOG_AND_SUCCEED:
            self.hook_errors += 1
            log.error(
                "%s hook failed for %s (not failing the runtime)",
                spec.method,
                what,
                exc_info=exc,
            )
            return Reply()
        code = exc.code if isinstance(exc, HookError) else ttrpc.Code.UNKNOWN
        log.warning("%s refused for %s: %s", spec.method, what, exc)
        return Reply(code=code, message=f"knd: {exc}")

    def _pod_event(self, spec: routes.EventRoute, pb_pod: nri_pb2.PodSandbox) -> Reply:
        assert spec.call is not None
        pod = pod_from_pb(pb_pod)
        what = f"pod {pod.namespace}/{pod.name}"
        with self._budgeted(spec.method, what), self.timer.measure(spec.method) as ok:
            try:
                spec.call(self.handler, pod)
            except Exception as e:
                ok[0] = False
                return self._failed(spec, e, what)
        return Reply()

    def _create_container(self, spec: routes.EventRoute, payload: bytes) -> Reply:
        req = _decode(nri_pb2.CreateContainerRequest, payload)
        pod = pod_from_pb(req.pod)
        container: ContainerInfo = container_from_pb(req.container)
        what = f"container {container.name} of pod {pod.namespace}/{pod.name}"
        with self._budgeted(spec.method, what), self.timer.measure(spec.method) as ok:
            try:
                adjust = self.handler.create_container(pod, container)
            except Exception as e:
                ok[0] = False
                return self._failed(spec, e, what)
            resp = nri_pb2.CreateContainerResponse(adjust=adjustment_to_pb(adjust))
            return Reply(resp.SerializeToString())

    @contextmanager
    def _budgeted(self, method: str, what: str) -> Iterator[None]:
        """Hold one hook to the runtime's request timeout. A hook past half of it is logged as
        a warning; one past all of it as an error and counted (`over_budget`): the runtime
        has then dropped the answer as if knd had said yes, and closes the connection (NRI's
        adaptation treats a deadline as fatal), so what knd answers late never applies; the
        reconnect's Synchronize catches up what it can (docs/nri.md, "Missed deadlines")."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - t0
            budget = (self.runtime.request_timeout_ms or DEFAULT_REQUEST_TIMEOUT_MS) / 1000
            if took > budget:
                self.over_budget += 1
                log.error(
                    "NRI %s for %s took %.2f s, over the runtime's %.2f s request timeout: the "
                    "runtime went on without knd's answer and closes knd's connection",
                    method,
                    what,
                    took,
                    budget,
                )
            elif took > budget / 2:
                log.warning(
                    "NRI %s for %s took %.2f s of the runtime's %.2f s request timeout",
                    method,
                    what,
                    took,
                    budget,
                )


__all__ = ["NriPlugin", "PluginConfig", "PodInfo", "RuntimeInfo"]
