"""The kubelet plugin as a whole: DRA server (+ health) on `dra.sock`, then registration.

Start order follows kubelet's expectations: the DRA endpoint must answer before kubelet learns
about it, so `dra.sock` is bound first and `<driver>-reg.sock` last; stop is the reverse
(removing the registration socket deregisters). Callers load persisted state *before* start.

Threads: the gRPC executor has `max_workers` threads for prepare/unprepare plus one per health
stream the HealthMonitor allows (`max_streams`), so open health streams never take the threads
prepare needs. A request that does not decode is answered by gRPC with a status code
(INTERNAL), a message over 4 MiB with RESOURCE_EXHAUSTED; neither reaches the preparer.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc

from knd.kubelet import sockets
from knd.kubelet.dra_service import dra_handlers
from knd.kubelet.health import HealthMonitor
from knd.kubelet.registration import RegistrationServer
from knd.kubelet.types import ClaimPreparer

log = logging.getLogger(__name__)


class KubeletPlugin:
    """Owns the plugin's two sockets for one driver name under one kubelet root dir."""

    def __init__(
        self,
        driver: str,
        preparer: ClaimPreparer,
        kubelet_root: Path = sockets.DEFAULT_KUBELET_ROOT,
        health: HealthMonitor | None = None,
        max_workers: int = 8,
    ) -> None:
        self.driver = driver
        self.paths = sockets.PluginPaths.for_driver(driver, kubelet_root)
        self.preparer = preparer
        self.health = health
        self.max_workers = max_workers
        self.registration = RegistrationServer(driver, self.paths.registration, self.paths.dra)
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self.paths.dra.parent.mkdir(parents=True, exist_ok=True)
        self.paths.dra.parent.chmod(0o700)
        uri = sockets.prepare_socket_path(self.paths.dra)
        streams = self.health.max_streams if self.health is not None else 0
        pool = futures.ThreadPoolExecutor(
            max_workers=self.max_workers + streams, thread_name_prefix="knd-grpc"
        )
        server = grpc.server(pool)
        handlers = dra_handlers(self.preparer)
        if self.health is not None:
            self.health.start()
            handlers.append(self.health.handler())
        server.add_generic_rpc_handlers(tuple(handlers))
        server.add_insecure_port(uri)
        server.start()
        sockets.restrict(self.paths.dra)
        self._server = server
        self.registration.start()
        log.info("DRA plugin %s serving at %s", self.driver, self.paths.dra)

    def stop(self, grace: float = 2.0) -> None:
        self.registration.stop()
        if self.health is not None:
            self.health.stop()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        sockets.remove_socket(self.paths.dra)
