"""NRI connection bounds: a peer flooding requests is cut off at MAX_IN_FLIGHT with a logged
reason and its queued requests freed; stray responses are logged at a bounded rate."""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from knd.nri import connection as nc
from knd.nri import mux, ttrpc
from knd.nri.connection import IncomingRequest, NriConnection, Reply

pytestmark = pytest.mark.unit


def _request(sid: int, payload: bytes = b"x" * 1024) -> bytes:
    msg = ttrpc.request_bytes(sid, "nri.pkg.api.v1alpha1.Plugin", "StateChange", payload, 0)
    return b"".join(mux.frames_for_message(mux.PLUGIN_SERVICE_CONN, msg))


def _stray_response(sid: int) -> bytes:
    msg = ttrpc.response_bytes(sid, b"late")
    return b"".join(mux.frames_for_message(mux.RUNTIME_SERVICE_CONN, msg))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    try:
        yield ours, theirs
    finally:
        theirs.close()


def test_request_flood_closes_the_connection_and_frees_the_queue(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    ours, theirs = pair
    release = threading.Event()
    served: list[str] = []

    def slow(req: IncomingRequest) -> Reply:
        served.append(req.method)
        release.wait(30)
        return Reply()

    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        conn = NriConnection(ours, slow, name="flood")
        with caplog.at_level(logging.WARNING, logger="knd.nri.connection"):
            conn.start()
            sender = threading.Thread(
                target=lambda: _send_quietly(theirs, (2 * i + 1 for i in range(5000))),
                daemon=True,
            )
            sender.start()
            assert conn.wait_closed(30), "a flooding peer must be cut off"
        release.set()
        conn.join(10)
        sender.join(10)
        assert "in flight" in conn.close_reason
        assert any("in flight" in r.getMessage() for r in caplog.records)
        assert conn._work.qsize() <= 1  # only the stop marker may remain
        assert len(served) <= 1  # the handler was blocked; nothing else ran
        del conn
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # 5000 KiB were sent; at most the bound (64 KiB of payload) was ever held, now freed.
    assert after - before < 1024 * 1024


def _send_quietly(sock: socket.socket, sids: Iterator[int]) -> None:
    try:
        for sid in sids:
            sock.sendall(_request(sid))
    except OSError:
        pass  # the connection was closed on us: expected


def test_within_the_bound_everything_is_served(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    conn = NriConnection(ours, lambda _r: Reply(), name="ok")
    conn.start()
    try:
        for i in range(nc.MAX_IN_FLIGHT):
            theirs.sendall(_request(2 * i + 1))
        decoder, trunk = ttrpc.MessageDecoder(), mux.MuxDecoder()
        answered = 0
        theirs.settimeout(30)
        while answered < nc.MAX_IN_FLIGHT:
            for frame in trunk.feed(theirs.recv(65536)):
                answered += len(decoder.feed(frame.payload))
        assert not conn.closed
        assert conn.in_flight == 0
    finally:
        conn.close()
        conn.join(5)


def test_stray_responses_are_logged_at_a_bounded_rate(
    pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    ours, theirs = pair
    conn = NriConnection(ours, lambda _r: Reply(), name="stray")
    with caplog.at_level(logging.INFO, logger="knd.nri.connection"):
        conn.start()
        start = time.monotonic()
        for i in range(2000):
            theirs.sendall(_stray_response(2 * i + 1))
        end = time.monotonic() + 30
        while conn.stray_responses < 2000 and time.monotonic() < end:
            time.sleep(0.01)
        elapsed = time.monotonic() - start
    conn.close()
    conn.join(5)
    assert conn.stray_responses == 2000
    lines = [r for r in caplog.records if "unknown/expired" in r.getMessage()]
    # One line, plus one per full interval that passed (no timing assumption beyond that).
    assert 1 <= len(lines) <= 1 + int(elapsed / conn.stray_log_interval_s) + 1
