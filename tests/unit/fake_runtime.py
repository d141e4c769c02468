"""A fake NRI runtime for unit tests: listens on a unix socket and speaks the mux + ttrpc wire
with its own struct-based framing (independent of knd.nri's codec), like containerd would."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message

from knd._proto import nri_pb2, ttrpc_pb2

PLUGIN = "nri.pkg.api.v1alpha1.Plugin"


class FakeRuntime:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(10)
        self.conn: socket.socket | None = None
        self._buf = {1: b"", 2: b""}
        self._sid = 1
        self.lock = threading.Lock()

    def accept(self) -> None:
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(10)
        self._buf = {1: b"", 2: b""}
        self._sid = 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def shutdown(self) -> None:
        self.close()
        self.listener.close()

    # -- raw wire ----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def send_frame(self, conn_id: int, payload: bytes) -> None:
        self.send_raw(struct.pack(">II", conn_id, len(payload)) + payload)

    def _recv_exact(self, n: int) -> bytes:
        assert self.conn is not None
        out = b""
        while len(out) < n:
            chunk = self.conn.recv(n - len(out))
            if not chunk:
                raise EOFError("plugin closed")
            out += chunk
        return out

    def recv_message(self, conn_id: int) -> tuple[int, int, int, bytes]:
        """Next whole ttrpc message on `conn_id`: (stream id, type, flags, data)."""
        while True:
            buf = self._buf[conn_id]
            if len(buf) >= 10:
                length, sid, mtype, flags = struct.unpack(">IIBB", buf[:10])
                if len(buf) >= 10 + length:
                    self._buf[conn_id] = buf[10 + length :]
                    return sid, mtype, flags, buf[10 : 10 + length]
            cid, n = struct.unpack(">II", self._recv_exact(8))
            payload = self._recv_exact(n)
            assert n <= 4096, f"plugin sent a {n}-byte mux frame (Go reader limit)"
            self._buf[cid] = self._buf.get(cid, b"") + payload

    # -- ttrpc -------------------------------------------------------------------------------

    def recv_register(self) -> tuple[int, nri_pb2.RegisterPluginRequest]:
        sid, mtype, _flags, data = self.recv_message(2)
        assert mtype == 1
        req = ttrpc_pb2.Request()
        req.ParseFromString(data)
        assert (req.service, req.method) == ("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin")
        reg = nri_pb2.RegisterPluginRequest()
        reg.ParseFromString(req.payload)
        return sid, reg

    def reply(self, conn_id: int, sid: int, payload: bytes = b"", code: int = 0) -> None:
        resp = ttrpc_pb2.Response(payload=payload)
        if code:
            resp.status.code = code
        data = resp.SerializeToString()
        self.send_frame(conn_id, struct.pack(">IIBB", len(data), sid, 2, 0) + data)

    def request(
        self, method: str, msg: Message, service: str = PLUGIN, sid: int | None = None
    ) -> int:
        if sid is None:
            sid, self._sid = self._sid, self._sid + 2
        env = ttrpc_pb2.Request(
            service=service, method=method, payload=msg.SerializeToString(), timeout_nano=2 * 10**9
        )
        data = env.SerializeToString()
        self.send_frame(1, struct.pack(">IIBB", len(data), sid, 1, 0) + data)
        return sid

    def call(self, method: str, msg: Message, service: str = PLUGIN) -> ttrpc_pb2.Response:
        sid = self.request(method, msg, service)
        rsid, mtype, _flags, data = self.recv_message(1)
        assert (rsid, mtype) == (sid, 2)
        resp = ttrpc_pb2.Response()
        resp.ParseFromString(data)
        return resp

    def handshake(self, configure: nri_pb2.ConfigureRequest | None = None) -> int:
        """Accept, register, configure, synchronize (empty); returns the configured mask."""
        self.accept()
        sid, _reg = self.recv_register()
        self.reply(2, sid, nri_pb2.Empty().SerializeToString())
        cfg = configure or nri_pb2.ConfigureRequest(
            runtime_name="containerd", runtime_version="2.1.9", request_timeout=2000
        )
        resp = self.call("Configure", cfg)
        out = nri_pb2.ConfigureResponse()
        out.ParseFromString(resp.payload)
        sync = self.call("Synchronize", nri_pb2.SynchronizeRequest())
        assert sync.status.code == 0
        return out.events


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[FakeRuntime]:
    """A FakeRuntime on a socket in the test's temporary directory, shut down after it."""
    r = FakeRuntime(tmp_path / "nri.sock")
    try:
        yield r
    finally:
        r.shutdown()
