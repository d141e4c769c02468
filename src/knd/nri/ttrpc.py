"""ttrpc (containerd/ttrpc protocol 1.2) message codec: 10-byte header + protobuf envelopes.

Header: data length uint32 BE (<= 4 MiB), stream id uint32 BE, type (1 Request, 2 Response,
3 Data), flags. NRI uses unary calls only: one Request (flags 0) and one Response on the same
odd stream id. Client stream ids are odd and strictly increasing.

Decoder contract: `MessageDecoder.feed` reassembles a conn's byte stream into whole messages
and raises `ProtocolError` for an oversized length or an unknown message type; envelope decoding
(`decode_request` / `decode_response`) raises `ProtocolError` for bytes that are not a valid
protobuf message. Pure; no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as PbMessage

from knd._proto import ttrpc_pb2
from knd.nri.errors import ProtocolError

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10
MAX_DATA = 4 << 20


class MsgType(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    DATA = 3


class Code(IntEnum):
    """gRPC status codes as used by ttrpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class TtrpcMessage:
    """One decoded ttrpc frame (header fields + raw data)."""

    stream_id: int
    type: int
    flags: int
    data: bytes


def encode_message(stream_id: int, mtype: int, data: bytes, flags: int = 0) -> bytes:
    if len(data) > MAX_DATA:
        raise ValueError(f"ttrpc message data of {len(data)} bytes exceeds {MAX_DATA}")
    return HEADER.pack(len(data), stream_id, mtype, flags) + data


class MessageDecoder:
    """Incremental decoder for one logical conn's byte stream."""

    def __init__(self, max_data: int = MAX_DATA) -> None:
        self._buf = bytearray()
        self._max = max_data

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[TtrpcMessage]:
        self._buf += data
        out: list[TtrpcMessage] = []
        while len(self._buf) >= HEADER_SIZE:
            length, sid, mtype, flags = HEADER.unpack_from(self._buf, 0)
            if length > self._max:
                raise ProtocolError(f"ttrpc message of {length} bytes exceeds {self._max}")
            if mtype not in (MsgType.REQUEST, MsgType.RESPONSE, MsgType.DATA):
                raise ProtocolError(f"ttrpc message type {mtype} unknown")
            end = HEADER_SIZE + length
            if len(self._buf) < end:
                break
            out.append(TtrpcMessage(sid, mtype, flags, bytes(self._buf[HEADER_SIZE:end])))
            del self._buf[:end]
        return out


def parse(message_type: type[PbMessage], data: bytes, what: str) -> PbMessage:
    """Decode protobuf `data` as `message_type`, mapping every failure to ProtocolError."""
    msg = message_type()
    try:
        msg.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:  # upb raises DecodeError; be broad
        raise ProtocolError(f"undecodable {what}: {e}") from e
    return msg


def decode_request(data: bytes) -> ttrpc_pb2.Request:
    req = parse(ttrpc_pb2.Request, data, "ttrpc Request")
    assert isinstance(req, ttrpc_pb2.Request)
    return req


def decode_response(data: bytes) -> ttrpc_pb2.Response:
    resp = parse(ttrpc_pb2.Response, data, "ttrpc Response")
    assert isinstance(resp, ttrpc_pb2.Response)
    return resp


def request_bytes(
    stream_id: int, service: str, method: str, payload: bytes, timeout_ns: int = 0
) -> bytes:
    env = ttrpc_pb2.Request(
        service=service, method=method, payload=payload, timeout_nano=timeout_ns
    )
    return encode_message(stream_id, MsgType.REQUEST, env.SerializeToString())


def response_bytes(stream_id: int, payload: bytes = b"", code: int = 0, message: str = "") -> bytes:
    env = ttrpc_pb2.Response()
    if code:
        env.status.code = code
        env.status.message = message
    else:
        env.payload = payload
    return encode_message(stream_id, MsgType.RESPONSE, env.SerializeToString())
