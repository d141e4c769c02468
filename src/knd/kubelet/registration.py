"""Kubelet plugin registration: the `pluginregistration.Registration` server on `<driver>-reg.sock`.

Kubelet's plugin watcher sees the socket appear in `<kubelet-root>/plugins_registry`, calls
GetInfo (1 s timeout) and then NotifyRegistrationStatus (5 s timeout). GetInfo answers type
`DRAPlugin`, the driver name, the DRA endpoint path and the supported services in preference order.

A refusal (`plugin_registered=false`) is logged with kubelet's reason and never crashes the
plugin: the registration socket is re-created after a backoff (1 s doubling to 30 s), which
makes the watcher try again from scratch. The server keeps running for the plugin's lifetime
(newer kubelets re-probe it).

A socket file removed by someone else (a cleanup of `plugins_registry`, an operator) makes the
kubelet deregister the driver, and nothing would ever register it again. A watcher thread
checks the path every `WATCH_INTERVAL_S` (one lstat) and re-creates the socket within that
interval when the path is gone, so the plugin watcher registers the driver again. It only
re-creates a missing path: anything else found there (another socket, a file) is left alone.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from knd._proto.kubelet import pluginregistration_v1_pb2 as pb
from knd.kubelet import sockets, wire

log = logging.getLogger(__name__)

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 30.0
#: How often the socket path is checked for having been removed (one lstat per check).
WATCH_INTERVAL_S = 2.0


class RegistrationServer:
    """Serves GetInfo/NotifyRegistrationStatus for one driver; tracks the kubelet's verdict."""

    def __init__(
        self,
        driver: str,
        socket_path: Path,
        endpoint: Path,
        supported_versions: tuple[str, ...] = wire.SUPPORTED_VERSIONS,
    ) -> None:
        self.driver = driver
        self.socket_path = socket_path
        self.endpoint = endpoint
        self.supported_versions = supported_versions
        self.registered = threading.Event()
        self.last_error = ""
        self.refusals = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._retry: threading.Timer | None = None
        self._stopped = False
        self.recreated = 0  # times the socket was re-created after someone removed it
        self._halt = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- gRPC methods ------------------------------------------------------------------------
    def _get_info(self, _request: Any, _context: grpc.ServicerContext) -> pb.PluginInfo:
        return pb.PluginInfo(
            type=wire.PLUGIN_TYPE,
            name=self.driver,
            endpoint=str(self.endpoint),
            supported_versions=list(self.supported_versions),
        )

    def _notify(
        self, request: pb.RegistrationStatus, _context: grpc.ServicerContext
    ) -> pb.RegistrationStatusResponse:
        if request.plugin_registered:
            log.info("kubelet registered driver %s (endpoint %s)", self.driver, self.endpoint)
            self.last_error = ""
            self.registered.set()
        else:
            with self._lock:
                self.refusals += 1
                self.last_error = request.error or "(kubelet gave no reason)"
                delay = min(RETRY_MAX_S, RETRY_INITIAL_S * 2 ** (self.refusals - 1))
                log.warning(
                    "kubelet refused registration of %s: %s; re-registering in %.0f s",
                    self.driver,
                    self.last_error,
                    delay,
                )
                self.registered.clear()
                self._schedule_rebind(delay)
        return pb.RegistrationStatusResponse()

    # -- lifecycle ---------------------------------------------------------------------------
    def _handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            wire.REGISTRATION_SERVICE,
            {
                wire.GET_INFO: grpc.unary_unary_rpc_method_handler(
                    self._get_info,
                    request_deserializer=pb.InfoRequest.FromString,
                    response_serializer=pb.PluginInfo.SerializeToString,
                ),
                wire.NOTIFY: grpc.unary_unary_rpc_method_handler(
                    self._notify,
                    request_deserializer=pb.RegistrationStatus.FromString,
                    response_serializer=pb.RegistrationStatusResponse.SerializeToString,
                ),
            },
        )

    def _bind(self) -> None:
        uri = sockets.prepare_socket_path(self.socket_path)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((self._handler(),))
        server.add_insecure_port(uri)
        server.start()
        sockets.restrict(self.socket_path)
        self._server = server

    def _unbind(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.2).wait()
            self._server = None
        sockets.remove_socket(self.socket_path)

    def _schedule_rebind(self, delay: float) -> None:
        if self._retry is not None or self._stopped:
            return

        def rebind() -> None:
            with self._lock:
                self._retry = None
                if self._stopped:
                    return
                self._unbind()
                self._bind()

        self._retry = threading.Timer(delay, rebind)
        self._retry.daemon = True
        self._retry.start()

    def _recreate_if_removed(self) -> None:
        with self._lock:
            if self._stopped or self._retry is not None or self._server is None:
                return
            try:
                self.socket_path.lstat()
                return
            except FileNotFoundError:
                pass
            log.warning(
                "registration socket %s was removed (the kubelet deregistered %s); re-creating it",
                self.socket_path,
                self.driver,
            )
            self.registered.clear()
            self._unbind()
            self._bind()
            self.recreated += 1

    def _watch(self) -> None:
        while not self._halt.wait(WATCH_INTERVAL_S):
            try:
                self._recreate_if_removed()
            except Exception:  # never let the watcher die: log and keep checking
                log.exception("re-creating registration socket %s failed", self.socket_path)

    def start(self) -> None:
        """Bind the registration socket (removing a stale one), serve, and watch the path."""
        with self._lock:
            self._stopped = False
            self._bind()
            self._halt.clear()
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="knd-registration-watch", daemon=True
                )
                self._watcher.start()

    def stop(self) -> None:
        """Stop serving and remove the socket (this is how a plugin deregisters)."""
        self._halt.set()
        with self._lock:
            self._stopped = True
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            self._unbind()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)
