"""The DRA plugin end to end on the wire: emulated kubelet ⇄ knd over unix sockets, claims in
an emulated API server (HTTP on loopback) read through knd.kube.connection."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from kubelet_claims import DRIVER, GPU, POOL, claim, opaque, ref

from knd.driver.claim_api import KubeClaimApi
from knd.driver.prepare import PrepareEngine
from knd.driver.store import StateStore
from knd.kubelet import registration, wire
from knd.kubelet.plugin import KubeletPlugin
from knd.kubelet.sockets import SocketPathError
from knd.kubelet.types import ClaimRef
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.kubelet import KubeletEmulator

pytestmark = pytest.mark.unit

VERSIONS = ["v1.DRAPlugin", "v1beta1.DRAPlugin"]


def test_registration_handshake_and_socket_permissions(
    plugin: KubeletPlugin, kubelet: KubeletEmulator, kroot: Path
) -> None:
    reg = kubelet.wait_registered(DRIVER)
    assert reg.version == "v1.DRAPlugin"
    assert reg.supported == wire.SUPPORTED_VERSIONS
    assert reg.endpoint == str(kroot / "plugins" / DRIVER / "dra.sock")
    assert reg.socket == kroot / "plugins_registry" / f"{DRIVER}-reg.sock"
    assert plugin.registration.registered.wait(5)
    for path in (reg.socket, Path(reg.endpoint)):
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, path
    assert stat.S_IMODE((kroot / "plugins" / DRIVER).stat().st_mode) == 0o700


def test_old_kubelet_picks_v1beta1(plugin: KubeletPlugin, kroot: Path) -> None:
    emu = KubeletEmulator(kroot, supported=("v1beta1.DRAPlugin",)).start()
    try:
        assert emu.wait_registered(DRIVER).version == "v1beta1.DRAPlugin"
    finally:
        emu.stop()


def test_refusal_is_logged_and_retried(
    plugin: KubeletPlugin,
    kroot: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(registration, "RETRY_INITIAL_S", 0.05)
    emu = KubeletEmulator(kroot, refuse_with="node is cordoned for DRA").start()
    try:
        emu.wait_attempts(2)  # refused once, the plugin re-created its socket, kubelet retried
        assert plugin.registration.last_error == "node is cordoned for DRA"
        assert not plugin.registration.registered.is_set()
        assert "node is cordoned for DRA" in caplog.text
        emu.refuse_with = ""
        emu.wait_registered(DRIVER)
        assert plugin.registration.registered.wait(5)
    finally:
        emu.stop()


def test_removed_socket_is_recreated_and_registered_again(
    plugin: KubeletPlugin,
    kubelet: KubeletEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Someone removes the registration socket: the kubelet forgets the driver; knd's watcher
    re-creates the socket and the kubelet's watcher registers the driver again."""
    monkeypatch.setattr(registration, "WATCH_INTERVAL_S", 0.05)
    reg = kubelet.wait_registered(DRIVER)
    attempts = kubelet.attempts
    reg.socket.unlink()
    kubelet.forget(DRIVER)
    again = kubelet.wait_registered(DRIVER)
    assert kubelet.attempts == attempts + 1
    assert stat.S_IMODE(again.socket.lstat().st_mode) == 0o600
    assert plugin.registration.recreated == 1
    assert plugin.registration.registered.wait(5)
    assert "was removed" in caplog.text


def test_something_else_at_the_socket_path_is_left_alone(
    plugin: KubeletPlugin, kubelet: KubeletEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher re-creates only a missing path: a file put in the socket's place stays."""
    monkeypatch.setattr(registration, "WATCH_INTERVAL_S", 0.05)
    reg = kubelet.wait_registered(DRIVER)
    reg.socket.unlink()
    reg.socket.write_text("someone else's")
    stopped = threading.Event()
    stopped.wait(0.5)  # ten watch intervals
    assert reg.socket.read_text() == "someone else's"
    assert plugin.registration.recreated == 0
    reg.socket.unlink()


def test_stale_socket_replaced_and_removed_on_stop(engine: PrepareEngine, kroot: Path) -> None:
    reg_path = kroot / "plugins_registry" / f"{DRIVER}-reg.sock"
    reg_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(reg_path))
    stale.close()  # left behind like after a crash
    p = KubeletPlugin(DRIVER, engine, kroot)
    p.start()
    emu = KubeletEmulator(kroot).start()
    try:
        emu.wait_registered(DRIVER)
    finally:
        emu.stop()
        p.stop()
    assert not reg_path.exists()
    assert not p.paths.dra.exists()


def test_refuses_to_remove_non_socket(engine: PrepareEngine, kroot: Path) -> None:
    reg_path = kroot / "plugins_registry" / f"{DRIVER}-reg.sock"
    reg_path.parent.mkdir(parents=True)
    reg_path.write_text("not a socket")
    p = KubeletPlugin(DRIVER, engine, kroot)
    with pytest.raises(SocketPathError, match="not a socket"):
        p.start()
    p.stop()
    assert reg_path.read_text() == "not a socket"


@pytest.mark.parametrize("version", VERSIONS)
def test_prepare_gpu_and_nic_with_class_and_claim_config(
    version: str,
    plugin: KubeletPlugin,
    kubelet: KubeletEmulator,
    apiserver: ApiServerEmulator,
    store: StateStore,
) -> None:
    kubelet.wait_registered(DRIVER)
    obj = apiserver.put_claim(
        claim(
            "gpu-nic",
            [("gpu", GPU, "gpu-0"), ("nic", DRIVER, "pci-0000-8a-00-0")],
            configs=[
                opaque("FromClass", {"kind": "gpu"}, driver=GPU),
                opaque("FromClass", {"interface": {"mtu": 9000, "name": "net1"}}, ["nic"]),
                opaque("FromClaim", {"interface": {"name": "rdma0"}}, ["nic"]),
                opaque("FromClaim", {"interface": {"mtu": 1500}}, ["other"]),
            ],
        )
    )
    resp = kubelet.prepare(DRIVER, [ref(obj)], version=version)
    uid = obj["metadata"]["uid"]
    assert set(resp.claims) == {uid}
    entry = resp.claims[uid]
    assert entry.error == ""
    assert [(d.pool_name, d.device_name, list(d.request_names)) for d in entry.devices] == [
        (POOL, "pci-0000-8a-00-0", ["nic"])
    ]
    plans = store.plans_for_claim(uid)
    assert len(plans) == 1
    pod_uid = obj["status"]["reservedFor"][0]["uid"]
    assert plans[0].pod_uid == pod_uid and plans[0].request == "nic"
    # class config first, claim config merged over it; other requests' configs ignored
    assert plans[0].plan["config"] == {"interface": {"mtu": 9000, "name": "rdma0"}}
    assert store.plans_for_pod(pod_uid) == plans
    pod = store.pod(pod_uid)
    assert pod is not None and pod.name == "gpu-nic-pod"


def test_subrequest_names_are_stripped(
    plugin: KubeletPlugin, kubelet: KubeletEmulator, apiserver: ApiServerEmulator
) -> None:
    kubelet.wait_registered(DRIVER)
    obj = apiserver.put_claim(
        claim(
            "sub",
            [("nic/fast", DRIVER, "eth-fast")],
            configs=[opaque("FromClaim", {"interface": {"name": "f0"}}, ["nic/fast"])],
        )
    )
    entry = kubelet.prepare(DRIVER, [ref(obj)]).claims[obj["metadata"]["uid"]]
    assert entry.error == ""
    assert list(entry.devices[0].request_names) == ["nic"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: claim("unalloc", [("nic", DRIVER, "eth1")], allocated=False), "not allocated"),
        (
            lambda: claim("shared", [("nic", DRIVER, "eth1")], pods=[("a", "u1"), ("b", "u2")]),
            "status.reservedFor has 2 consumers",
        ),
        (
            lambda: claim(
                "badcfg",
                [("nic", DRIVER, "eth1")],
                configs=[opaque("FromClaim", {"interface": {"mtu": "big"}})],
            ),
            "device node-a/eth1 (status.allocation.devices.results[0]): invalid config in "
            "status.allocation.devices.config: request 'nic': config[0] (FromClaim) "
            "interface.mtu: must be an integer",
        ),
        (
            lambda: claim(
                "unknownfield",
                [("nic", DRIVER, "eth1")],
                configs=[opaque("FromClass", {"interfase": {}})],
            ),
            "interfase: unknown field",
        ),
        (
            lambda: claim(
                "badname",
                [("nic", DRIVER, "eth1")],
                configs=[opaque("FromClaim", {"interface": {"name": "../../etc"}})],
            ),
            "interface.name: name '../../etc' may only contain",
        ),
    ],
)
def test_prepare_errors_are_actionable_and_emit_events(
    make: object,
    expected: str,
    plugin: KubeletPlugin,
    kubelet: KubeletEmulator,
    apiserver: ApiServerEmulator,
    store: StateStore,
) -> None:
    kubelet.wait_registered(DRIVER)
    obj = apiserver.put_claim(make())  # type: ignore[operator]
    uid = obj["metadata"]["uid"]
    for version in VERSIONS:
        entry = kubelet.prepare(DRIVER, [ref(obj)], version=version).claims[uid]
        assert expected in entry.error
        assert entry.error.startswith(f"{DRIVER}: claim default/{obj['metadata']['name']}: ")
    assert store.claim(uid) is None
    events = [e for e in apiserver.events() if e["involvedObject"]["uid"] == uid]
    assert len(events) == 2
    assert events[0]["type"] == "Warning" and events[0]["reason"] == "ClaimPrepareFailed"
    assert expected in events[0]["message"]


def test_replaced_and_missing_claims(
    plugin: KubeletPlugin, kubelet: KubeletEmulator, apiserver: ApiServerEmulator
) -> None:
    kubelet.wait_registered(DRIVER)
    old = apiserver.put_claim(claim("replaced", [("nic", DRIVER, "eth1")]))
    apiserver.delete_claim("default", "replaced")
    new = apiserver.put_claim(claim("replaced", [("nic", DRIVER, "eth1")]))
    resp = kubelet.prepare(DRIVER, [ref(old), ("default", "uid-gone", "gone")])
    assert "claim was replaced" in resp.claims[old["metadata"]["uid"]].error
    assert new["metadata"]["uid"] in resp.claims[old["metadata"]["uid"]].error
    assert "not found in the API server" in resp.claims["uid-gone"].error


def test_prepare_is_idempotent_without_api_calls(
    plugin: KubeletPlugin, kubelet: KubeletEmulator, apiserver: ApiServerEmulator
) -> None:
    kubelet.wait_registered(DRIVER)
    obj = apiserver.put_claim(claim("idem", [("nic", DRIVER, "eth1"), ("nic", DRIVER, "eth2")]))
    first = kubelet.prepare(DRIVER, [ref(obj)], version="v1.DRAPlugin")
    gets = apiserver.store.request_count("get", "resourceclaims")
    again = kubelet.prepare(DRIVER, [ref(obj)], version="v1.DRAPlugin")
    beta = kubelet.prepare(DRIVER, [ref(obj)], version="v1beta1.DRAPlugin")
    assert apiserver.store.request_count("get", "resourceclaims") == gets
    assert first == again
    uid = obj["metadata"]["uid"]
    assert [d.device_name for d in beta.claims[uid].devices] == ["eth1", "eth2"]


def test_device_held_by_live_claim_is_refused_stale_one_released(
    plugin: KubeletPlugin,
    kubelet: KubeletEmulator,
    apiserver: ApiServerEmulator,
    store: StateStore,
) -> None:
    kubelet.wait_registered(DRIVER)
    a = apiserver.put_claim(claim("a", [("nic", DRIVER, "eth1")]))
    b = apiserver.put_claim(claim("b", [("nic", DRIVER, "eth1")]))
    assert kubelet.prepare(DRIVER, [ref(a)]).claims[a["metadata"]["uid"]].error == ""
    err = kubelet.prepare(DRIVER, [ref(b)]).claims[b["metadata"]["uid"]].error
    assert f"device {POOL}/eth1 is already prepared for claim default/a" in err
    # claim a vanishes from the API server without an unprepare: its entry is stale
    apiserver.delete_claim("default", "a")
    assert kubelet.prepare(DRIVER, [ref(b)]).claims[b["metadata"]["uid"]].error == ""
    assert store.claim(a["metadata"]["uid"]) is None
    owner = store.device_owner(POOL, "eth1")
    assert owner is not None and owner.uid == b["metadata"]["uid"]


@pytest.mark.parametrize("version", VERSIONS)
def test_unprepare_from_local_state(
    version: str,
    plugin: KubeletPlugin,
    kubelet: KubeletEmulator,
    apiserver: ApiServerEmulator,
    store: StateStore,
) -> None:
    kubelet.wait_registered(DRIVER)
    obj = apiserver.put_claim(claim("gone-later", [("nic", DRIVER, "eth1")]))
    uid = obj["metadata"]["uid"]
    assert kubelet.prepare(DRIVER, [ref(obj)], version=version).claims[uid].error == ""
    apiserver.delete_claim("default", "gone-later")  # the claim may be gone already
    resp = kubelet.unprepare(DRIVER, [ref(obj), ("default", "never-seen", "x")], version=version)
    assert {k: v.error for k, v in resp.claims.items()} == {uid: "", "never-seen": ""}
    assert store.claim(uid) is None and store.plans_for_claim(uid) == []
    assert store.device_owner(POOL, "eth1") is None
    again = kubelet.unprepare(DRIVER, [ref(obj)], version=version)
    assert again.claims[uid].error == ""


def test_concurrent_prepares_of_one_claim_serialize(
    engine: PrepareEngine, apiserver: ApiServerEmulator, store: StateStore
) -> None:
    from knd.kubelet.types import ClaimRef

    objs = [apiserver.put_claim(claim(f"c{i}", [("nic", DRIVER, f"eth{i}")])) for i in range(4)]
    refs = [ClaimRef(*ref(o)) for o in objs]
    answers: list[dict[str, object]] = []
    lock = threading.Lock()

    def worker() -> None:
        result = engine.prepare(refs)
        with lock:
            answers.append(dict(result))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8 and all(a == answers[0] for a in answers)
    assert all(not r.error for r in answers[0].values())  # type: ignore[attr-defined]
    assert len(store.claims()) == 4
    assert (
        apiserver.store.request_count("get", "resourceclaims") == 4
    )  # each claim fetched once; the rest hit the store


def test_profile_hook_resolved_and_released(
    store: StateStore, apiserver: ApiServerEmulator, kube_api: KubeClaimApi
) -> None:
    from knd.api.config import NetworkConfig, decode
    from knd.kubelet.types import ClaimRef

    calls: list[tuple[str, str, str, str]] = []

    class Profiles:
        def resolve(
            self,
            claim_uid: str,
            device_name: str,
            profile: str,
            config: NetworkConfig | None = None,
        ) -> NetworkConfig:
            calls.append(("resolve", claim_uid, device_name, profile))
            return decode({"interface": {"addresses": ["10.9.0.5/24"], "mtu": 1400}})

        def release(self, claim_uid: str, device_name: str, profile: str) -> None:
            calls.append(("release", claim_uid, device_name, profile))

    eng = PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=kube_api,
        events=kube_api,
        profiles=Profiles(),
    )
    obj = apiserver.put_claim(
        claim(
            "ipam",
            [("nic", DRIVER, "eth7")],
            configs=[opaque("FromClaim", {"profile": "blue", "interface": {"mtu": 9000}})],
        )
    )
    r = ClaimRef(*ref(obj))
    assert eng.prepare([r])[r.uid].error == ""
    plan = store.plans_for_claim(r.uid)[0]
    assert plan.plan["config"]["interface"] == {"addresses": ["10.9.0.5/24"], "mtu": 9000}
    assert eng.unprepare([r]) == {r.uid: ""}
    assert calls == [("resolve", r.uid, "eth7", "blue"), ("release", r.uid, "eth7", "blue")]


def test_socket_files_not_world_accessible(plugin: KubeletPlugin) -> None:
    for path in (plugin.paths.registration, plugin.paths.dra):
        assert os.stat(path).st_mode & 0o077 == 0


def test_plan_builder_failures_fail_only_that_claim(
    store: StateStore, apiserver: ApiServerEmulator, kube_api: KubeClaimApi
) -> None:
    from knd.driver.errors import ClaimError
    from knd.kubelet.types import ClaimRef

    class Builder:
        def build(
            self, device_name: str, pod_uid: str, claim: object, request: str, config: object
        ) -> dict[str, str]:
            if device_name == "missing0":
                raise ClaimError("device node-a/missing0: interface missing0 not found on the host")
            if device_name == "boom0":
                raise RuntimeError("netlink exploded")
            return {"device": device_name}

    eng = PrepareEngine(
        driver=DRIVER, store=store, reader=kube_api, events=kube_api, plan_builder=Builder()
    )
    objs = [
        apiserver.put_claim(claim(n, [("nic", DRIVER, f"{n}0")])) for n in ("ok", "missing", "boom")
    ]
    refs = [ClaimRef(*ref(o)) for o in objs]
    res = eng.prepare(refs)
    assert res[refs[0].uid].error == ""
    assert res[refs[1].uid].error.endswith("interface missing0 not found on the host")
    assert "internal error: RuntimeError('netlink exploded')" in res[refs[2].uid].error
    assert store.claim(refs[0].uid) is not None
    assert store.claim(refs[1].uid) is None and store.claim(refs[2].uid) is None
    assert {e["involvedObject"]["name"] for e in apiserver.events()} == {"missing", "boom"}


def test_device_of_another_nodes_pool_is_refused(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    engine = PrepareEngine(
        driver=DRIVER, store=store, reader=kube_api, events=kube_api, pool="some-other-node"
    )
    obj = apiserver.put_claim(claim("elsewhere", [("nic", DRIVER, "eth1")]))
    meta = obj["metadata"]
    result = engine.prepare([ClaimRef(meta["namespace"], meta["uid"], meta["name"])])
    error = result[meta["uid"]].error
    assert f"belongs to pool '{POOL}', not to this node's pool 'some-other-node'" in error
    assert store.claim(meta["uid"]) is None
