"""Hypothesis fuzzing of the NRI decoders: random bytes and mutated real containerd frames.

Contract under test: decoders raise nothing but ProtocolError; a live connection fed hostile
bytes either keeps serving or closes with a reason, and no exception escapes its threads; the
plugin's dispatcher, driving knd's real hooks (knd.driver.hooks over a real SQLite store with
plans) over a fake netns layer, answers every request — well-formed pod events for known and
unknown pods, mutated and garbage payloads — with a Reply: Stop/Remove never fail the
runtime, a refused RunPodSandbox carries a message, and the netns layer only ever receives the
requesting pod's own plans.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knd._proto import nri_pb2
from knd.api.config import decode
from knd.driver.hooks import NetworkHooks, NullLeases, NullStatus
from knd.driver.metrics import DriverMetrics
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.netns.attach import Attached
from knd.netns.builder import build_plan
from knd.netns.detach import Detached
from knd.netns.errors import AttachError
from knd.netns.hoststate import HostState
from knd.netns.plan import AttachPlan, HostSide
from knd.nri import mux, ttrpc
from knd.nri.connection import IncomingRequest, NriConnection, Reply
from knd.nri.errors import ProtocolError
from knd.nri.handler import NullHandler
from knd.nri.plugin import PLUGIN_SERVICE, NriPlugin
from tests.fuzz_budget import fuzz

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"
REAL = [(DATA / n).read_bytes() for n in ("containerd-2.1.9.trunk", "containerd-1.7.24.trunk")]
SETTINGS = fuzz(2.5)


def _decode_all(data: bytes, chunk: int) -> None:
    trunk = mux.MuxDecoder()
    decoders = {c: ttrpc.MessageDecoder() for c in (1, 2)}
    for i in range(0, len(data), chunk):
        for f in trunk.feed(data[i : i + chunk]):
            if f.conn_id not in decoders:
                continue
            for m in decoders[f.conn_id].feed(f.payload):
                if m.type == ttrpc.MsgType.REQUEST:
                    ttrpc.decode_request(m.data)
                else:
                    ttrpc.decode_response(m.data)


@st.composite
def mutated_real(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@SETTINGS
@given(data=st.binary(max_size=4096), chunk=st.integers(1, 512))
def test_random_bytes_only_raise_protocol_error(data: bytes, chunk: int) -> None:
    with contextlib.suppress(ProtocolError):
        _decode_all(data, chunk)


@SETTINGS
@given(data=mutated_real(), chunk=st.integers(1, 4096))
def test_mutated_real_frames_only_raise_protocol_error(data: bytes, chunk: int) -> None:
    with contextlib.suppress(ProtocolError):
        _decode_all(data, chunk)


KNOWN_PODS = ("fuzz-pod-a", "fuzz-pod-b")


class FakeNetns:
    """The netns layer, recorded; `fail_next` makes the next attach fail at a step."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], str | None]] = []
        self.fail_next = False

    def attach(self, plans: Sequence[AttachPlan], netns: str) -> list[Attached]:
        assert netns, "attach without a netns path"
        self.calls.append(("attach", tuple(p.pod_uid for p in plans), netns))
        if self.fail_next:
            self.fail_next = False
            raise AttachError(plans[0].device, "address", OSError(17, "injected"))
        return [Attached(p.device, p.pod.name if p.pod else None, None, ()) for p in plans]

    def detach(self, plans: Sequence[AttachPlan], netns: str | None) -> list[Detached]:
        self.calls.append(("detach", tuple(p.pod_uid for p in plans), netns))
        return [Detached(p.device, "returned") for p in plans]


@pytest.fixture(scope="module")
def real_hooks(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NriPlugin, FakeNetns, StateStore]]:
    store = StateStore(tmp_path_factory.mktemp("fuzz") / "state.db", boot_id="fuzz")
    for n, uid in enumerate(KNOWN_PODS):
        host = HostSide(
            name=f"eth{n + 1}", ifindex=n + 2, mac=f"02:00:00:00:00:0{n + 1}", mtu=1500, up=True
        )
        plan = build_plan(
            f"dev-{n}", uid, decode({"interface": {"name": "net1"}}), HostState(host=host)
        )
        store.save_prepared(
            ClaimRecord(f"claim-{n}", "ns", f"c{n}", uid, time.time(), {}),
            PodRecord(uid, "ns", f"p{n}"),
            [PlanRecord(f"claim-{n}", "node", f"dev-{n}", "nic", uid, json.loads(plan.to_json()))],
        )
    fake = FakeNetns()
    hooks = NetworkHooks(
        store=store,
        status=NullStatus(),
        metrics=DriverMetrics(),
        leases=NullLeases(),
        attach_fn=fake.attach,
        detach_fn=fake.detach,
        host_links=lambda: {"eth1"},
        netns_exists=lambda path: not path.endswith("gone"),
    )
    try:
        yield NriPlugin(hooks), fake, store
    finally:
        hooks.restorer.stop()
        store.close()


@st.composite
def pod_events(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(method, payload, pod uid): well-formed pod events, sometimes mutated."""
    uid = draw(st.one_of(st.sampled_from(KNOWN_PODS), st.text(max_size=40)))
    pod = nri_pb2.PodSandbox(id=draw(st.text(max_size=20)), uid=uid, name="p", namespace="ns")
    netns = draw(st.sampled_from(["/run/netns/cni-1", "/run/netns/gone", "", "x" * 300]))
    if netns or draw(st.booleans()):
        pod.linux.namespaces.add(type="network", path=netns)
    method = draw(
        st.sampled_from(["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
                         "CreateContainer", "Synchronize", "StateChange"])
    )  # fmt: skip
    if method in ("RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"):
        payload = nri_pb2.RunPodSandboxRequest(pod=pod).SerializeToString()
    elif method == "CreateContainer":
        req = nri_pb2.CreateContainerRequest(pod=pod)
        req.container.id, req.container.pod_sandbox_id = "c1", pod.id
        payload = req.SerializeToString()
    elif method == "Synchronize":
        payload = nri_pb2.SynchronizeRequest(pods=[pod]).SerializeToString()
    else:
        event = nri_pb2.Event.ValueType(draw(st.integers(0, 16)))
        payload = nri_pb2.StateChangeEvent(event=event, pod=pod).SerializeToString()
    if draw(st.booleans()):
        data = bytearray(payload)
        for _ in range(draw(st.integers(1, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        payload = bytes(data)
    return method, payload, uid


@SETTINGS
@given(event=pod_events(), fail=st.booleans())
def test_dispatcher_drives_the_real_hooks_safely(
    real_hooks: tuple[NriPlugin, FakeNetns, StateStore], event: tuple[str, bytes, str], fail: bool
) -> None:
    plugin, fake, store = real_hooks
    method, payload, _uid = event
    fake.fail_next = fail
    before = len(fake.calls)
    reply = plugin._dispatch(IncomingRequest(PLUGIN_SERVICE, method, payload, None))
    assert isinstance(reply, Reply)
    if method in ("StopPodSandbox", "RemovePodSandbox"):
        assert reply.code in (0, ttrpc.Code.INVALID_ARGUMENT)  # only an undecodable payload
    if reply.code:
        assert reply.payload == b"" and reply.message
    for kind, pods, netns in fake.calls[before:]:
        assert len(set(pods)) == 1 and pods[0] in KNOWN_PODS, pods  # one pod's own plans only
        if kind == "attach":
            assert netns
            if method == "Synchronize":  # a stopped sandbox (netns gone) is never healed
                assert not netns.endswith("gone")
    for uid in KNOWN_PODS:
        assert len(store.plans_for_pod(uid)) == 1  # the hooks never prune


@pytest.fixture(scope="module")
def dispatcher() -> NriPlugin:
    return NriPlugin(NullHandler())


@SETTINGS
@given(
    method=st.sampled_from(
        [
            "Configure",
            "Synchronize",
            "StateChange",
            "CreateContainer",
            "RunPodSandbox",
            "StopPodSandbox",
            "RemovePodSandbox",
            "Shutdown",
            "UpdateContainer",
            "Bogus",
        ]
    ),
    payload=st.binary(max_size=512),
)
def test_dispatcher_answers_garbage_payloads(
    dispatcher: NriPlugin, method: str, payload: bytes
) -> None:
    reply = dispatcher._dispatch(IncomingRequest(PLUGIN_SERVICE, method, payload, None))
    assert isinstance(reply, Reply)
    if reply.code:
        assert reply.payload == b""


@pytest.fixture
def escaped() -> Iterator[list[BaseException]]:
    seen: list[BaseException] = []
    old = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value or RuntimeError("?"))
    try:
        yield seen
    finally:
        threading.excepthook = old


@fuzz(0.3)
@given(data=st.one_of(mutated_real(), st.binary(max_size=2048)))
def test_live_connection_survives_hostile_bytes(escaped: list[BaseException], data: bytes) -> None:
    ours, theirs = socket.socketpair()
    conn = NriConnection(ours, NriPlugin(NullHandler())._dispatch, name="fuzz")
    conn.start()
    try:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)  # EOF after the garbage
        assert conn.wait_closed(5), "connection neither served nor closed"
        assert conn.close_reason
    finally:
        conn.close("test done")
        conn.join(2)
        theirs.close()
    time.sleep(0)  # let excepthook run if a thread died
    assert escaped == []


def test_real_session_replayed_into_a_live_connection_is_answered() -> None:
    """The recorded containerd 2.1.9 session, replayed: every request gets a Response."""
    ours, theirs = socket.socketpair()
    conn = NriConnection(ours, NriPlugin(NullHandler())._dispatch, name="replay")
    conn.start()
    try:
        theirs.sendall(REAL[0])
        theirs.settimeout(5)
        got = b""
        trunk, dec = mux.MuxDecoder(), ttrpc.MessageDecoder()
        answers: list[ttrpc.TtrpcMessage] = []
        while len(answers) < 8:
            got = theirs.recv(65536)
            assert got
            for f in trunk.feed(got):
                assert f.conn_id == 1
                answers += dec.feed(f.payload)
        assert [m.stream_id for m in answers] == [1, 3, 5, 7, 9, 11, 13, 15]
        statuses = [ttrpc.decode_response(m.data).status.code for m in answers]
        assert statuses == [0] * 8
        cfg = nri_pb2.ConfigureResponse()
        cfg.ParseFromString(ttrpc.decode_response(answers[0].data).payload)
        assert cfg.events == 0xF
    finally:
        conn.close()
        theirs.close()
