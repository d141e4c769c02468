"""Device health: sysfs probe verdicts and the NodeWatchResources stream seen by kubelet."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubelet_claims import DRIVER

from knd._proto.kubelet import health_v1alpha1_pb2 as hpb
from knd.driver.prepare import PrepareEngine
from knd.kubelet.health import HealthMonitor
from knd.kubelet.health_probe import HealthTarget, PodLinkState, SysfsLinkProbe
from knd.kubelet.plugin import KubeletPlugin
from knd.lab.kubelet import KubeletEmulator

pytestmark = pytest.mark.unit


def _netdev(root: Path, name: str, oper: str, carrier: str | None) -> None:
    d = root / "class" / "net" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "operstate").write_text(oper + "\n")
    if carrier is not None:
        (d / "carrier").write_text(carrier + "\n")


def test_probe_verdicts(tmp_path: Path) -> None:
    _netdev(tmp_path, "up0", "up", "1")
    _netdev(tmp_path, "down0", "down", None)
    _netdev(tmp_path, "nocar0", "up", "0")
    (tmp_path / "class" / "infiniband" / "mlx5_0").mkdir(parents=True)
    targets = [
        HealthTarget("p", "a", "up0", "mlx5_0"),
        HealthTarget("p", "b", "down0"),
        HealthTarget("p", "c", "nocar0"),
        HealthTarget("p", "d", "missing0"),
        HealthTarget("p", "e", "up0", "mlx5_9"),
        HealthTarget("p", "f", "../../etc"),
        HealthTarget("p", "g"),
    ]
    got = {
        s.device: (s.healthy, s.message)
        for s in SysfsLinkProbe(lambda: targets, tmp_path).snapshot()
    }
    assert got == {
        "a": (True, "link up, carrier present"),
        "b": (False, "netdev down0 operstate down"),
        "c": (False, "netdev nocar0 has no carrier"),
        "d": (False, "netdev missing0 not present"),
        "e": (False, "RDMA device mlx5_9 not present"),
        "f": (False, "invalid interface name '../../etc'"),
        "g": (None, "no netdev or RDMA device"),
    }


def test_an_attached_device_is_judged_by_its_link_inside_the_pod(tmp_path: Path) -> None:
    """The host's sysfs no longer shows a NIC moved into a pod; its health comes from the link
    in the pod's netns by the same rules, never "not present" for being where it should be."""
    (tmp_path / "class" / "infiniband" / "mlx5_0").mkdir(parents=True)
    _netdev(tmp_path, "host0", "up", "1")
    in_pods = {
        "a": PodLinkState("pod ns/p1", "net1", "up", True),
        "b": PodLinkState("pod ns/p2", "net2", "lowerlayerdown", False),
        "c": PodLinkState("pod ns/p3", "net3", "up", False),
        "d": PodLinkState("pod ns/p4", "net4", None, None),
        "e": PodLinkState("pod ns/p5", "net5", "up", True, rdma_moved=True),
        "i": PodLinkState("pod ns/p6", "net6", "up", True),
    }
    targets = [
        HealthTarget("p", "a", "ens1"),
        HealthTarget("p", "b", "ens2"),
        HealthTarget("p", "c", "ens3"),
        HealthTarget("p", "d", "ens4"),
        HealthTarget("p", "e", "ens5", "mlx5_7"),  # its RDMA device left with it
        HealthTarget("p", "h", "host0", "mlx5_0"),  # not attached: the host's sysfs
        HealthTarget("p", "i"),  # the host's rescan no longer names its netdev
    ]
    probe = SysfsLinkProbe(lambda: targets, tmp_path, attached=in_pods.get)
    got = {s.device: (s.healthy, s.message) for s in probe.snapshot()}
    assert got == {
        "a": (True, "link up, carrier present"),
        "b": (False, "netdev net2 in pod ns/p2 operstate lowerlayerdown"),
        "c": (False, "netdev net3 in pod ns/p3 has no carrier"),
        "d": (False, "netdev net4 in pod ns/p4 not present"),
        "e": (True, "link up, carrier present"),
        "h": (True, "link up, carrier present"),
        "i": (True, "link up, carrier present"),
    }


def test_stream_sends_full_list_then_changes(
    tmp_path: Path, engine: PrepareEngine, kroot: Path
) -> None:
    sysfs = tmp_path / "sys"
    _netdev(sysfs, "eth1", "up", "1")
    _netdev(sysfs, "eth2", "up", "1")
    targets = [HealthTarget("node-a", "eth1", "eth1"), HealthTarget("node-a", "eth2", "eth2")]
    monitor = HealthMonitor(SysfsLinkProbe(lambda: targets, sysfs), poll_s=0.05, resend_s=0.5)
    plugin = KubeletPlugin(DRIVER, engine, kroot, health=monitor)
    plugin.start()
    emu = KubeletEmulator(kroot).start()
    try:
        emu.wait_registered(DRIVER)
        stream = emu.watch_health(DRIVER, timeout=20)
        first = next(stream)
        assert {(d.device.pool_name, d.device.device_name, d.health) for d in first.devices} == {
            ("node-a", "eth1", hpb.HEALTHY),
            ("node-a", "eth2", hpb.HEALTHY),
        }
        assert all(d.last_updated_time > 0 for d in first.devices)
        _netdev(sysfs, "eth2", "down", None)
        for msg in stream:
            health = {d.device.device_name: (d.health, d.message) for d in msg.devices}
            if health["eth2"][0] == hpb.UNHEALTHY:
                break
        assert health == {
            "eth1": (hpb.HEALTHY, "link up, carrier present"),
            "eth2": (hpb.UNHEALTHY, "netdev eth2 operstate down"),
        }
        # with no change the complete list is resent periodically
        again = next(stream)
        assert len(again.devices) == 2
        stream.close()
    finally:
        emu.stop()
        plugin.stop()


def test_resend_interval_is_capped() -> None:
    class Empty:
        def snapshot(self) -> list[object]:
            return []

    assert HealthMonitor(Empty(), resend_s=60).resend_s == 10.0  # type: ignore[arg-type]
