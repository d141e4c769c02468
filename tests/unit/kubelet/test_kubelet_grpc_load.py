"""The DRA gRPC server under load and hostile bytes: 100 open health streams never starve
NodePrepareResources; undecodable requests get a status code and the server keeps serving.
Also the fuzz target for the gRPC handlers (raw bytes to every method)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubelet_claims import DRIVER
from tests.fuzz_budget import fuzz

from knd._proto.kubelet import dra_v1_pb2
from knd._proto.kubelet import health_v1alpha1_pb2 as hpb
from knd.kubelet import wire
from knd.kubelet.health import HealthMonitor
from knd.kubelet.plugin import KubeletPlugin
from knd.kubelet.types import ClaimRef, DeviceHealthState, PreparedDevice, PrepareResult

pytestmark = pytest.mark.unit

WORKERS = 8
STREAMS = 4
#: Kubelet's own budget for one NodePrepareResources call.
KUBELET_BUDGET_S = 45


class EchoPreparer:
    """Prepares every claim with one device named after it; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        self.calls += 1
        return {c.uid: PrepareResult(devices=(PreparedDevice("p", c.name),)) for c in claims}

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        self.calls += 1
        return {c.uid: "" for c in claims}


class StaticHealth:
    def snapshot(self) -> list[DeviceHealthState]:
        return [DeviceHealthState("p", "eth1", True, "ok")]


def _serve(root: Path) -> tuple[KubeletPlugin, HealthMonitor, EchoPreparer]:
    monitor = HealthMonitor(StaticHealth(), poll_s=0.2, resend_s=1.0, max_streams=STREAMS)
    preparer = EchoPreparer()
    plugin = KubeletPlugin(DRIVER, preparer, root, health=monitor, max_workers=WORKERS)
    plugin.start()
    return plugin, monitor, preparer


@pytest.fixture
def served(kroot: Path) -> Iterator[tuple[KubeletPlugin, HealthMonitor, EchoPreparer]]:
    plugin, monitor, preparer = _serve(kroot)
    try:
        yield plugin, monitor, preparer
    finally:
        plugin.stop(grace=0)


def _prepare(channel: grpc.Channel, uid: str = "u1") -> Any:
    call = channel.unary_unary(
        wire.method(wire.DRA_V1_SERVICE, wire.PREPARE),
        request_serializer=dra_v1_pb2.NodePrepareResourcesRequest.SerializeToString,
        response_deserializer=dra_v1_pb2.NodePrepareResourcesResponse.FromString,
    )
    req = dra_v1_pb2.NodePrepareResourcesRequest(
        claims=[dra_v1_pb2.Claim(namespace="ns", uid=uid, name="c1")]
    )
    return call(req, timeout=KUBELET_BUDGET_S)


def _grpc_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("knd-grpc"))


def _wait(cond: Any, timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def test_prepare_answers_with_100_open_health_streams(
    served: tuple[KubeletPlugin, HealthMonitor, EchoPreparer],
) -> None:
    plugin, monitor, preparer = served
    channel = grpc.insecure_channel(f"unix://{plugin.paths.dra}")
    watch = channel.unary_stream(
        wire.method(wire.HEALTH_V1ALPHA1_SERVICE, wire.WATCH),
        request_serializer=hpb.NodeWatchResourcesRequest.SerializeToString,
        response_deserializer=hpb.NodeWatchResourcesResponse.FromString,
    )
    streams = [watch(hpb.NodeWatchResourcesRequest()) for _ in range(100)]
    try:
        # The newest stream is served (kubelet reconnecting always wins).
        first = next(streams[-1])
        assert [d.device.device_name for d in first.devices] == ["eth1"]
        # Prepare is answered while 100 streams are open (the call's deadline is kubelet's).
        response = _prepare(channel)
        assert response.claims["u1"].devices[0].device_name == "c1"
        assert preparer.calls == 1
        assert monitor.open_streams <= STREAMS
        assert _grpc_threads() <= WORKERS + STREAMS
    finally:
        for s in streams:
            s.cancel()
    # Streams whose client left release their threads (no 5 s resend wait).
    assert _wait(lambda: monitor.open_streams == 0)
    assert _prepare(channel).claims["u1"].devices
    channel.close()


def test_undecodable_requests_get_a_status_code(
    served: tuple[KubeletPlugin, HealthMonitor, EchoPreparer],
) -> None:
    plugin, _, preparer = served
    with grpc.insecure_channel(f"unix://{plugin.paths.dra}") as channel:
        for method in METHODS:
            raw = channel.unary_unary(method)
            with pytest.raises(grpc.RpcError) as info:
                raw(b"\xff\xff\xff\xff", timeout=KUBELET_BUDGET_S)
            assert info.value.code() != grpc.StatusCode.OK
        assert preparer.calls == 0  # nothing reached the preparer
        assert _prepare(channel).claims["u1"].devices  # and the server still serves


METHODS = [
    wire.method(svc, m)
    for svc in (wire.DRA_V1_SERVICE, wire.DRA_V1BETA1_SERVICE)
    for m in (wire.PREPARE, wire.UNPREPARE)
] + [wire.method(wire.HEALTH_V1ALPHA1_SERVICE, wire.WATCH), "/bogus.Service/Nope"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeletPlugin, Any]]:
    root = tmp_path_factory.mktemp("kubelet")
    plugin, _, _ = _serve(root)
    channel = grpc.insecure_channel(f"unix://{plugin.paths.dra}")
    try:
        yield plugin, channel
    finally:
        channel.close()
        plugin.stop(grace=0)


@fuzz(0.5)
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=2048))
def test_fuzz_raw_bytes_to_every_method(
    fuzz_server: tuple[KubeletPlugin, Any], method: str, payload: bytes
) -> None:
    """Any bytes to any method: a response or a status code, never a dead server."""
    _, channel = fuzz_server
    if method.endswith(wire.WATCH):
        call = channel.unary_stream(method)(payload, timeout=KUBELET_BUDGET_S)
        try:
            next(call)
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.OK
        finally:
            call.cancel()
        return
    try:
        channel.unary_unary(method)(payload, timeout=KUBELET_BUDGET_S)
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED)
