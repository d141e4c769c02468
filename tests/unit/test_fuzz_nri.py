"""Hypothesis fuzzing of the NRI decoders: random bytes and mutated real containerd frames.

Contract under test: decoders raise nothing but ProtocolError; a live connection fed hostile
bytes either keeps serving or closes with a reason, and no exception escapes its threads; the
plugin's dispatcher answers every (possibly garbage) request with a Reply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knd._proto import nri_pb2
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
