"""Pod Events on attach failure (DraNet's reasons, aggregated across retries) written off the
hook's thread, and the DHCPRELEASE that StopPodSandbox sends before returning the NIC."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from knd.api.config import decode
from knd.driver.events import (
    NETWORK_ATTACH_FAILED,
    RDMA_ATTACH_FAILED,
    ClaimEvents,
    EventSink,
    ObjectRef,
)
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.kube.connection import connect_url
from knd.netns.builder import build_plan
from knd.netns.dhcp import RELEASE, decode_reply, encode_request, parse_options
from knd.netns.errors import AttachError, DhcpError
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import HostSide
from knd.nri.errors import HookError
from tests.unit.test_driver_hooks import POD_UID, Recorder, hooks, plan, pod

pytestmark = pytest.mark.unit


class FakeEventsApi:
    """Just enough of /api/v1/namespaces/NS/events: POST creates, merge-PATCH updates."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

        api = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> dict[str, Any]:
                n = int(self.headers.get("Content-Length", "0"))
                return dict(json.loads(self.rfile.read(n) or b"{}"))

            def _send(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self._body()
                with api.lock:
                    api.calls.append(("POST", self.path))
                    api.events[body["metadata"]["name"]] = body
                self._send(201, body)

            def do_PATCH(self) -> None:
                body = self._body()
                name = self.path.rsplit("/", 1)[1]
                with api.lock:
                    api.calls.append(("PATCH", self.path))
                    if name not in api.events:
                        self._send(404, {"kind": "Status", "message": "not found"})
                        return
                    assert self.headers["Content-Type"] == "application/merge-patch+json"
                    api.events[name].update(body)
                    event = api.events[name]
                self._send(200, event)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def api() -> Iterator[FakeEventsApi]:
    fake = FakeEventsApi()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
def sink(api: FakeEventsApi) -> EventSink:
    return EventSink(connect_url(api.url), component="dra.net", host="node-1")


POD = ObjectRef.pod("ns", "p1", POD_UID)


def test_repeats_raise_the_count_of_one_event(api: FakeEventsApi, sink: EventSink) -> None:
    for _ in range(3):
        sink.warning(POD, NETWORK_ATTACH_FAILED, "failed to attach network device dev-a")
    sink.flush()
    assert [c[0] for c in api.calls] == ["POST", "PATCH", "PATCH"]
    (event,) = api.events.values()
    assert event["count"] == 3 and event["type"] == "Warning"
    assert event["reason"] == NETWORK_ATTACH_FAILED
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "ns",
        "name": "p1",
        "uid": POD_UID,
    }
    assert event["source"] == {"component": "dra.net", "host": "node-1"}
    assert event["firstTimestamp"] <= event["lastTimestamp"]


def test_a_different_message_or_object_is_a_new_event(api: FakeEventsApi, sink: EventSink) -> None:
    sink.warning(POD, NETWORK_ATTACH_FAILED, "a")
    sink.warning(POD, NETWORK_ATTACH_FAILED, "b")
    sink.warning(ObjectRef.pod("ns", "p2", "uid-2"), NETWORK_ATTACH_FAILED, "a")
    sink.warning(POD, RDMA_ATTACH_FAILED, "a")
    sink.flush()
    assert len(api.events) == 4 and all(e["count"] == 1 for e in api.events.values())


def test_an_expired_event_is_created_again_with_its_count(
    api: FakeEventsApi, sink: EventSink
) -> None:
    sink.warning(POD, NETWORK_ATTACH_FAILED, "x")
    sink.flush()
    api.events.clear()  # the API server's event TTL ran out
    sink.warning(POD, NETWORK_ATTACH_FAILED, "x")
    sink.flush()
    assert [c[0] for c in api.calls] == ["POST", "PATCH", "POST"]
    (event,) = api.events.values()
    assert event["count"] == 2


def test_a_full_queue_drops_instead_of_blocking() -> None:
    unreachable = EventSink(connect_url("http://127.0.0.1:1"), "dra.net", "n", queue_size=2)
    for i in range(5):
        unreachable.warning(POD, NETWORK_ATTACH_FAILED, str(i))  # never started: nothing drains
    assert unreachable.dropped == 3
    unreachable.flush()  # unreachable server: logged, not raised
    assert unreachable.written == 0


def test_background_thread_writes_and_close_flushes(api: FakeEventsApi, sink: EventSink) -> None:
    sink.start()
    sink.warning(POD, NETWORK_ATTACH_FAILED, "late")
    sink.close(timeout_s=30)
    assert [e["message"] for e in api.events.values()] == ["late"]


def test_claim_events_aggregate_too(api: FakeEventsApi, sink: EventSink) -> None:
    claim = {"metadata": {"namespace": "ns", "name": "c1", "uid": "claim-uid"}}
    rec = ClaimEvents(sink)
    rec.warning(claim, "ClaimPrepareFailed", "no such device")
    rec.warning(claim, "ClaimPrepareFailed", "no such device")
    sink.flush()
    (event,) = api.events.values()
    assert event["involvedObject"]["kind"] == "ResourceClaim" and event["count"] == 2


@pytest.fixture
def nic_store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "knd.db")
    rdma_nic = plan("dev-a", "eth1", rdma=True)
    s.save_prepared(
        ClaimRecord("claim-1", "ns", "c1", POD_UID, time.time(), {}),
        PodRecord(POD_UID, "ns", "p1"),
        [PlanRecord("claim-1", "node", "dev-a", "nic", POD_UID, json.loads(rdma_nic.to_json()))],
    )
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize(
    ("step", "reason", "kind"),
    [("move", NETWORK_ATTACH_FAILED, "network"), ("rdma", RDMA_ATTACH_FAILED, "RDMA")],
)
def test_attach_failures_become_one_aggregated_pod_event(
    nic_store: StateStore,
    api: FakeEventsApi,
    sink: EventSink,
    step: str,
    reason: str,
    kind: str,
) -> None:
    rec = Recorder()
    rec.fail = AttachError("dev-a", step, OSError("boom"))
    h = hooks(nic_store, rec)
    h.events = sink
    for _ in range(3):  # the kubelet retries the sandbox
        with pytest.raises(HookError):
            h.run_pod_sandbox(pod())
    assert api.calls == []  # the hook only queued: no API call on the hook's thread
    sink.flush()
    (event,) = api.events.values()
    assert event["reason"] == reason and event["count"] == 3
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["message"].startswith(f"failed to attach {kind} device dev-a to pod ns/p1: ")
    assert f"step {step}" in event["message"]


# -- DHCPRELEASE ------------------------------------------------------------------------------
DHCP_POD = "dhcp-pod-uid"
LEASE = DhcpLease(
    address="10.33.0.55/24",
    router="10.33.0.1",
    server="10.33.0.1",
    lease_time=3600,
    obtained_at=int(time.time()),
)


def dhcp_store(tmp_path: Path) -> StateStore:
    host = HostSide(name="eth5", ifindex=9, mac="02:00:00:00:00:09", mtu=1500, up=True)
    p = build_plan(
        "dev-d", DHCP_POD, decode({"interface": {"dhcp": True}}), HostState(host=host), lease=LEASE
    )
    s = StateStore(tmp_path / "dhcp.db")
    s.save_prepared(
        ClaimRecord("claim-d", "ns", "cd", DHCP_POD, time.time(), {}),
        PodRecord(DHCP_POD, "ns", "pd"),
        [PlanRecord("claim-d", "node", "dev-d", "nic", DHCP_POD, json.loads(p.to_json()))],
    )
    return s


def test_stop_releases_dhcp_leases_from_the_pod_netns_before_detaching(tmp_path: Path) -> None:
    s = dhcp_store(tmp_path)
    order: list[str] = []
    released: list[tuple[str, str, str, str, str | None]] = []

    def release(netns: str, ifname: str, mac: str, address: str, server: str | None) -> None:
        order.append("release")
        released.append((netns, ifname, mac, address, server))

    rec = Recorder()
    detach = rec.detach

    def detach_recorded(plans: Any, netns: str | None) -> Any:
        order.append("detach")
        return detach(plans, netns)

    rec.detach = detach_recorded  # type: ignore[method-assign]
    h = hooks(s, rec)
    h.release_fn = release
    h.stop_pod_sandbox(pod(netns="/var/run/netns/cni-9", uid=DHCP_POD))
    s.close()
    assert order == ["release", "detach"]
    ((netns, _ifname, mac, address, server),) = released
    assert (netns, mac, address, server) == (
        "/var/run/netns/cni-9",
        "02:00:00:00:00:09",
        "10.33.0.55/24",
        "10.33.0.1",
    )


def test_a_failed_release_still_detaches(tmp_path: Path) -> None:
    s = dhcp_store(tmp_path)

    def release(*_: object) -> None:
        raise DhcpError("no such device")

    rec = Recorder()
    h = hooks(s, rec)
    h.release_fn = release
    h.stop_pod_sandbox(pod(netns="/var/run/netns/cni-9", uid=DHCP_POD))
    s.close()
    assert rec.detached == [(["dev-d"], "/var/run/netns/cni-9")]


def test_release_message_follows_rfc2131() -> None:
    msg = encode_request(
        RELEASE, 0x1234, "02:00:00:00:00:09", server_id="10.33.0.1", ciaddr="10.33.0.55"
    )
    assert msg[0] == 1 and msg[12:16] == bytes([10, 33, 0, 55])  # op BOOTREQUEST, ciaddr
    assert msg[10:12] == b"\0\0"  # no broadcast flag: the client has its address
    opts = parse_options(msg[240:])
    assert opts[53] == bytes([RELEASE]) and opts[54] == bytes([10, 33, 0, 1])
    assert 55 not in opts and 50 not in opts  # MUST NOT: parameter list, requested address
    assert decode_reply(msg, 0x1234) is None  # a request, not a reply


def test_aggregation_against_the_api_server_emulator() -> None:
    """The same sink against knd's API server emulator (which validates Events like the API
    server): one Event, its count rising, a second message a second Event."""
    from knd.lab.apiserver import ApiServerEmulator, ObjectStore

    srv = ApiServerEmulator(ObjectStore(k8s_version="1.34")).start()
    try:
        sink = EventSink(connect_url(srv.url), component="dra.net", host="node-1")
        for _ in range(4):
            sink.warning(POD, RDMA_ATTACH_FAILED, "failed to attach RDMA device mlx5_0")
        sink.warning(POD, RDMA_ATTACH_FAILED, "another failure")
        sink.flush()
        events = sorted(srv.events("ns"), key=lambda e: str(e["message"]))
    finally:
        srv.stop()
    assert [(e["message"], e["count"]) for e in events] == [
        ("another failure", 1),
        ("failed to attach RDMA device mlx5_0", 4),
    ]
    assert sink.written == 5


def test_unprepare_hands_each_plan_to_on_released(tmp_path: Path) -> None:
    """The unprepare backstop: every plan of the claim, after it left the store, goes to
    `on_released` (the daemon sends its DHCPRELEASE from the host); a failing callback does not
    fail the unprepare."""
    from knd.driver.prepare import PrepareEngine
    from knd.kubelet.types import ClaimRef

    s = dhcp_store(tmp_path)
    seen: list[tuple[str, str]] = []

    def on_released(record: PlanRecord) -> None:
        seen.append((record.device, record.plan["pod"]["dhcp"]["address"]))
        raise DhcpError("no such device")

    engine = PrepareEngine(
        driver="dra.net",
        store=s,
        reader=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        on_released=on_released,
    )
    errors = engine.unprepare([ClaimRef("ns", "claim-d", "cd")])
    assert errors == {"claim-d": ""}
    assert seen == [("dev-d", "10.33.0.55/24")]
    assert s.claim("claim-d") is None
    s.close()
