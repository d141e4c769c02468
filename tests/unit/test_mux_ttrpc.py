"""Golden-frame unit tests of the mux and ttrpc codecs (knd.nri.mux, knd.nri.ttrpc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knd._proto import nri_pb2
from knd.nri import mux, ttrpc
from knd.nri.errors import ProtocolError

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"


def test_frame_header_is_conn_then_length_big_endian() -> None:
    assert mux.encode_frame(2, b"abc") == b"\x00\x00\x00\x02\x00\x00\x00\x03abc"


def test_ttrpc_request_golden_bytes() -> None:
    data = ttrpc.request_bytes(3, "S", "M", b"\x01", timeout_ns=5)
    # header: length 11, stream 3, type 1 (request), flags 0; then the protobuf envelope
    assert data[:10] == b"\x00\x00\x00\x0b\x00\x00\x00\x03\x01\x00"
    assert data[10:] == b"\x0a\x01S\x12\x01M\x1a\x01\x01\x20\x05"


def test_ttrpc_response_golden_bytes_ok_and_error() -> None:
    assert ttrpc.response_bytes(1, b"\x10\x0f") == b"\x00\x00\x00\x04\x00\x00\x00\x01\x02\x00" + (
        b"\x12\x02\x10\x0f"
    )
    err = ttrpc.response_bytes(5, b"ignored", code=12, message="method X")
    env = ttrpc.decode_response(err[10:])
    assert env.status.code == 12 and env.status.message == "method X" and env.payload == b""


@pytest.mark.parametrize(
    ("size", "expected"), [(4086, [4096]), (4087, [4096, 1]), (9000, [4096, 4914])]
)
def test_go_split_rule_never_exceeds_4096_in_first_frame(size: int, expected: list[int]) -> None:
    message = ttrpc.encode_message(1, 1, b"x" * size)
    frames = mux.frames_for_message(1, message)
    assert [len(f) - 8 for f in frames] == expected
    assert b"".join(f[8:] for f in frames) == message


def test_decoder_reassembles_byte_by_byte_and_interleaved() -> None:
    a = ttrpc.request_bytes(1, "svc", "A", b"a" * 5000)
    b = ttrpc.request_bytes(1, "svc", "B", b"")
    wire = mux.frames_for_message(1, a)
    stream = wire[0] + mux.encode_frame(2, b) + wire[1]
    trunk, d1, d2 = mux.MuxDecoder(), ttrpc.MessageDecoder(), ttrpc.MessageDecoder()
    got: dict[int, list[ttrpc.TtrpcMessage]] = {1: [], 2: []}
    for byte in stream:
        for f in trunk.feed(bytes([byte])):
            got[f.conn_id] += (d1 if f.conn_id == 1 else d2).feed(f.payload)
    assert [ttrpc.decode_request(m.data).method for m in got[1]] == ["A"]
    assert [ttrpc.decode_request(m.data).method for m in got[2]] == ["B"]
    assert trunk.pending == d1.pending == d2.pending == 0


def test_reserved_conn_and_oversize_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="reserved"):
        mux.MuxDecoder().feed(b"\x00\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(ProtocolError, match="exceeds"):
        mux.MuxDecoder().feed(b"\x00\x00\x00\x01\xff\xff\xff\xff")
    with pytest.raises(ProtocolError, match="exceeds"):
        ttrpc.MessageDecoder().feed(b"\x00\x41\x00\x00\x00\x00\x00\x01\x01\x00")
    with pytest.raises(ProtocolError, match="type 9"):
        ttrpc.MessageDecoder().feed(b"\x00\x00\x00\x00\x00\x00\x00\x01\x09\x00")
    with pytest.raises(ProtocolError, match="undecodable"):
        ttrpc.decode_request(b"\x0a\xff")  # length-delimited field running off the end


def _replay(name: str) -> list[tuple[int, ttrpc.TtrpcMessage]]:
    trunk = mux.MuxDecoder()
    decoders = {1: ttrpc.MessageDecoder(), 2: ttrpc.MessageDecoder()}
    out = []
    for f in trunk.feed((DATA / name).read_bytes()):
        out += [(f.conn_id, m) for m in decoders[f.conn_id].feed(f.payload)]
    assert trunk.pending == 0
    return out


@pytest.mark.parametrize("name", ["containerd-2.1.9.trunk", "containerd-1.7.24.trunk"])
def test_real_containerd_frames_decode(name: str) -> None:
    """Bytes recorded from real containerd sessions (a pod lifecycle, see docs/nri.md)."""
    msgs = _replay(name)
    (register_reply,) = [m for c, m in msgs if c == 2]
    assert register_reply.type == ttrpc.MsgType.RESPONSE and register_reply.stream_id == 1
    requests = [(m.stream_id, ttrpc.decode_request(m.data)) for c, m in msgs if c == 1]
    assert [sid for sid, _ in requests] == list(range(1, 2 * len(requests), 2))
    methods = [r.method for _, r in requests]
    assert methods[:2] == ["Configure", "Synchronize"] and "CreateContainer" in methods
    assert all(
        r.service == "nri.pkg.api.v1alpha1.Plugin" and r.timeout_nano > 0 for _, r in requests
    )
    cfg = nri_pb2.ConfigureRequest()
    cfg.ParseFromString(requests[0][1].payload)
    assert cfg.runtime_name == "containerd"
    sync = nri_pb2.SynchronizeRequest()
    sync.ParseFromString(requests[1][1].payload)
    assert [p.name for p in sync.pods] == ["pre"] and len(sync.containers) == 1
    events = []
    for _, r in requests:
        if r.method == "StateChange":
            ev = nri_pb2.StateChangeEvent()
            ev.ParseFromString(r.payload)
            events.append((nri_pb2.Event.Name(ev.event), ev.pod.name))
            if ev.event == nri_pb2.RUN_POD_SANDBOX:
                net = [n.path for n in ev.pod.linux.namespaces if n.type == "network"]
                assert net and net[0].endswith(tuple("0123456789abcdef"))
                assert ev.pod.uid == "00000000-0000-0000-0000-000000000002"
    assert events[:3] == [
        ("RUN_POD_SANDBOX", "golden"),
        ("STOP_POD_SANDBOX", "golden"),
        ("REMOVE_POD_SANDBOX", "golden"),
    ]
