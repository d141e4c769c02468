"""A kubelet emulator for the DRA plugin path (EMULATED: no real kubelet on these machines).

Does what kubelet's plugin watcher and DRA manager do on the wire, with the same protos:

1. watches `<root>/plugins_registry` for socket files (names starting with `.` ignored);
2. dials a new socket, calls GetInfo (1 s timeout), checks type `DRAPlugin`, picks the first
   entry of the plugin's supported_versions that this kubelet supports (a 1.34+ kubelet knows
   `v1.DRAPlugin` and `v1beta1.DRAPlugin`; a 1.32/1.33 kubelet only v1beta1), and answers
   NotifyRegistrationStatus (5 s timeout) with success or the refusal reason;
3. calls NodePrepareResources / NodeUnprepareResources (45 s timeout) in the chosen or an
   explicitly requested version, and opens the NodeWatchResources health stream.

Like kubelet's DRA plugin client, the DRA calls reuse one gRPC connection per registered
endpoint (dialled on first use); a new registration of the endpoint, `forget`, `stop` or a call
that fails with UNAVAILABLE drops it, so the next call dials afresh. (Dialling per call would add
a connection set-up that kubelet does not pay to every prepare measured through the emulator.)

The watcher polls the directory (every 50 ms) instead of using inotify; that is the only
liberty taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from knd._proto.kubelet import dra_v1_pb2, dra_v1beta1_pb2, health_v1alpha1_pb2
from knd._proto.kubelet import pluginregistration_v1_pb2 as regpb
from knd.kubelet import wire

DRA_SERVICES: dict[str, tuple[str, ModuleType]] = {
    "v1.DRAPlugin": (wire.DRA_V1_SERVICE, dra_v1_pb2),
    "v1beta1.DRAPlugin": (wire.DRA_V1BETA1_SERVICE, dra_v1beta1_pb2),
}


@dataclass
class RegisteredPlugin:
    """What the emulated kubelet learned from a registration handshake."""

    name: str
    endpoint: str
    version: str
    supported: tuple[str, ...]
    socket: Path


@dataclass
class KubeletEmulator:
    """Emulated kubelet for one root dir. `supported` = DRA versions this kubelet speaks."""

    root: Path
    supported: tuple[str, ...] = ("v1.DRAPlugin", "v1beta1.DRAPlugin")
    refuse_with: str = ""  # non-empty: refuse every registration with this reason
    plugins: dict[str, RegisteredPlugin] = field(default_factory=dict)
    attempts: int = 0
    _seen: dict[Path, float] = field(default_factory=dict)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def registry(self) -> Path:
        return self.root / "plugins_registry"

    # -- registration ------------------------------------------------------------------------
    def scan_once(self) -> None:
        """Register every new (or re-created) socket in the registry directory."""
        if not self.registry.is_dir():
            return
        for path in sorted(self.registry.iterdir()):
            if path.name.startswith(".") or not path.is_socket():
                continue
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if self._seen.get(path) == mtime:
                continue
            self._seen[path] = mtime
            self._register(path)

    def _register(self, path: Path) -> None:
        with self._cond:
            self.attempts += 1
        with grpc.insecure_channel(f"unix://{path}") as channel:
            get_info = channel.unary_unary(
                wire.method(wire.REGISTRATION_SERVICE, wire.GET_INFO),
                request_serializer=regpb.InfoRequest.SerializeToString,
                response_deserializer=regpb.PluginInfo.FromString,
            )
            notify = channel.unary_unary(
                wire.method(wire.REGISTRATION_SERVICE, wire.NOTIFY),
                request_serializer=regpb.RegistrationStatus.SerializeToString,
                response_deserializer=regpb.RegistrationStatusResponse.FromString,
            )
            info = get_info(regpb.InfoRequest(), timeout=1)
            error = ""
            version = ""
            if info.type != wire.PLUGIN_TYPE:
                error = f"unsupported plugin type {info.type!r}"
            else:
                version = next((v for v in info.supported_versions if v in self.supported), "")
                if not version:
                    error = (
                        f"none of the versions {list(info.supported_versions)} is supported "
                        f"by this kubelet ({list(self.supported)})"
                    )
            if not error and self.refuse_with:
                error = self.refuse_with
            if not error:
                self._drop_channel(info.endpoint or str(path))
                with self._cond:
                    self.plugins[info.name] = RegisteredPlugin(
                        info.name,
                        info.endpoint or str(path),
                        version,
                        tuple(info.supported_versions),
                        path,
                    )
            notify(regpb.RegistrationStatus(plugin_registered=not error, error=error), timeout=5)
            with self._cond:
                self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.scan_once()
            except grpc.RpcError:
                continue  # socket not answering yet; retried on the next change

    def start(self) -> KubeletEmulator:
        self._thread = threading.Thread(target=self._run, name="kubelet-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._cond:
            endpoints = list(self._channels)
        for endpoint in endpoints:
            self._drop_channel(endpoint)

    def forget(self, driver: str) -> None:
        """Drop a registration (as kubelet does when the registration socket disappears)."""
        with self._cond:
            plugin = self.plugins.pop(driver, None)
            if plugin is not None:
                self._seen.pop(plugin.socket, None)
        if plugin is not None:
            self._drop_channel(plugin.endpoint)

    def _channel(self, endpoint: str) -> grpc.Channel:
        with self._cond:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = grpc.insecure_channel(f"unix://{endpoint}")
                self._channels[endpoint] = channel
            return channel

    def _drop_channel(self, endpoint: str) -> None:
        with self._cond:
            channel = self._channels.pop(endpoint, None)
        if channel is not None:
            channel.close()

    def _unary(
        self, endpoint: str, method: str, pb_in: Any, pb_out: Any, request: Any, timeout: float
    ) -> Any:
        call = self._channel(endpoint).unary_unary(
            method,
            request_serializer=pb_in.SerializeToString,
            response_deserializer=pb_out.FromString,
        )
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self._drop_channel(endpoint)
            raise

    def wait_registered(self, driver: str, timeout: float = 10.0) -> RegisteredPlugin:
        deadline = time.monotonic() + timeout
        with self._cond:
            while driver not in self.plugins:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"driver {driver} did not register within {timeout} s")
                self._cond.wait(left)
            return self.plugins[driver]

    def wait_attempts(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.attempts < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {self.attempts} registration attempts")
                self._cond.wait(left)

    # -- DRA calls ---------------------------------------------------------------------------
    def _dra(self, driver: str, version: str | None) -> tuple[str, str, ModuleType]:
        plugin = self.plugins[driver]
        service, pb = DRA_SERVICES[version or plugin.version]
        return plugin.endpoint, service, pb

    def prepare(
        self,
        driver: str,
        claims: Sequence[tuple[str, str, str]],
        version: str | None = None,
        timeout: float = 45,
    ) -> Any:
        """NodePrepareResources for (namespace, uid, name) claims; returns the response."""
        endpoint, service, pb = self._dra(driver, version)
        request = pb.NodePrepareResourcesRequest(
            claims=[pb.Claim(namespace=ns, uid=uid, name=name) for ns, uid, name in claims]
        )
        return self._unary(
            endpoint,
            wire.method(service, wire.PREPARE),
            pb.NodePrepareResourcesRequest,
            pb.NodePrepareResourcesResponse,
            request,
            timeout,
        )

    def unprepare(
        self,
        driver: str,
        claims: Sequence[tuple[str, str, str]],
        version: str | None = None,
        timeout: float = 45,
    ) -> Any:
        endpoint, service, pb = self._dra(driver, version)
        request = pb.NodeUnprepareResourcesRequest(
            claims=[pb.Claim(namespace=ns, uid=uid, name=name) for ns, uid, name in claims]
        )
        return self._unary(
            endpoint,
            wire.method(service, wire.UNPREPARE),
            pb.NodeUnprepareResourcesRequest,
            pb.NodeUnprepareResourcesResponse,
            request,
            timeout,
        )

    def watch_health(
        self, driver: str, timeout: float = 60
    ) -> Generator[health_v1alpha1_pb2.NodeWatchResourcesResponse, None, None]:
        """The health stream (v1alpha1) of a registered driver; iterate to receive."""
        endpoint = self.plugins[driver].endpoint
        channel = grpc.insecure_channel(f"unix://{endpoint}")
        call = channel.unary_stream(
            wire.method(wire.HEALTH_V1ALPHA1_SERVICE, wire.WATCH),
            request_serializer=health_v1alpha1_pb2.NodeWatchResourcesRequest.SerializeToString,
            response_deserializer=health_v1alpha1_pb2.NodeWatchResourcesResponse.FromString,
        )
        stream = call(health_v1alpha1_pb2.NodeWatchResourcesRequest(), timeout=timeout)
        try:
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
        finally:
            stream.cancel()
            channel.close()
