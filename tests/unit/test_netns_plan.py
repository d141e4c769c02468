"""AttachPlan codec, plan builder, ethtool name translation (pure, no root)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knd.api.config import decode
from knd.api.defaults import default_vrf_table
from knd.netns.builder import build_plan
from knd.netns.errors import PlanError
from knd.netns.ethtool_names import kernel_names, translate
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import (
    AttachPlan,
    CharDevice,
    HostSide,
    Neighbor,
    Route,
    Rule,
    Toggle,
)

pytestmark = pytest.mark.unit

VETH_FEATURES = (
    "rx-checksum",
    "rx-gro",
    "rx-lro",
    "tx-checksum-ip-generic",
    "tx-generic-segmentation",
    "tx-scatter-gather",
    "tx-scatter-gather-fraglist",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp-segmentation",
    "tx-tcp6-segmentation",
)

HOST = HostSide(
    name="eth1",
    ifindex=7,
    mac="02:00:00:00:00:01",
    mtu=1500,
    up=True,
    addresses=("10.0.1.5/24",),
    routes=(
        Route("10.0.1.0/24", None, "10.0.1.5", 253, 254),
        Route("0.0.0.0/0", "10.0.1.1", None, 0, 101),
        Route("192.0.2.0/24", "10.0.1.1", None, 0, 254),
    ),
    rules=(Rule(table=101, priority=1000, source="10.0.1.0/24"),),
    neighbors=(Neighbor("10.0.1.9", "02:00:00:00:00:09"),),
)
STATE = HostState(host=HOST, features=VETH_FEATURES)


def build(config: dict[str, object], **kw: object) -> AttachPlan:
    return build_plan("eth1", "uid", decode(config), STATE, **kw)  # type: ignore[arg-type]


def test_host_data_fills_what_config_leaves_empty() -> None:
    plan = build({})
    assert plan.pod is not None
    assert plan.pod.name == "eth1"
    assert plan.pod.addresses == ("10.0.1.5/24",)
    assert plan.pod.routes[0] == Route("10.0.1.0/24", None, "10.0.1.5", 253, 254)  # link first
    assert Route("0.0.0.0/0", "10.0.1.1", None, 0, 101) in plan.pod.routes
    assert plan.pod.rules == HOST.rules
    assert plan.pod.neighbors == HOST.neighbors
    assert plan.host == HOST


def test_configured_values_win_and_dedupe() -> None:
    plan = build(
        {
            "interface": {"name": "eth99", "addresses": ["192.168.1.2/24"], "mtu": 4321},
            "routes": [{"destination": "192.0.2.0/24", "gateway": "192.168.1.1"}],
            "neighbors": [{"destination": "10.0.1.9", "hardwareAddr": "02:AA:00:00:00:09"}],
        }
    )
    assert plan.pod is not None
    assert plan.pod.addresses == ("192.168.1.2/24",)
    dst = [r for r in plan.pod.routes if r.destination == "192.0.2.0/24"]
    assert dst == [Route("192.0.2.0/24", "192.168.1.1")]
    # the host's connected route loses a source address the pod does not have
    assert Route("10.0.1.0/24", None, None, 253, 254) in plan.pod.routes
    assert plan.pod.neighbors == (Neighbor("10.0.1.9", "02:aa:00:00:00:09"),)
    assert plan.pod.mtu == 4321


def test_link_scope_routes_first() -> None:
    plan = build(
        {
            "interface": {"addresses": ["192.168.1.2/24"]},
            "routes": [
                {"destination": "198.51.100.0/24", "gateway": "192.168.1.1"},
                {"destination": "192.168.1.1/32", "scope": 253},
            ],
        }
    )
    assert plan.pod is not None
    scopes = [r.scope for r in plan.pod.routes]
    assert scopes == sorted(scopes, reverse=True)


def test_vrf_overrides_tables_and_drops_host_rules() -> None:
    plan = build({"interface": {"vrf": {"name": "blue"}}})
    assert plan.pod is not None and plan.pod.vrf is not None
    table = default_vrf_table("blue")
    assert plan.pod.vrf.table == table
    assert {r.table for r in plan.pod.routes} == {table}
    assert plan.pod.rules == ()
    with pytest.raises(PlanError, match="vrf"):
        build({"interface": {"vrf": {"name": "blue"}}, "rules": [{"table": 5}]})


def test_sysctls_include_forwarding_both_families() -> None:
    plan = build({"interface": {"arpIgnore": 1, "arpAnnounce": 2, "forwarding": True}})
    assert plan.pod is not None
    got = {(s.family, s.key, s.value) for s in plan.pod.sysctls}
    assert got == {
        ("ipv4", "arp_ignore", 1),
        ("ipv4", "arp_announce", 2),
        ("ipv4", "forwarding", 1),
        ("ipv6", "forwarding", 1),
    }
    with pytest.raises(PlanError):
        build({"interface": {"arpIgnore": 5}})


def test_ethtool_legacy_aliases() -> None:
    assert kernel_names("tso", VETH_FEATURES) == [
        "tx-tcp-ecn-segmentation",
        "tx-tcp-mangleid-segmentation",
        "tx-tcp-segmentation",
        "tx-tcp6-segmentation",
    ]
    assert kernel_names("gro", VETH_FEATURES) == ["rx-gro"]
    assert kernel_names("generic-receive-offload", VETH_FEATURES) == ["rx-gro"]
    assert kernel_names("lro", VETH_FEATURES) == ["rx-lro"]
    assert kernel_names("rx", VETH_FEATURES) == ["rx-checksum"]
    assert kernel_names("tx", VETH_FEATURES) == ["tx-checksum-ip-generic"]
    assert kernel_names("sg", VETH_FEATURES) == ["tx-scatter-gather", "tx-scatter-gather-fraglist"]
    assert kernel_names("rx-gro", VETH_FEATURES) == ["rx-gro"]
    assert translate({"tso": False, "tx-tcp6-segmentation": True}, VETH_FEATURES) == {
        "tx-tcp-ecn-segmentation": False,
        "tx-tcp-mangleid-segmentation": False,
        "tx-tcp-segmentation": False,
        "tx-tcp6-segmentation": True,
    }
    with pytest.raises(PlanError, match="unknown ethtool feature"):
        kernel_names("warp-drive", VETH_FEATURES)
    with pytest.raises(PlanError):
        kernel_names("ntuple", VETH_FEATURES)  # alias known, device lacks it
    plan = build({"ethtool": {"features": {"tso": False, "gro": False, "lro": False}}})
    assert plan.pod is not None
    assert {t.name for t in plan.pod.features} == {
        "tx-tcp-ecn-segmentation",
        "tx-tcp-mangleid-segmentation",
        "tx-tcp-segmentation",
        "tx-tcp6-segmentation",
        "rx-gro",
        "rx-lro",
    }
    with pytest.raises(PlanError, match="private flag"):
        build({"ethtool": {"privateFlags": {"some-flag": True}}})


def test_host_side_records_the_host_value_of_each_toggle_the_pod_changes() -> None:
    """Ethtool state moves with the device: detach needs the host's values to set them back."""
    values = tuple(Toggle(n, n != "rx-gro") for n in VETH_FEATURES)  # GRO off, the rest on
    state = dataclasses.replace(STATE, feature_values=values)
    plan = build_plan(
        "eth1", "uid", decode({"ethtool": {"features": {"tso": False, "gro": True}}}), state
    )
    assert plan.host is not None and plan.pod is not None
    assert {t.name: t.enable for t in plan.host.features} == {
        "rx-gro": False,
        "tx-tcp-ecn-segmentation": True,
        "tx-tcp-mangleid-segmentation": True,
        "tx-tcp-segmentation": True,
        "tx-tcp6-segmentation": True,
    }
    assert {t.name for t in plan.pod.features} == {t.name for t in plan.host.features}
    assert build({}).host == HOST  # nothing toggled: nothing to restore
    assert AttachPlan.from_json(plan.to_json()) == plan


def test_plans_persisted_before_the_restore_fields_still_decode() -> None:
    """A plan stored by an older knd (no host sizes or toggles) decodes; it restores less."""
    data = json.loads(build({"interface": {"gsoMaxSize": 32768}}).to_json())
    for key in ("gso_max_size", "gro_max_size", "gso_ipv4_max_size", "gro_ipv4_max_size"):
        data["host"].pop(key)
    data["host"].pop("features")
    data["host"].pop("private_flags")
    plan = AttachPlan.from_json(json.dumps(data))
    assert plan.host is not None and plan.host.gso_max_size is None and plan.host.features == ()
    bad = json.loads(build({}).to_json())
    bad["host"]["gso_max_size"] = 0
    with pytest.raises(PlanError, match=r"host\.gso_max_size"):
        AttachPlan.from_json(json.dumps(bad))
    bad = json.loads(build({}).to_json())
    bad["host"]["features"] = [{"name": "../x", "enable": True}]
    with pytest.raises(PlanError, match="ethtool name"):
        AttachPlan.from_json(json.dumps(bad))


def test_dhcp_lease_option_121_wins_over_router() -> None:
    lease = DhcpLease(
        address="10.9.0.7/24", router="10.9.0.1", routes=(("172.16.0.0/12", "10.9.0.254"),)
    )
    plan = build({"interface": {"dhcp": True}}, lease=lease)
    assert plan.pod is not None
    assert plan.pod.addresses == ("10.9.0.7/24",)
    assert Route("172.16.0.0/12", "10.9.0.254") in plan.pod.routes
    assert all(r.destination != "0.0.0.0/0" or r.table != 254 for r in plan.pod.routes)
    plan = build({"interface": {"dhcp": True}}, lease=DhcpLease("10.9.0.7/24", "10.9.0.1"))
    assert plan.pod is not None
    assert Route("0.0.0.0/0", "10.9.0.1") in plan.pod.routes
    with pytest.raises(PlanError, match="no DHCP lease"):
        build({"interface": {"dhcp": True}})


def test_rdma_only_and_modes() -> None:
    chars = (CharDevice("/dev/infiniband/uverbs0", "c", 231, 192),)
    state = HostState(host=None, rdma_link="mlx5_0", rdma_char_devices=chars)
    plan = build_plan("mlx5-0", "uid", decode({}), state, rdma_mode="exclusive")
    assert plan.rdma is not None and plan.rdma.move_link and plan.rdma.char_devices == chars
    plan = build_plan("mlx5-0", "uid", decode({}), state)
    assert plan.rdma is not None and not plan.rdma.move_link
    with pytest.raises(PlanError, match="RDMA-only"):
        build_plan("mlx5-0", "uid", decode({"interface": {"mtu": 9000}}), state)
    assert AttachPlan.from_json(plan.to_json()) == plan


def test_json_roundtrip_and_strictness() -> None:
    plan = build({"interface": {"name": "eth99", "mtu": 9000, "vrf": {"name": "x", "table": 7}}})
    text = plan.to_json()
    assert AttachPlan.from_json(text) == plan
    assert json.loads(text)["pod"]["name"] == "eth99"
    data = json.loads(text)
    mutations: tuple[Callable[[dict[str, Any]], object], ...] = (
        lambda d: d["pod"].update(name="a/b"),
        lambda d: d["pod"].update(mtu=True),
        lambda d: d["pod"]["vrf"].update(table=254),
        lambda d: d["host"].update(mac="nope"),
        lambda d: d["pod"].update(sysctls=[{"family": "ipv4", "key": "../../x", "value": 1}]),
        lambda d: d["pod"].update(routes=[{"destination": "not-a-cidr"}]),
        lambda d: d.pop("pod_uid"),
        lambda d: d.update(extra=1),
    )
    for mutate in mutations:
        bad = json.loads(text)
        mutate(bad)
        with pytest.raises(PlanError):
            AttachPlan.from_json(json.dumps(bad))
    with pytest.raises(PlanError):
        AttachPlan.from_json("{not json")
    assert data["version"] == 1


@given(
    mtu=st.one_of(st.none(), st.integers(68, 65535)),
    name=st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True),
    n_addr=st.integers(0, 3),
)
def test_roundtrip_property(mtu: int | None, name: str, n_addr: int) -> None:
    addrs = [f"10.1.{i}.2/24" for i in range(n_addr)]
    iface: dict[str, object] = {"name": name}
    if mtu is not None:
        iface["mtu"] = mtu
    if addrs:
        iface["addresses"] = addrs
    plan = build({"interface": iface})
    assert AttachPlan.from_json(plan.to_json()) == plan
    assert dataclasses.asdict(AttachPlan.from_json(plan.to_json())) == dataclasses.asdict(plan)
    # what prepare stores (to_dict, no JSON round trip) is what the JSON round trip gives
    assert plan.to_dict() == json.loads(plan.to_json())
    assert json.dumps(plan.to_dict(), sort_keys=True, separators=(",", ":")) == plan.to_json()
