"""Event masks per runtime NRI version and decoding of pods into knd.nri.types."""

from __future__ import annotations

import pytest

from knd._proto import nri_pb2
from knd.nri import events as ev
from knd.nri import routes
from knd.nri.handler import NullHandler
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
    assert ev.subscription_mask(routes.DEFAULT_EVENTS, (0, 8, 0)) == 0xF
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


def test_one_event_table_drives_subscription_routes_and_failure_policy() -> None:
    """Subscription, method routes and failure policies all come from routes.EVENT_TABLE."""
    from knd.nri.plugin import NriPlugin, PluginConfig

    assert {r.event for r in routes.EVENT_TABLE} == routes.DEFAULT_EVENTS
    assert {r.method for r in routes.EVENT_TABLE} == {
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "CreateContainer",
    }
    policy = {r.method: r.failure for r in routes.EVENT_TABLE}
    assert policy["RunPodSandbox"] is routes.Failure.FAIL_RUNTIME
    assert policy["CreateContainer"] is routes.Failure.FAIL_RUNTIME
    assert policy["StopPodSandbox"] is routes.Failure.LOG_AND_SUCCEED
    assert policy["RemovePodSandbox"] is routes.Failure.LOG_AND_SUCCEED
    # every row is routed by the plugin, and nothing else besides the control methods
    plugin = NriPlugin(NullHandler(), PluginConfig())
    assert set(plugin._routes) == {r.method for r in routes.EVENT_TABLE} | {
        "Configure",
        "Synchronize",
        "Shutdown",
        "StateChange",
    }
    # an event without a row cannot be subscribed to (it would never reach a hook)
    with pytest.raises(ValueError, match="START_CONTAINER"):
        PluginConfig(events=frozenset({ev.Event.RUN_POD_SANDBOX, ev.Event.START_CONTAINER}))
    assert PluginConfig(events=frozenset({ev.Event.RUN_POD_SANDBOX})).events == {
        ev.Event.RUN_POD_SANDBOX
    }
