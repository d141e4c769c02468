"""Health stream on a real veth (root): taking the link down makes its device UNHEALTHY."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from knd._proto.kubelet import health_v1alpha1_pb2 as hpb
from knd.kubelet.health import HealthMonitor
from knd.kubelet.health_probe import HealthTarget, SysfsLinkProbe
from knd.kubelet.plugin import KubeletPlugin
from knd.kubelet.types import ClaimRef, PrepareResult
from knd.lab.kubelet import KubeletEmulator

pytestmark = pytest.mark.netns

DRIVER = "dra.net"


@pytest.fixture
def veth() -> Iterator[str]:
    if os.geteuid() != 0:
        reason = "needs root to create a veth pair"
        print(reason)
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    a, b = f"kl-{tag}a", f"kl-{tag}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "link", "set", a, "up"], check=True)
        subprocess.run(["ip", "link", "set", b, "up"], check=True)
        yield a
    finally:
        subprocess.run(["ip", "link", "del", a], check=False)


class _NoClaims:
    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        return {}

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        return {}


def test_veth_down_reported_unhealthy(veth: str, tmp_path: Path) -> None:
    targets = [HealthTarget("node", veth, veth)]
    monitor = HealthMonitor(SysfsLinkProbe(lambda: targets), poll_s=0.1, resend_s=1.0)
    plugin = KubeletPlugin(DRIVER, _NoClaims(), tmp_path, health=monitor)
    plugin.start()
    emu = KubeletEmulator(tmp_path).start()
    try:
        emu.wait_registered(DRIVER)
        stream = emu.watch_health(DRIVER, timeout=30)
        first = next(stream)
        assert [(d.device.device_name, d.health) for d in first.devices] == [(veth, hpb.HEALTHY)]
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        seen = []
        for msg in stream:
            seen.append(msg.devices[0].health)
            if msg.devices[0].health == hpb.UNHEALTHY:
                assert msg.devices[0].message == f"netdev {veth} operstate down"
                break
        assert seen[-1] == hpb.UNHEALTHY
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
        for msg in stream:
            if msg.devices[0].health == hpb.HEALTHY:
                break
        assert msg.devices[0].health == hpb.HEALTHY
        stream.close()
    finally:
        emu.stop()
        plugin.stop()
