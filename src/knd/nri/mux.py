"""The NRI connection multiplexer (containerd/nri pkg/net/multiplex) as a pure codec.

Wire: every frame is an 8-byte header (conn id uint32 BE, payload length uint32 BE) followed by
the payload; conn 0 is reserved, 1 = PluginServiceConn (runtime -> plugin ttrpc), 2 =
RuntimeServiceConn (plugin -> runtime ttrpc). Payloads of one conn form a byte stream.

Sender rule (the Go reader reads a conn through a 4096-byte buffer and fails the whole
connection when a single frame exceeds the caller's buffer): `frames_for_message` emits one ttrpc
message either as one frame (<= 4096 bytes) or as a first frame of exactly 4096 bytes followed by
the rest, exactly like the Go writer; a frame never holds bytes of two messages.

Decoder contract: `MuxDecoder.feed` returns complete frames and raises `ProtocolError` on a
reserved conn id or a payload longer than `MAX_PAYLOAD`; it never allocates more than one frame
plus one header ahead, so hostile length fields cannot balloon memory. Pure; no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from knd.nri.errors import ProtocolError

HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size  # 8

RESERVED_CONN = 0
PLUGIN_SERVICE_CONN = 1
RUNTIME_SERVICE_CONN = 2

TTRPC_MAX_DATA = 4 << 20  # 4 MiB ttrpc message data limit
MAX_PAYLOAD = 10 + TTRPC_MAX_DATA  # one whole ttrpc message (header + data)
GO_READ_BUFFER = 4096  # the Go side's bufio reader size


@dataclass(frozen=True, slots=True)
class Frame:
    conn_id: int
    payload: bytes


def encode_frame(conn_id: int, payload: bytes) -> bytes:
    """One mux frame. Raises ValueError for conn 0 or an oversized payload (a local bug)."""
    if conn_id == RESERVED_CONN or not 0 < conn_id <= 0xFFFFFFFF:
        raise ValueError(f"invalid mux conn id {conn_id}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"mux payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(conn_id, len(payload)) + payload


def frames_for_message(conn_id: int, message: bytes) -> list[bytes]:
    """Mux frames for one whole ttrpc message (header + data), Go's split pattern."""
    if len(message) <= GO_READ_BUFFER:
        return [encode_frame(conn_id, message)]
    out = [encode_frame(conn_id, message[:GO_READ_BUFFER])]
    rest = message[GO_READ_BUFFER:]
    while rest:
        out.append(encode_frame(conn_id, rest[:MAX_PAYLOAD]))
        rest = rest[MAX_PAYLOAD:]
    return out


class MuxDecoder:
    """Incremental trunk decoder: feed raw socket bytes, get whole frames back."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet returned as a frame (a truncated tail at EOF)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= HEADER_SIZE:
            conn_id, length = HEADER.unpack_from(self._buf, 0)
            if conn_id == RESERVED_CONN:
                raise ProtocolError("mux frame for reserved conn id 0")
            if length > self._max:
                raise ProtocolError(f"mux frame of {length} bytes exceeds {self._max}")
            end = HEADER_SIZE + length
            if len(self._buf) < end:
                break
            frames.append(Frame(conn_id, bytes(self._buf[HEADER_SIZE:end])))
            del self._buf[:end]
        return frames
