"""knd.nri.plugin against a fake runtime over a real unix socket: registration order,
Configure mask, split Synchronize, both event delivery styles, UNIMPLEMENTED, error
propagation, protocol errors and reconnection."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from knd._proto import nri_pb2
from knd.nri.errors import HookError
from knd.nri.handler import NullHandler
from knd.nri.plugin import NriPlugin, PluginConfig
from knd.nri.types import ContainerAdjust, ContainerInfo, ContainerUpdate, DeviceNode, PodInfo
from tests.unit.fake_runtime import FakeRuntime, rt

pytestmark = pytest.mark.unit
__all__ = ["rt"]  # the fixture, shared from tests.unit.fake_runtime


class Recorder(NullHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, PodInfo]] = []
        self.synced: list[tuple[list[PodInfo], list[ContainerInfo]]] = []
        self.fail_run = False
        self.fail_stop = False
        self.run_delay_s = 0.0
        self.updates: list[ContainerUpdate] = []

    def run_pod_sandbox(self, pod: PodInfo) -> None:
        self.calls.append(("run", pod))
        time.sleep(self.run_delay_s)
        if self.fail_run:
            raise HookError("no such plan")

    def stop_pod_sandbox(self, pod: PodInfo) -> None:
        self.calls.append(("stop", pod))
        if self.fail_stop:
            raise RuntimeError("detach failed")

    def remove_pod_sandbox(self, pod: PodInfo) -> None:
        self.calls.append(("remove", pod))

    def create_container(self, pod: PodInfo, container: ContainerInfo) -> ContainerAdjust | None:
        d = DeviceNode("/dev/infiniband/uverbs0", 231, 192)
        return ContainerAdjust((d, d, DeviceNode("/dev/infiniband/rdma_cm", 10, 58)))

    def synchronize(
        self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]
    ) -> Sequence[ContainerUpdate]:
        self.synced.append((list(pods), list(containers)))
        return self.updates


def pod(uid: str = "u1", netns: str | None = "/var/run/netns/cni-1") -> nri_pb2.PodSandbox:
    p = nri_pb2.PodSandbox(id="sb-" + uid, uid=uid, name="p", namespace="ns")
    p.linux.namespaces.add(type="ipc", path="/proc/1/ns/ipc")
    if netns is not None:
        p.linux.namespaces.add(type="network", path=netns)
    return p


@pytest.fixture
def handler() -> Recorder:
    return Recorder()


@pytest.fixture
def plugin(rt: FakeRuntime, handler: Recorder) -> Iterator[NriPlugin]:
    p = NriPlugin(
        handler,
        PluginConfig(
            socket_path=rt.path,
            name="dra.net",
            index="00",
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
            use_env_socket=False,
        ),
    )
    p.start()
    try:
        yield p
    finally:
        p.stop()


def test_registers_and_serves_configure_before_register_reply(
    rt: FakeRuntime, plugin: NriPlugin
) -> None:
    rt.accept()
    sid, reg = rt.recv_register()
    assert (reg.plugin_name, reg.plugin_idx) == ("dra.net", "00")
    # Configure arrives before the runtime answers RegisterPlugin: conn 1 must already serve
    resp = rt.call(
        "Configure", nri_pb2.ConfigureRequest(runtime_name="containerd", runtime_version="1.7.24")
    )
    out = nri_pb2.ConfigureResponse()
    out.ParseFromString(resp.payload)
    assert out.events == 0xF
    rt.reply(2, sid, nri_pb2.Empty().SerializeToString())
    assert rt.call("Synchronize", nri_pb2.SynchronizeRequest()).status.code == 0
    assert plugin.wait_registrations(1, 5) and plugin.registrations == 1
    assert plugin.connected
    assert plugin.runtime.name == "containerd" and plugin.runtime.event_mask == 0xF


def test_split_synchronize_buffers_until_more_is_false(
    rt: FakeRuntime, plugin: NriPlugin, handler: Recorder
) -> None:
    rt.accept()
    sid, _ = rt.recv_register()
    rt.reply(2, sid)
    rt.call(
        "Configure", nri_pb2.ConfigureRequest(runtime_name="containerd", runtime_version="2.2.1")
    )
    first = rt.call("Synchronize", nri_pb2.SynchronizeRequest(pods=[pod("a")], more=True))
    r1 = nri_pb2.SynchronizeResponse()
    r1.ParseFromString(first.payload)
    assert r1.more and not r1.update and handler.synced == []
    c = nri_pb2.Container(id="c1", pod_sandbox_id="sb-b", name="w")
    last = rt.call("Synchronize", nri_pb2.SynchronizeRequest(pods=[pod("b")], containers=[c]))
    r2 = nri_pb2.SynchronizeResponse()
    r2.ParseFromString(last.payload)
    assert not r2.more
    ((pods, containers),) = handler.synced
    assert [p.uid for p in pods] == ["a", "b"] and [c.id for c in containers] == ["c1"]
    assert pods[0].netns == "/var/run/netns/cni-1"


def test_state_change_and_dedicated_methods_reach_the_same_hooks(
    rt: FakeRuntime, plugin: NriPlugin, handler: Recorder
) -> None:
    rt.handshake()
    ev = nri_pb2.StateChangeEvent(event=nri_pb2.RUN_POD_SANDBOX, pod=pod("s"))
    assert rt.call("StateChange", ev).status.code == 0
    assert rt.call("RunPodSandbox", nri_pb2.RunPodSandboxRequest(pod=pod("d"))).status.code == 0
    stop = nri_pb2.StateChangeEvent(event=nri_pb2.STOP_POD_SANDBOX, pod=pod("s", netns=None))
    assert rt.call("StateChange", stop).status.code == 0
    assert (
        rt.call("RemovePodSandbox", nri_pb2.RemovePodSandboxRequest(pod=pod("d"))).status.code == 0
    )
    # an event we did not subscribe to is acknowledged and ignored
    other = nri_pb2.StateChangeEvent(event=nri_pb2.POST_START_CONTAINER, pod=pod("s"))
    assert rt.call("StateChange", other).status.code == 0
    assert [(n, p.uid, p.netns) for n, p in handler.calls] == [
        ("run", "s", "/var/run/netns/cni-1"),
        ("run", "d", "/var/run/netns/cni-1"),
        ("stop", "s", None),
        ("remove", "d", "/var/run/netns/cni-1"),
    ]
    stats = plugin.timer.stats("RunPodSandbox")
    assert stats is not None and stats.count == 2 and stats.errors == 0


def test_unimplemented_methods_and_services_answer_code_12(
    rt: FakeRuntime, plugin: NriPlugin
) -> None:
    rt.handshake()
    resp = rt.call("PostStartContainer", nri_pb2.Empty())
    assert (resp.status.code, resp.status.message) == (12, "method PostStartContainer")
    resp = rt.call("Configure", nri_pb2.Empty(), service="other.Service")
    assert resp.status.code == 12


def test_run_error_propagates_stop_error_does_not(
    rt: FakeRuntime, plugin: NriPlugin, handler: Recorder
) -> None:
    rt.handshake()
    handler.fail_run = True
    handler.fail_stop = True
    resp = rt.call(
        "StateChange", nri_pb2.StateChangeEvent(event=nri_pb2.RUN_POD_SANDBOX, pod=pod())
    )
    assert resp.status.code == 2 and "no such plan" in resp.status.message and resp.payload == b""
    resp = rt.call("StopPodSandbox", nri_pb2.StopPodSandboxRequest(pod=pod()))
    assert resp.status.code == 0
    assert plugin.hook_errors == 1


def test_create_container_returns_deduplicated_char_devices(
    rt: FakeRuntime, plugin: NriPlugin
) -> None:
    rt.handshake()
    req = nri_pb2.CreateContainerRequest(pod=pod(), container=nri_pb2.Container(id="c", name="w"))
    resp = nri_pb2.CreateContainerResponse()
    resp.ParseFromString(rt.call("CreateContainer", req).payload)
    devs = [
        (d.path, d.type, d.major, d.minor, d.file_mode.value) for d in resp.adjust.linux.devices
    ]
    assert devs == [
        ("/dev/infiniband/uverbs0", "c", 231, 192, 0o666),
        ("/dev/infiniband/rdma_cm", "c", 10, 58, 0o666),
    ]


def test_synchronize_answers_the_handlers_container_updates(
    rt: FakeRuntime, plugin: NriPlugin, handler: Recorder
) -> None:
    handler.updates = [ContainerUpdate("c1", "4-7", "1"), ContainerUpdate("c2", cpus="2")]
    rt.accept()
    sid, _ = rt.recv_register()
    rt.reply(2, sid)
    rt.call("Configure", nri_pb2.ConfigureRequest(runtime_name="containerd"))
    c = nri_pb2.Container(id="c1", pod_sandbox_id="sb-u1", name="w")
    c.linux.devices.add(path="/dev/infiniband/uverbs0", type="c", major=231, minor=192)
    c.linux.resources.cpu.cpus = "0-7"
    resp = nri_pb2.SynchronizeResponse()
    resp.ParseFromString(
        rt.call("Synchronize", nri_pb2.SynchronizeRequest(pods=[pod()], containers=[c])).payload
    )
    got = [
        (u.container_id, u.linux.resources.cpu.cpus, u.linux.resources.cpu.mems)
        for u in resp.update
    ]
    assert got == [("c1", "4-7", "1"), ("c2", "2", "")]
    ((_, (seen,)),) = handler.synced
    assert (seen.cpus, seen.devices) == ("0-7", ("/dev/infiniband/uverbs0",))


def test_a_hook_past_the_runtimes_timeout_is_logged_and_counted(
    rt: FakeRuntime, plugin: NriPlugin, handler: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    rt.handshake(nri_pb2.ConfigureRequest(runtime_name="containerd", request_timeout=400))
    handler.run_delay_s = 0.25  # past half of the 400 ms budget: a warning
    assert rt.call("RunPodSandbox", nri_pb2.RunPodSandboxRequest(pod=pod("a"))).status.code == 0
    assert plugin.over_budget == 0
    handler.run_delay_s = 0.45  # past all of it: an error, counted
    assert rt.call("RunPodSandbox", nri_pb2.RunPodSandboxRequest(pod=pod("b"))).status.code == 0
    assert plugin.over_budget == 1
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    lines = [(level, text) for level, text in records if text.startswith("NRI RunPodSandbox for")]
    assert [level for level, _ in lines] == ["WARNING", "ERROR"]
    assert "RunPodSandbox for pod ns/p" in lines[1][1] and "0.40 s request timeout" in lines[1][1]


def test_reconnects_after_runtime_restart(rt: FakeRuntime, plugin: NriPlugin) -> None:
    rt.handshake()
    rt.close()  # runtime restart: the trunk just closes
    assert rt.handshake() == 0xF  # plugin dialled again, registered, configured, synchronized
    deadline = time.monotonic() + 5
    while plugin.registrations < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert plugin.registrations == 2


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x00\x00\x00\x00\x01x",  # reserved conn id 0
        b"\x00\x00\x00\x01\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x02\x01\x00",  # even sid
        b"\x00\x00\x00\x01\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x01\x07\x00",  # bad type
        # undecodable protobuf envelope
        b"\x00\x00\x00\x01\x00\x00\x00\x0c\x00\x00\x00\x02\x00\x00\x00\x63\x01\x00\x0a\xff",
    ],
)
def test_protocol_errors_close_the_connection_and_plugin_redials(
    rt: FakeRuntime, plugin: NriPlugin, garbage: bytes
) -> None:
    rt.handshake()
    rt.send_raw(garbage)
    rt.accept()  # the plugin closed the bad connection and dialled again
    sid, _ = rt.recv_register()
    assert "protocol error" in plugin.last_close_reason
    rt.reply(2, sid)


def test_stream_ids_must_increase(rt: FakeRuntime, plugin: NriPlugin) -> None:
    rt.handshake()  # used stream ids 1 and 3
    rt.request("Configure", nri_pb2.ConfigureRequest(), sid=3)
    rt.accept()
    rt.recv_register()
    assert "not above" in plugin.last_close_reason


def test_plugin_config_validates_name_and_index() -> None:
    with pytest.raises(ValueError, match="name"):
        PluginConfig(name="bad name")
    with pytest.raises(ValueError, match="index"):
        PluginConfig(index="7")


def test_env_socket_is_adopted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    ours, theirs = socket.socketpair()
    monkeypatch.setenv("NRI_PLUGIN_SOCKET", str(os.dup(ours.fileno())))
    ours.close()
    p = NriPlugin(Recorder(), PluginConfig(socket_path=str(tmp_path / "absent.sock")))
    p.start()
    try:
        theirs.settimeout(5)
        head = theirs.recv(8)
        assert head[:4] == b"\x00\x00\x00\x02"  # RegisterPlugin on conn 2 over the inherited fd
    finally:
        theirs.close()
        p.stop()
