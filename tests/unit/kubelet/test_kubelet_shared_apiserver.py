"""The kubelet side against the shared API server emulator (knd.lab.apiserver), which validates
every object against the published Kubernetes schema: the claims these tests write like
scheduler output are valid ResourceClaims, and the status knd applies is a valid status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubelet_claims import DRIVER, GPU, POOL, claim, opaque, ref

from knd.driver.claim_api import KubeClaimApi
from knd.driver.prepare import PrepareEngine
from knd.driver.status_writer import Condition, DeviceStatus, NetworkData, StatusWriter
from knd.driver.store import StateStore
from knd.kube.connection import connect_url
from knd.kubelet.plugin import KubeletPlugin
from knd.lab.apiserver import CLAIMS, ApiServerEmulator
from knd.lab.kubelet import KubeletEmulator

pytestmark = pytest.mark.unit


@pytest.fixture
def shared() -> Iterator[ApiServerEmulator]:
    with ApiServerEmulator() as emu:
        yield emu


def test_prepare_and_status_through_shared_emulator(
    shared: ApiServerEmulator, store: StateStore, kroot: Path
) -> None:
    raw = claim(
        "schema",
        [("gpu", GPU, "gpu-0"), ("nic", DRIVER, "eth1")],
        configs=[opaque("FromClaim", {"interface": {"name": "net1", "mtu": 9000}}, ["nic"])],
    )
    del raw["metadata"]["uid"]  # the server assigns it
    created = shared.store.create(CLAIMS, "default", raw)  # schema-validated (strict)
    api = KubeClaimApi(connect_url(shared.url), DRIVER, POOL)
    engine = PrepareEngine(driver=DRIVER, store=store, reader=api, events=api)
    plugin = KubeletPlugin(DRIVER, engine, kroot)
    plugin.start()
    kubelet = KubeletEmulator(kroot).start()
    writer = StatusWriter(applier=api, driver=DRIVER)
    try:
        kubelet.wait_registered(DRIVER)
        uid = created["metadata"]["uid"]
        entry = kubelet.prepare(DRIVER, [ref(created)]).claims[uid]
        assert entry.error == ""
        assert [d.device_name for d in entry.devices] == ["eth1"]
        writer.submit(
            "default",
            "schema",
            [
                DeviceStatus(
                    POOL,
                    "eth1",
                    (Condition("Ready", True, "NetworkDeviceReady", "eth1 is net1 in the pod"),),
                    NetworkData("net1", ("192.0.2.5/24",), "02:00:00:00:00:01"),
                )
            ],
        )
        assert writer.flush() and writer.applied == 1 and writer.failed == 0
        stored = shared.store.get(CLAIMS, "default", "schema")
        assert stored["status"]["devices"][0]["networkData"]["ips"] == ["192.0.2.5/24"]
        # a failing config produces a Warning Event the emulator accepts as a valid core Event
        bad = claim("bad", [("nic", DRIVER, "eth2")], configs=[opaque("FromClaim", {"x": 1})])
        del bad["metadata"]["uid"]
        bad_obj = shared.store.create(CLAIMS, "default", bad)
        err = kubelet.prepare(DRIVER, [ref(bad_obj)]).claims[bad_obj["metadata"]["uid"]].error
        assert "x: unknown field" in err
        assert shared.store.write_count("events") == 1
    finally:
        writer.close()
        kubelet.stop()
        plugin.stop()
