"""RDMA netlink (NETLINK_RDMA, "nldev"), encoded by hand: pyroute2 has none.

Three requests: read the RDMA netns mode (`RDMA_NLDEV_CMD_SYS_GET` → attribute
`RDMA_NLDEV_SYS_ATTR_NETNS_MODE`, u8: 1 = shared, 0 = exclusive), list devices
(`RDMA_NLDEV_CMD_GET` dump → index + name) and move a device to a netns
(`RDMA_NLDEV_CMD_SET` with `RDMA_NLDEV_ATTR_DEV_INDEX` and `RDMA_NLDEV_NET_NS_FD`).
RDMA messages carry attributes right after the netlink header (no family header); the message
type is `RDMA_NL_GET_TYPE(client, op) = client << 10 | op` with client RDMA_NL_NLDEV = 5.
Constants are positions in the enums of include/uapi/rdma/rdma_netlink.h.

A kernel without RDMA (no CONFIG_INFINIBAND) refuses the socket: that is `RdmaUnavailableError`,
a reported condition in which callers assume shared mode, never a crash.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable, Iterator

from knd.netns.errors import NetnsError, RdmaUnavailableError

NETLINK_RDMA = 20
RDMA_NL_NLDEV = 5
RDMA_NLDEV_CMD_GET = 1
RDMA_NLDEV_CMD_SET = 2
RDMA_NLDEV_CMD_SYS_GET = 6
RDMA_NLDEV_ATTR_DEV_INDEX = 1
RDMA_NLDEV_ATTR_DEV_NAME = 2
RDMA_NLDEV_SYS_ATTR_NETNS_MODE = 66
RDMA_NLDEV_NET_NS_FD = 68

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

_seq = itertools.count(1)


def nl_type(op: int) -> int:
    """RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, op)."""
    return (RDMA_NL_NLDEV << 10) | op


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(op: int, flags: int, seq: int, attrs: bytes = b"", pid: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(attrs), nl_type(op), flags, seq, pid) + attrs


def encode_sys_get(seq: int) -> bytes:
    return _message(RDMA_NLDEV_CMD_SYS_GET, NLM_F_REQUEST | NLM_F_ACK, seq)


def encode_get_dump(seq: int) -> bytes:
    return _message(RDMA_NLDEV_CMD_GET, NLM_F_REQUEST | NLM_F_DUMP, seq)


def encode_set_netns(seq: int, dev_index: int, netns_fd: int) -> bytes:
    attrs = _attr(RDMA_NLDEV_ATTR_DEV_INDEX, struct.pack("=I", dev_index))
    attrs += _attr(RDMA_NLDEV_NET_NS_FD, struct.pack("=I", netns_fd))
    return _message(RDMA_NLDEV_CMD_SET, NLM_F_REQUEST | NLM_F_ACK, seq, attrs)


def decode_attrs(payload: bytes) -> dict[int, bytes]:
    """Top-level attributes of a message payload → {type: value bytes} (nested flag masked)."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, offset)
        if length < 4 or offset + length > len(payload):
            raise NetnsError("malformed RDMA netlink attribute")
        out[kind & 0x3FFF] = payload[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def split_messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) for each netlink message in a datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            raise NetnsError("malformed netlink message")
        yield kind, flags, seq, data[offset + 16 : offset + length]
        offset += (length + 3) & ~3


def decode_netns_mode(payload: bytes) -> str:
    attrs = decode_attrs(payload)
    value = attrs.get(RDMA_NLDEV_SYS_ATTR_NETNS_MODE)
    if value is None or len(value) < 1:
        raise NetnsError("RDMA sys reply has no netns mode")
    return "shared" if value[0] else "exclusive"


def decode_device(payload: bytes) -> tuple[int, str]:
    attrs = decode_attrs(payload)
    (index,) = struct.unpack("=I", attrs[RDMA_NLDEV_ATTR_DEV_INDEX][:4])
    name = attrs[RDMA_NLDEV_ATTR_DEV_NAME].split(b"\0", 1)[0].decode()
    return index, name


SocketFactory = Callable[[], socket.socket]


def _open_socket() -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_RDMA)
        sock.bind((0, 0))
    except OSError as exc:
        raise RdmaUnavailableError(f"RDMA netlink unavailable: {exc.strerror}") from exc
    return sock


def _exchange(request: bytes, seq: int, factory: SocketFactory) -> list[bytes]:
    """Send, collect payloads of replies to `seq` until ack/DONE; OSError on NLMSG_ERROR."""
    sock = factory()
    try:
        sock.settimeout(2.0)
        sock.send(request)
        payloads: list[bytes] = []
        while True:
            data = sock.recv(65536)
            for kind, flags, mseq, payload in split_messages(data):
                if mseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return payloads
                if kind == NLMSG_DONE:
                    return payloads
                payloads.append(payload)
                if not flags & NLM_F_MULTI and not request_is_ack(request):
                    return payloads
    finally:
        sock.close()


def request_is_ack(request: bytes) -> bool:
    (flags,) = struct.unpack_from("=H", request, 6)
    return bool(flags & NLM_F_ACK)


def netns_mode(factory: SocketFactory = _open_socket) -> str:
    """'shared' or 'exclusive'; RdmaUnavailableError when the kernel has no RDMA netlink."""
    seq = next(_seq)
    try:
        payloads = _exchange(encode_sys_get(seq), seq, factory)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EOPNOTSUPP, errno.ENOENT):
            raise RdmaUnavailableError(f"RDMA netlink unavailable: {exc}") from exc
        raise
    for payload in payloads:
        return decode_netns_mode(payload)
    raise NetnsError("no reply to RDMA sys get")


def netns_mode_or_shared(factory: SocketFactory = _open_socket) -> tuple[str, str | None]:
    """(mode, reason): ('shared', why) when RDMA netlink is unavailable."""
    try:
        return netns_mode(factory), None
    except RdmaUnavailableError as exc:
        return "shared", str(exc)


def device_index(name: str, factory: SocketFactory = _open_socket) -> int:
    seq = next(_seq)
    for payload in _exchange(encode_get_dump(seq), seq, factory):
        index, dev_name = decode_device(payload)
        if dev_name == name:
            return index
    raise NetnsError(f"RDMA device {name!r} not found")


def move_device(name: str, netns_fd: int, factory: SocketFactory = _open_socket) -> None:
    """Move RDMA device `name` to the netns behind `netns_fd` (exclusive mode)."""
    index = device_index(name, factory)
    seq = next(_seq)
    _exchange(encode_set_netns(seq, index, netns_fd), seq, factory)
