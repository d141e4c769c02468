"""One rule book: every config `knd config validate` accepts builds a plan for a device that
exists (and offers the ethtool names asked for), and every config it refuses is refused by the
plan builder too, under the same field path.

The generator aims at the edges where the validator and the builder used to disagree: MTUs near
the bounds (300,000 passed validation and failed at prepare), empty strings meaning "unset",
dotted and 20-octet hardware addresses, tables 0 and 2^32-1, IPv6 selectors, host bits in
destinations, duplicate routes and neighbours against the host's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knd.api.check import check_parameters
from knd.api.config import NetworkConfig, decode
from knd.api.errors import ConfigError
from knd.netns.builder import build_plan
from knd.netns.errors import PlanError
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import AttachPlan, CharDevice, HostSide, Neighbor, Route, Rule

pytestmark = pytest.mark.unit

FEATURES = (
    "rx-checksum",
    "rx-gro",
    "rx-lro",
    "tx-checksum-ip-generic",
    "tx-generic-segmentation",
    "tx-scatter-gather",
    "tx-tcp-segmentation",
    "tx-tcp6-segmentation",
)
PRIVATE_FLAGS = ("link-down-on-close", "rx-cqe-moder")
HOST = HostSide(
    name="eth1",
    ifindex=7,
    mac="02:00:00:00:00:01",
    mtu=1500,
    up=True,
    addresses=("10.0.1.5/24", "2001:db8:1::5/64"),
    routes=(
        Route("10.0.1.0/24", None, "10.0.1.5", 253, 254),
        Route("0.0.0.0/0", "10.0.1.1", None, 0, 101),
        Route("2001:db8:1::/64", None, None, 253, 254),
    ),
    rules=(Rule(table=101, priority=1000, source="10.0.1.0/24"),),
    neighbors=(Neighbor("10.0.1.9", "02:00:00:00:00:09"),),
)
NETDEV = HostState(host=HOST, features=FEATURES, private_flags=PRIVATE_FLAGS)
RDMA_ONLY = HostState(
    host=None,
    rdma_link="mlx5_0",
    rdma_char_devices=(CharDevice("/dev/infiniband/uverbs0", "c", 231, 192),),
)
LEASE = DhcpLease("10.9.0.7/24", "10.9.0.1", server="10.9.0.1", lease_time=600)


def edge_ints(low: int, high: int) -> st.SearchStrategy[int]:
    """Values at and just past both bounds, plus anything in between."""
    return st.sampled_from([low - 1, low, low + 1, high - 1, high, high + 1]) | st.integers(
        low - 2, high + 2
    )


maybe_empty = st.just("")
ifnames = st.sampled_from(["eth9", "net_1.a-b", "a" * 15, "a" * 16, ".", "é0"]) | maybe_empty
ipv4 = st.builds(lambda a, b: f"10.{a}.{b}.1", st.integers(0, 255), st.integers(0, 255))
ipv6 = st.sampled_from(["2001:db8::1", "2001:DB8::0:1", "fe80::1", "2001:db8:1::9"])
ips = ipv4 | ipv6 | st.sampled_from(["10.0.1.9", "192.0.2.300", "fe80::1%eth0"])
cidrs = (
    st.builds(lambda ip, p: f"{ip}/{p}", ipv4, st.integers(0, 33))
    | st.builds(lambda ip, p: f"{ip}/{p}", ipv6, st.integers(0, 129))
    | st.sampled_from(["10.0.1.0/24", "0.0.0.0/0", "::/0", "10.0.0.1/08", "10.0.0.1"])
)
macs = st.sampled_from(
    [
        "02:AA:00:00:00:09",
        "02-aa-00-00-00-09",
        "02aa.0000.0009",
        "02:00:00:00:00:00:00:01",
        ":".join(["80"] * 20),
        "02:aa:00:00:00",
        "zz:aa:00:00:00:09",
    ]
)
feature_names = st.sampled_from([*FEATURES, "tso", "gro", "generic-receive-offload", "sg"])

interface = st.fixed_dictionaries(
    {},
    optional={
        "name": ifnames,
        "addresses": st.lists(cidrs, max_size=3),
        "dhcp": st.booleans(),
        "mtu": edge_ints(68, 262_140) | st.just(300_000) | st.just(2**31 - 1),
        "hardwareAddr": macs,
        "gsoMaxSize": edge_ints(1, 2**31 - 1),
        "groIPv4MaxSize": edge_ints(1, 2**31 - 1),
        "disableEbpfPrograms": st.booleans(),
        "forwarding": st.booleans(),
        "arpIgnore": st.integers(-1, 9),
        "arpAnnounce": st.integers(-1, 3),
        "vrf": st.fixed_dictionaries(
            {"name": ifnames},
            optional={"table": st.sampled_from([0, 1, 253, 254, 255, 1000, 2**32 - 1, 2**32])},
        ),
    },
)
routes = st.fixed_dictionaries(
    {"destination": cidrs | maybe_empty},
    optional={
        "gateway": ips | maybe_empty,
        "source": ips | maybe_empty,
        "scope": st.sampled_from([0, 253, 254]),
        "table": st.sampled_from([0, 101, 254, 2**32 - 1, 2**32]),
    },
)
rules = st.fixed_dictionaries(
    {},
    optional={
        "priority": edge_ints(0, 32767),
        "source": cidrs | maybe_empty,
        "destination": cidrs | maybe_empty,
        "table": st.sampled_from([0, 101, 2**32 - 1]),
    },
)
neighbors = st.fixed_dictionaries(
    {"destination": ips | maybe_empty, "hardwareAddr": macs | maybe_empty}
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "interface": interface,
        "routes": st.lists(routes, max_size=3),
        "rules": st.lists(rules, max_size=2),
        "neighbors": st.lists(neighbors, max_size=2),
        "ethtool": st.fixed_dictionaries(
            {},
            optional={
                "features": st.dictionaries(feature_names, st.booleans(), max_size=3),
                "privateFlags": st.dictionaries(
                    st.sampled_from(PRIVATE_FLAGS), st.booleans(), max_size=2
                ),
            },
        ),
    },
)


def _accepted(data: dict[str, Any], rdma_only: bool = False) -> NetworkConfig | None:
    try:
        return check_parameters(data, rdma_only=rdma_only)
    except ConfigError:
        return None


def _lease_for(cfg: NetworkConfig) -> DhcpLease | None:
    """Prepare obtains a lease exactly when `interface.dhcp` is set."""
    return LEASE if cfg.interface is not None and cfg.interface.dhcp else None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_every_config_validate_accepts_builds_a_plan(data: dict[str, Any]) -> None:
    cfg = _accepted(data)
    if cfg is None:
        return
    plan = build_plan("eth1", "uid", cfg, NETDEV, lease=_lease_for(cfg))
    assert plan.pod is not None
    assert AttachPlan.from_json(plan.to_json()) == plan  # the persisted form re-checks too
    if cfg.interface is not None and cfg.interface.mtu is not None:
        assert plan.pod.mtu == cfg.interface.mtu


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_every_config_validate_refuses_the_builder_refuses(data: dict[str, Any]) -> None:
    try:
        check_parameters(data)
    except ConfigError as exc:
        with pytest.raises(PlanError) as refused:
            build_plan("eth1", "uid", decode(data), NETDEV, lease=LEASE)
        assert exc.errors[0].path in str(refused.value)


@settings(max_examples=200, deadline=None)
@given(configs | st.just({}) | st.just({"profile": "p"}))
def test_every_config_validate_accepts_for_an_rdma_only_device_builds(
    data: dict[str, Any],
) -> None:
    cfg = _accepted(data, rdma_only=True)
    if cfg is None:
        return
    plan = build_plan("mlx5-0", "uid", cfg, RDMA_ONLY)
    assert plan.pod is None and plan.rdma is not None


def test_the_mtu_disagreement_is_gone() -> None:
    """300,000 used to pass `knd config validate` and fail at prepare as `pod.mtu`."""
    with pytest.raises(ConfigError, match=r"interface\.mtu: must be an MTU \(68\.\.262140\)"):
        check_parameters({"interface": {"mtu": 300_000}})
    plan = build_plan("eth1", "uid", check_parameters({"interface": {"mtu": 262_140}}), NETDEV)
    assert plan.pod is not None and plan.pod.mtu == 262_140

    with pytest.raises(PlanError, match=r"interface\.mtu"):
        build_plan("eth1", "uid", decode({"interface": {"mtu": 300_000}}), NETDEV)


def test_dotted_and_long_hardware_addresses_build() -> None:
    """Go's ParseMAC forms that validation accepts reach the plan in the kernel's spelling."""
    for given_mac, want in (
        ("02aa.0000.0009", "02:aa:00:00:00:09"),
        ("02-AA-00-00-00-09", "02:aa:00:00:00:09"),
        (":".join(["80"] * 20), ":".join(["80"] * 20)),
    ):
        cfg = check_parameters(
            {
                "interface": {"hardwareAddr": given_mac},
                "neighbors": [{"destination": "10.0.1.8", "hardwareAddr": given_mac}],
            }
        )
        plan = build_plan("eth1", "uid", cfg, NETDEV)
        assert plan.pod is not None and plan.pod.mac == want
        assert Neighbor("10.0.1.8", want) in plan.pod.neighbors


def test_empty_gateway_means_unset_in_both() -> None:
    cfg = check_parameters(
        {"routes": [{"destination": "10.5.0.0/16", "scope": 253, "gateway": "", "source": ""}]}
    )
    plan = build_plan("eth1", "uid", cfg, NETDEV)
    assert plan.pod is not None
    assert Route("10.5.0.0/16", None, None, 253, 254) in plan.pod.routes


def test_merge_and_builder_share_the_route_identity() -> None:
    """Host bits and table 0 vs main: one route for the merge and for the builder alike."""
    from knd.api.merge import merge_configs

    low = decode({"routes": [{"destination": "10.7.0.1/16", "gateway": "10.0.1.1"}]})
    high = decode({"routes": [{"destination": "10.7.0.0/16", "gateway": "10.0.1.2", "table": 254}]})
    merged = merge_configs(low, high)
    assert merged.routes is not None and len(merged.routes) == 1
    assert merged.routes[0].gateway == "10.0.1.2"
    plan = build_plan("eth1", "uid", check_parameters(merged.model_dump(by_alias=True)), NETDEV)
    assert plan.pod is not None
    assert [r.gateway for r in plan.pod.routes if r.destination == "10.7.0.0/16"] == ["10.0.1.2"]
