"""Claim status writer: SSA of status.devices through knd.kube.connection, retries, bounds."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubelet_claims import DRIVER, GPU, POOL, claim

from knd.driver.claim_api import KubeClaimApi
from knd.driver.status_writer import Condition, DeviceStatus, NetworkData, StatusWriter
from knd.lab.apiserver import ApiServerEmulator

pytestmark = pytest.mark.unit


def _ready(device: str, ip: str) -> DeviceStatus:
    return DeviceStatus(
        POOL,
        device,
        conditions=(
            Condition("Ready", True, "NetworkDeviceReady", f"{device} moved into the pod"),
            Condition("NetworkReady", True, "NetworkReady", "addresses and routes configured"),
        ),
        network=NetworkData("net1", (ip, ip), "aa:bb:cc:dd:ee:ff"),
    )


def test_apply_merges_per_device_and_keeps_other_managers(
    apiserver: ApiServerEmulator, kube_api: KubeClaimApi
) -> None:
    apiserver.put_claim(
        claim("st", [("gpu", GPU, "gpu-0"), ("nic", DRIVER, "eth1"), ("nic", DRIVER, "eth2")])
    )
    gpu_entry = {"driver": GPU, "pool": "gpu-pool", "device": "gpu-0", "data": {"x": 1}}
    kube_api.apply_devices("default", "st", [gpu_entry], GPU)
    writer = StatusWriter(applier=kube_api, driver=DRIVER)
    try:
        assert writer.submit("default", "st", [_ready("eth1", "10.0.0.5/24")])
        assert writer.submit("default", "st", [_ready("eth2", "10.0.0.6/24")])
        assert writer.flush()
        devices = apiserver.claim("default", "st")["status"]["devices"]  # type: ignore[index]
        by_dev = {d["device"]: d for d in devices}
        assert set(by_dev) == {"gpu-0", "eth1", "eth2"}
        assert by_dev["gpu-0"] == gpu_entry
        eth1 = by_dev["eth1"]
        assert eth1["driver"] == DRIVER and eth1["pool"] == POOL
        assert eth1["networkData"] == {
            "interfaceName": "net1",
            "ips": ["10.0.0.5/24"],
            "hardwareAddress": "aa:bb:cc:dd:ee:ff",
        }
        assert [(c["type"], c["status"], c["reason"]) for c in eth1["conditions"]] == [
            ("Ready", "True", "NetworkDeviceReady"),
            ("NetworkReady", "True", "NetworkReady"),
        ]
        assert eth1["conditions"][0]["message"] == "eth1 moved into the pod"
        # removing our entry for eth2 (detach) drops it from the claim, the GPU's stays
        writer.submit("default", "st", [_ready("eth2", "10.0.0.6/24")], remove=True)
        assert writer.flush()
        devices = apiserver.claim("default", "st")["status"]["devices"]  # type: ignore[index]
        assert sorted(d["device"] for d in devices) == ["eth1", "gpu-0"]
    finally:
        writer.close()


def test_retries_with_backoff_after_failures(
    apiserver: ApiServerEmulator, kube_api: KubeClaimApi
) -> None:
    apiserver.put_claim(claim("retry", [("nic", DRIVER, "eth1")]))
    for _ in range(3):
        apiserver.fail_next("PATCH", 500)
    writer = StatusWriter(applier=kube_api, driver=DRIVER, backoff_initial_s=0.01)
    try:
        writer.submit("default", "retry", [_ready("eth1", "10.1.0.1/16")])
        assert writer.flush()
        assert apiserver.store.request_count("patch", "resourceclaims") == 4 and writer.applied == 1
        assert apiserver.claim("default", "retry")["status"]["devices"][0]["device"] == "eth1"  # type: ignore[index]
    finally:
        writer.close()


def test_gives_up_after_max_attempts(apiserver: ApiServerEmulator, kube_api: KubeClaimApi) -> None:
    apiserver.put_claim(claim("flaky", [("nic", DRIVER, "eth1")]))
    for _ in range(5):
        apiserver.fail_next("PATCH", 503)
    writer = StatusWriter(applier=kube_api, driver=DRIVER, max_attempts=3, backoff_initial_s=0.01)
    try:
        writer.submit("default", "flaky", [_ready("eth1", "10.1.0.1/16")])
        assert writer.flush()
        assert writer.failed == 1 and apiserver.store.request_count("patch", "resourceclaims") == 3
    finally:
        writer.close()


@pytest.mark.parametrize(("code", "retried"), [(400, False), (403, False), (404, False),
                                              (422, False), (409, True), (429, True)])  # fmt: skip
def test_only_conflicts_throttling_and_server_errors_are_retried(
    apiserver: ApiServerEmulator, kube_api: KubeClaimApi, code: int, retried: bool
) -> None:
    apiserver.put_claim(claim("c4xx", [("nic", DRIVER, "eth1")]))
    apiserver.fail_next("PATCH", code)
    writer = StatusWriter(applier=kube_api, driver=DRIVER, max_attempts=5, backoff_initial_s=0.01)
    try:
        writer.submit("default", "c4xx", [_ready("eth1", "10.1.0.1/16")])
        assert writer.flush()
        patches = apiserver.store.request_count("patch", "resourceclaims")
        if retried:
            assert (patches, writer.applied, writer.failed) == (2, 1, 0)
        else:
            assert (patches, writer.applied, writer.failed) == (1, 0, 1)
            stored = apiserver.claim("default", "c4xx") or {}
            assert not (stored.get("status") or {}).get("devices")
    finally:
        writer.close()


def test_a_recreated_claim_never_gets_the_old_claims_status(
    apiserver: ApiServerEmulator, kube_api: KubeClaimApi
) -> None:
    old = apiserver.put_claim(claim("same-name", [("nic", DRIVER, "eth1")]))
    old_uid = old["metadata"]["uid"]
    apiserver.delete_claim("default", "same-name")
    new = apiserver.put_claim(claim("same-name", [("nic", DRIVER, "eth1")]))
    assert new["metadata"]["uid"] != old_uid
    writer = StatusWriter(applier=kube_api, driver=DRIVER, backoff_initial_s=0.01)
    try:
        writer.submit("default", "same-name", [_ready("eth1", "10.1.0.1/16")], uid=old_uid)
        assert writer.flush()
        assert writer.failed == 1 and apiserver.store.request_count("patch", "resourceclaims") == 1
        assert not (apiserver.claim("default", "same-name") or {}).get("status", {}).get("devices")
        writer.submit(
            "default", "same-name", [_ready("eth1", "10.1.0.1/16")], uid=new["metadata"]["uid"]
        )
        assert writer.flush() and writer.applied == 1
        assert apiserver.claim("default", "same-name")["status"]["devices"]  # type: ignore[index]
    finally:
        writer.close()


def test_transition_time_moves_only_with_the_status_and_no_change_writes_nothing(
    apiserver: ApiServerEmulator, kube_api: KubeClaimApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    import knd.driver.status_writer as sw

    clock = iter(f"2026-01-01T00:00:{i:02d}Z" for i in range(60))
    monkeypatch.setattr(sw, "_now", lambda: next(clock))
    apiserver.put_claim(claim("ltt", [("nic", DRIVER, "eth1")]))
    writer = StatusWriter(applier=kube_api, driver=DRIVER)

    def ready_time() -> tuple[str, str, str]:
        (entry,) = apiserver.claim("default", "ltt")["status"]["devices"]  # type: ignore[index]
        ready = entry["conditions"][0]
        return ready["status"], ready["message"], ready["lastTransitionTime"]

    try:
        writer.submit("default", "ltt", [_ready("eth1", "10.1.0.1/16")])
        assert writer.flush()
        status, _, first = ready_time()
        assert status == "True"
        writes = apiserver.store.request_count("patch", "resourceclaims")
        # the same status again (a Synchronize re-assertion): nothing is written
        writer.submit("default", "ltt", [_ready("eth1", "10.1.0.1/16")])
        assert writer.flush()
        assert apiserver.store.request_count("patch", "resourceclaims") == writes
        assert writer.unchanged == 1
        # a new message, same status: written, but the transition time stays
        changed = DeviceStatus(
            POOL, "eth1", conditions=(Condition("Ready", True, "NetworkDeviceReady", "renamed"),)
        )
        writer.submit("default", "ltt", [changed])
        assert writer.flush()
        assert ready_time() == ("True", "renamed", first)
        # the status flips: the transition time moves
        failed = DeviceStatus(
            POOL, "eth1", conditions=(Condition("Ready", False, "NetworkDeviceAttachFailed", "x"),)
        )
        writer.submit("default", "ltt", [failed])
        assert writer.flush()
        flipped = ready_time()
        assert flipped[0] == "False" and flipped[2] > first
    finally:
        writer.close()


class _Blocked:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    def apply_devices(
        self, namespace: str, name: str, devices: list[dict[str, Any]], manager: str
    ) -> None:
        self.release.wait(10)
        self.calls.append((name, devices))


def test_submit_never_blocks_and_queue_is_bounded() -> None:
    applier = _Blocked()
    writer = StatusWriter(applier=applier, driver=DRIVER, max_claims=3)
    try:
        results = [writer.submit("ns", f"c{i}", [_ready("eth1", "10.0.0.1/8")]) for i in range(5)]
        # the worker holds c0 in the (blocked) apply; c1, c2 wait; c3 and c4 exceed the bound
        assert results == [True, True, True, False, False] and writer.dropped == 2
        # repeated submits for a queued claim coalesce instead of growing the queue
        assert writer.submit("ns", "c1", [_ready("eth2", "10.0.0.2/8")])
        applier.release.set()
        assert writer.flush()
        names = [n for n, _ in applier.calls]
        assert sorted(names) == ["c0", "c1", "c2"]
        c1 = next(devs for n, devs in applier.calls if n == "c1")
        assert sorted(d["device"] for d in c1) == ["eth1", "eth2"]
    finally:
        applier.release.set()
        writer.close()


def test_submit_returns_while_apply_is_slow() -> None:
    applier = _Blocked()
    writer = StatusWriter(applier=applier, driver=DRIVER)
    try:
        for i in range(50):
            assert writer.submit("ns", "same", [_ready(f"eth{i}", "10.0.0.1/8")])
        # all 50 submits returned while the first apply was still blocked on the event (no
        # call has completed yet), without any timing assumption
        assert applier.calls == []
        applier.release.set()
        assert writer.flush()
        assert len(applier.calls) >= 1
        assert len(applier.calls[-1][1]) == 50  # the last apply carries every device
    finally:
        applier.release.set()
        writer.close()


class _SlowApplier:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def apply_devices(self, namespace: str, name: str, body: Any, driver: str) -> None:
        self.calls += 1
        self.release.wait(5)


def test_forget_drops_a_claims_entries_even_while_its_apply_is_in_flight() -> None:
    applier = _SlowApplier()
    writer = StatusWriter(applier=applier, driver=DRIVER)  # type: ignore[arg-type]
    try:
        writer.submit("default", "a", [_ready("eth1", "10.0.0.5/24")])
        writer.submit("default", "b", [_ready("eth2", "10.0.0.6/24")])
        applier.release.set()
        assert writer.flush()
        assert writer.known_claims() == 2
        writer.forget("default", "a")
        assert writer.known_claims() == 1
        applier.release.clear()
        writer.submit("default", "b", [_ready("eth3", "10.0.0.7/24")])
        deadline = time.monotonic() + 5
        while applier.calls < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        writer.forget("default", "b")  # while its apply is in flight
        applier.release.set()
        assert writer.flush()
        assert writer.known_claims() == 0, "a forgotten claim is not kept after its apply"
    finally:
        writer.close()


class _Refusing:
    """An ApiConnection stand-in answering every request with kube-apiserver 1.37's 422 for a
    claim whose stored opaque parameters are not compact JSON (seen on the real server)."""

    def __init__(self) -> None:
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from knd.kube.errors import ApiError

        self.calls += 1
        raise ApiError(
            422,
            'ResourceClaim.resource.k8s.io "c" is invalid: status.allocation: '
            "Invalid value: null: field cannot be modified once set",
        )


def test_a_refused_status_is_reported_once_with_the_remedy_and_not_retried() -> None:
    conn = _Refusing()
    refused: list[tuple[str, str, str | None, str]] = []
    writer = StatusWriter(
        applier=KubeClaimApi(conn, component=DRIVER),  # type: ignore[arg-type]
        driver=DRIVER,
        backoff_initial_s=0.01,
        on_refused=lambda *a: refused.append(a),
    )
    try:
        writer.submit("ns1", "c", [_ready("eth1", "10.1.0.1/16")], uid="u-1")
        assert writer.flush()
        assert conn.calls == 1 and writer.failed == 1
        ((ns, name, uid, message),) = refused
        assert (ns, name, uid) == ("ns1", "c", "u-1")
        assert "status.allocation" in message and "canonical JSON" in message
    finally:
        writer.close()


def test_other_refusals_carry_the_servers_message_only() -> None:
    from knd.driver.claim_api import RAW_PARAMETERS_QUIRK, _explain
    from knd.kube.errors import ApiError

    assert RAW_PARAMETERS_QUIRK not in _explain(ApiError(422, "spec.devices: Invalid value"))
    assert RAW_PARAMETERS_QUIRK not in _explain(ApiError(403, "forbidden"))
