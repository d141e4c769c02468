"""knd.kube.connection: the daemon's own HTTP(S) client to the API server.

Real sockets on loopback: a recording HTTP server, HTTPS servers with certificates made by the
`openssl` command (a test CA, a server certificate, a client certificate), the service-account
layout of a pod (token + ca.crt) and kubeconfig files. The API server itself is not involved;
the claim and slice calls over this client are tested against the emulator elsewhere
(tests/unit/kubelet, tests/unit/test_publisher.py).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from knd.kube.connection import (
    APPLY_PATCH_TYPE,
    ApiConnection,
    CredentialsError,
    FileToken,
    connect,
    connect_in_cluster,
    connect_kubeconfig,
    connect_url,
    quote,
)
from knd.kube.errors import ApiError, ConflictError, NotFoundError

pytestmark = pytest.mark.unit


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_cert_cn: str | None = None


@dataclass
class Recorder:
    """What the server saw, and what it answers next (status, JSON body)."""

    seen: list[Seen] = field(default_factory=list)
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def _handler(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            cn = None
            if isinstance(self.connection, ssl.SSLSocket):
                cert = self.connection.getpeercert()
                if cert:
                    cn = dict(x[0] for x in cert["subject"]).get("commonName")
            rec.seen.append(Seen(self.command, self.path, dict(self.headers), body, cn))
            status, answer = rec.answers.pop(0) if rec.answers else (200, {"ok": True})
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def http_server() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", rec
    finally:
        srv.shutdown()
        srv.server_close()


# -- plain HTTP --------------------------------------------------------------------------------


def test_json_call_with_query_body_and_auth(http_server: tuple[str, Recorder]) -> None:
    url, rec = http_server
    rec.answers.append((201, {"kind": "ResourceSlice", "metadata": {"name": "s1"}}))
    conn = ApiConnection(url, auth=lambda: "Bearer abc")
    out = conn.request(
        "PATCH",
        "/apis/x/v1/things/" + quote("a b/c"),
        body={"spec": {"n": 1}},
        query={"fieldManager": "dra.net", "force": "true"},
        content_type=APPLY_PATCH_TYPE,
    )
    assert out == {"kind": "ResourceSlice", "metadata": {"name": "s1"}}
    seen = rec.seen[0]
    assert seen.method == "PATCH"
    assert seen.path == "/apis/x/v1/things/a%20b%2Fc?fieldManager=dra.net&force=true"
    assert seen.headers["Content-Type"] == APPLY_PATCH_TYPE
    assert seen.headers["Authorization"] == "Bearer abc"
    assert json.loads(seen.body) == {"spec": {"n": 1}}
    assert seen.body == b'{"spec":{"n":1}}'  # canonical JSON (docs/lab.md)


def test_errors_carry_status_and_the_status_message(http_server: tuple[str, Recorder]) -> None:
    url, rec = http_server
    conn = connect_url(url)
    rec.answers += [
        (404, {"kind": "Status", "message": 'resourceclaims "c" not found'}),
        (409, {"kind": "Status", "message": "the object has been modified"}),
        (422, {"kind": "Status", "message": "spec.devices: Too many"}),
    ]
    with pytest.raises(NotFoundError, match='resourceclaims "c" not found') as nf:
        conn.request("GET", "/c")
    assert nf.value.status == 404
    with pytest.raises(ConflictError, match="has been modified"):
        conn.request("PUT", "/c", body={})
    with pytest.raises(ApiError, match="Too many") as inv:
        conn.request("POST", "/c", body={})
    assert inv.value.status == 422
    assert not isinstance(inv.value, (NotFoundError, ConflictError))


def test_keep_alive_connection_is_reused(http_server: tuple[str, Recorder]) -> None:
    url, rec = http_server
    conn = connect_url(url)
    for _ in range(3):
        conn.request("GET", "/x")
    ports = {s.headers.get("Host") for s in rec.seen}
    assert len(rec.seen) == 3 and len(ports) == 1


def test_unreachable_server_is_status_0() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with pytest.raises(ApiError) as info:
            connect_url(f"http://127.0.0.1:{port}", timeout_s=2).request("GET", "/x")
    assert info.value.status == 0 and "unreachable" in str(info.value)


def test_a_connection_the_server_closed_while_idle_is_reopened_once() -> None:
    """The server answers with keep-alive, then closes the socket (as an API server does for
    idle connections); the next call must reconnect instead of failing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[int] = []

    def serve() -> None:
        for n in range(2):
            client, _ = listener.accept()
            accepted.append(n)
            with client:
                client.recv(65536)
                data = json.dumps({"n": n}).encode()
                client.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
            # closed without "Connection: close": the client's connection is now stale

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        conn = connect_url(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=5)
        assert conn.request("GET", "/a") == {"n": 0}
        thread.join(0.5)
        assert conn.request("GET", "/b") == {"n": 1}
        assert accepted == [0, 1]
    finally:
        listener.close()


def test_server_must_be_an_http_url() -> None:
    with pytest.raises(CredentialsError, match="http"):
        connect_url("unix:///run/k8s.sock")


# -- TLS: certificates made by openssl ---------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    server_ip: tuple[Path, Path]  # cert, key; SAN IP:127.0.0.1
    server_dns: tuple[Path, Path]  # SAN DNS:apiserver.knd.test only
    client: tuple[Path, Path]  # CN=system:node:node-a
    other_ca: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _issue(d: Path, name: str, subject: str, ca: Path, ca_key: Path, ext: str) -> tuple[Path, Path]:
    key, csr, crt, extfile = (d / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    extfile.write_text(ext + "\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", subject,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(extfile),
    )  # fmt: skip
    return crt, key


def _make_ca(d: Path, name: str) -> tuple[Path, Path]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return crt, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (scripts/system-deps installs it)")
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _make_ca(d, "knd-test-ca")
    other_ca, _ = _make_ca(d, "other-ca")
    server_ext = "extendedKeyUsage=serverAuth\nsubjectAltName="
    return Pki(
        dir=d,
        ca=ca,
        server_ip=_issue(
            d, "srv-ip", "/CN=kube-apiserver", ca, ca_key, server_ext + "IP:127.0.0.1"
        ),
        server_dns=_issue(
            d, "srv-dns", "/CN=kube-apiserver", ca, ca_key, server_ext + "DNS:apiserver.knd.test"
        ),
        client=_issue(
            d,
            "client",
            "/O=system:nodes/CN=system:node:node-a",
            ca,
            ca_key,
            "extendedKeyUsage=clientAuth",
        ),
        other_ca=other_ca,
    )


@pytest.fixture
def https_server(pki: Pki, request: pytest.FixtureRequest) -> Iterator[tuple[int, Recorder]]:
    """HTTPS on 127.0.0.1; param: (which server cert, require a client cert)."""
    which, require_client = getattr(request, "param", ("ip", False))
    cert, key = pki.server_ip if which == "ip" else pki.server_dns
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki.ca)
    rec = Recorder()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1], rec
    finally:
        srv.shutdown()
        srv.server_close()


def _service_account(tmp_path: Path, ca: Path, token: str) -> Path:
    d = tmp_path / "serviceaccount"
    d.mkdir()
    (d / "token").write_text(token + "\n")
    (d / "ca.crt").write_bytes(ca.read_bytes())
    return d


def test_in_cluster_uses_the_service_account_token_and_ca(
    https_server: tuple[int, Recorder], pki: Pki, tmp_path: Path
) -> None:
    port, rec = https_server
    sa = _service_account(tmp_path, pki.ca, "sa-token-1")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    conn = connect_in_cluster(environ=env, account_dir=sa)
    assert conn.server == f"https://127.0.0.1:{port}"
    assert conn.request("GET", "/api/v1/nodes/node-a") == {"ok": True}
    assert rec.seen[0].headers["Authorization"] == "Bearer sa-token-1"


def test_in_cluster_rejects_a_server_its_ca_did_not_sign(
    https_server: tuple[int, Recorder], pki: Pki, tmp_path: Path
) -> None:
    port, rec = https_server
    sa = _service_account(tmp_path, pki.other_ca, "t")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
    with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED") as info:
        connect_in_cluster(environ=env, account_dir=sa).request("GET", "/x")
    assert info.value.status == 0
    assert rec.seen == []  # no request (and no token) reached the impostor


def test_in_cluster_outside_a_pod_says_what_is_missing(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(CredentialsError, match="KUBERNETES_SERVICE_HOST"):
        connect_in_cluster(environ={}, account_dir=tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(CredentialsError, match="token"):
        connect_in_cluster(environ=env, account_dir=tmp_path)
    with pytest.raises(CredentialsError, match="KUBERNETES_SERVICE_HOST"):
        connect(apiserver="", kubeconfig="")  # nor is this test process in a pod


def test_in_cluster_ipv6_service_host_is_bracketed(tmp_path: Path, pki: Pki) -> None:
    sa = _service_account(tmp_path, pki.ca, "t")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert connect_in_cluster(environ=env, account_dir=sa).server == "https://[fd00::1]:443"


def test_rotated_token_is_picked_up_and_a_vanished_file_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    token = FileToken(path, reload_s=0.0)
    assert token() == "Bearer first"
    path.write_text("second\n")
    assert token() == "Bearer second"
    path.unlink()
    assert token() == "Bearer second"
    cached = FileToken(path.with_name("t2"), reload_s=3600.0)
    path.with_name("t2").write_text("a")
    assert cached() == "Bearer a"
    path.with_name("t2").write_text("b")
    assert cached() == "Bearer a"  # re-read only after reload_s
    with pytest.raises(CredentialsError, match="cannot read token"):
        FileToken(tmp_path / "absent")()


def _kubeconfig(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return str(path)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_kubeconfig_token_and_inline_ca(
    https_server: tuple[int, Recorder], pki: Pki, tmp_path: Path
) -> None:
    port, rec = https_server
    cfg = _kubeconfig(
        tmp_path,
        {"server": f"https://127.0.0.1:{port}", "certificate-authority-data": _b64(pki.ca)},
        {"token": "kc-token"},
    )
    conn = connect(kubeconfig=cfg)
    conn.request("GET", "/version")
    assert rec.seen[0].headers["Authorization"] == "Bearer kc-token"


@pytest.mark.parametrize("https_server", [("dns", True)], indirect=True)
def test_kubeconfig_client_certificate_and_tls_server_name(
    https_server: tuple[int, Recorder], pki: Pki, tmp_path: Path
) -> None:
    """The server's certificate names only apiserver.knd.test (reached at 127.0.0.1, as
    kubeconfig `tls-server-name` allows) and it requires a client certificate."""
    port, rec = https_server
    cert, key = pki.client
    cluster = {
        "server": f"https://127.0.0.1:{port}",
        "certificate-authority": str(pki.ca),
        "tls-server-name": "apiserver.knd.test",
    }
    user = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    conn = connect_kubeconfig(_kubeconfig(tmp_path, cluster, user))
    conn.request("GET", "/api/v1/nodes/node-a")
    assert rec.seen[0].client_cert_cn == "system:node:node-a"
    assert "Authorization" not in rec.seen[0].headers
    without_name = dict(cluster)
    del without_name["tls-server-name"]
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ApiError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
        connect_kubeconfig(_kubeconfig(other, without_name, user)).request("GET", "/x")


def test_kubeconfig_insecure_skip_tls_verify(
    https_server: tuple[int, Recorder], tmp_path: Path
) -> None:
    port, _ = https_server
    cfg = _kubeconfig(
        tmp_path,
        {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True},
        {"token": "x"},
    )
    assert connect_kubeconfig(cfg).request("GET", "/x") == {"ok": True}


def test_kubeconfig_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="kubeconfig"):
        connect_kubeconfig(str(tmp_path / "missing"))


def test_kubeconfig_without_the_kubernetes_extra_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image leaves the `kubernetes` package out: --kubeconfig then says what to install."""
    import sys

    monkeypatch.setitem(sys.modules, "kubernetes", None)  # makes `import kubernetes` fail
    path = _kubeconfig(tmp_path, {"server": "https://127.0.0.1:1"}, {"token": "t"})
    with pytest.raises(CredentialsError, match=r"knd\[kubeconfig\]"):
        connect_kubeconfig(path)


def test_bodies_are_sent_as_canonical_json_the_way_go_writes_a_map() -> None:
    """Sorted keys, no spaces, UTF-8, Go's HTML escapes: what kube-apiserver re-encodes opaque
    parameters to on every patch (a claim stored otherwise cannot get its status written)."""
    from knd.kube.connection import canonical_json

    body = {"b": 1, "a": {"z": "<x&y>", "é": [1, 2]}, "u": "\u2028"}
    assert canonical_json(body) == (
        '{"a":{"z":"\\u003cx\\u0026y\\u003e","é":[1,2]},"b":1,"u":"\\u2028"}'.encode()
    )
    assert json.loads(canonical_json(body)) == body
