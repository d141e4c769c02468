"""Event masks per runtime NRI version and decoding of pods into knd.nri.types."""

from __future__ import annotations

import pytest

from knd._proto import nri_pb2
from knd.nri import events as ev
from knd.nri.types import ContainerAdjust, DeviceNode, adjustment_to_pb, pod_from_pb

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("nri", "name", "version", "expected"),
    [
        ("", "containerd", "1.7.24~ds1", (0, 8, 0)),
        ("", "containerd", "2.1.9+unknown", (0, 8, 0)),
        ("", "containerd", "v2.2.1", (0, 10, 0)),
        ("", "containerd", "2.3.0", (0, 12, 0)),
        ("v0.12.2", "containerd", "2.9.0", (0, 12, 2)),
        ("", "cri-o", "1.33.2", (0, 9, 0)),
        ("", "cri-o", "1.34.0", (0, 10, 0)),
        ("", "unknown-runtime", "9.9", None),
        ("", "containerd", "", None),
    ],
)
def test_nri_version_inference(
    nri: str, name: str, version: str, expected: tuple[int, int, int] | None
) -> None:
    assert ev.nri_version(nri, name, version) == expected


def test_mask_is_explicit_and_valid_for_the_runtime() -> None:
    new = frozenset({ev.Event.RUN_POD_SANDBOX, ev.Event.UPDATE_POD_SANDBOX})
    assert ev.subscription_mask(ev.DEFAULT_EVENTS, (0, 8, 0)) == 0xF
    assert ev.subscription_mask(new, (0, 10, 0)) == 0x801
    assert ev.subscription_mask(new, (0, 8, 0)) == 0x1  # 0x800 is invalid before v0.10
    assert ev.subscription_mask(new, None) == 0x1  # unknown runtime: conservative
    assert ev.subscription_mask(frozenset({ev.Event.VALIDATE_CONTAINER_ADJUSTMENT}), None) != 0


def test_pod_decoding_finds_network_namespace_or_host_network() -> None:
    p = nri_pb2.PodSandbox(id="x", uid="u", name="n", namespace="ns", ips=["10.0.0.2"])
    p.linux.namespaces.add(type="pid", path="/proc/9/ns/pid")
    assert pod_from_pb(p).host_network
    p.linux.namespaces.add(type="network", path="")
    assert pod_from_pb(p).netns is None  # empty path = host network
    p.linux.namespaces.add(type="network", path="/run/netns/cni-1")
    info = pod_from_pb(p)
    assert info.netns == "/run/netns/cni-1" and info.ips == ("10.0.0.2",) and not info.host_network


def test_adjustment_sets_mode_and_optional_ids() -> None:
    adj = adjustment_to_pb(
        ContainerAdjust((DeviceNode("/dev/a", 1, 2, uid=5), DeviceNode("/dev/a", 9, 9)))
    )
    (d,) = adj.linux.devices
    assert (d.path, d.major, d.minor, d.file_mode.value, d.uid.value, d.HasField("gid")) == (
        "/dev/a",
        1,
        2,
        0o666,
        5,
        False,
    )
    assert adjustment_to_pb(None) == nri_pb2.ContainerAdjustment()
