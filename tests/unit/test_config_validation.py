"""Every validation rule (DraNet's and knd's hardening) with valid and invalid cases."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from knd.api.check import check_parameters
from knd.api.config import decode
from knd.api.defaults import default_vrf_table, fnv1a_32, with_defaults
from knd.api.errors import ConfigError
from knd.api.validation import (
    interface_name_problem,
    parse_cidr,
    parse_mac,
    validate,
    validate_rdma_only,
)


def errors_of(data: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate(with_defaults(decode(data)))]


VALID: list[dict[str, Any]] = [
    {},
    {"interface": {"name": "eth99"}},
    {"interface": {"name": ""}},
    {"interface": {"name": "a" * 15}},
    {"interface": {"name": "net_1.a-b"}},
    {"interface": {"addresses": ["192.0.2.1/24", "2001:db8::1/64", "10.0.0.5/32"]}},
    {"interface": {"dhcp": True}},
    {"interface": {"dhcp": False, "addresses": ["192.0.2.1/24"]}},
    {"interface": {"mtu": 68}},
    {"interface": {"mtu": 262140}},
    {"interface": {"hardwareAddr": "00:11:22:33:44:55"}},
    {"interface": {"hardwareAddr": "00-11-22-33-44-55"}},
    {"interface": {"hardwareAddr": "0011.2233.4455"}},
    {
        "interface": {
            "gsoMaxSize": 1,
            "groMaxSize": 65536,
            "gsoIPv4MaxSize": 2**31 - 1,
            "groIPv4MaxSize": 65536,
        }
    },
    *({"interface": {"arpIgnore": v}} for v in (0, 1, 2, 3, 8)),
    *({"interface": {"arpAnnounce": v}} for v in (0, 1, 2)),
    {"interface": {"vrf": {"name": "vrf-blue"}}},
    {"interface": {"vrf": {"name": "v", "table": 1}}},
    {"interface": {"vrf": {"name": "v", "table": 2**32 - 1}}},
    {"interface": {"vrf": {"name": "v", "table": 252}}},
    {"routes": [{"destination": "10.0.0.0/8", "gateway": "192.0.2.1"}]},
    {"routes": [{"destination": "10.0.0.0/8", "scope": 253}]},
    {"routes": [{"destination": "192.0.2.7/32", "scope": 253, "table": 2**32 - 1}]},
    {"routes": [{"destination": "2001:db8::/64", "gateway": "fe80::1", "source": "2001:db8::5"}]},
    {"rules": [{"priority": 0, "table": 100}]},
    {"rules": [{"priority": 32767, "source": "10.0.0.0/8", "destination": "10.1.0.0/16"}]},
    {"rules": [{"source": "2001:db8::/32", "table": 2**32 - 1}]},
    {"neighbors": [{"destination": "192.0.2.1", "hardwareAddr": "02:00:00:00:00:01"}]},
    {"neighbors": [{"destination": "2001:db8::1", "hardwareAddr": "02:00:00:00:00:01"}]},
    {"ethtool": {"features": {"tso": True, "rx-gro-list": False}, "privateFlags": {"x_y": True}}},
    {"profile": "gold"},
]


@pytest.mark.parametrize("data", VALID, ids=lambda d: str(d)[:60])
def test_valid_configs(data: dict[str, Any]) -> None:
    assert errors_of(data) == []


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"interface": {"name": "a" * 16}}, "interface.name: name 'aaaaaaaaaaaaaaaa' exceeds"),
    ({"interface": {"name": "."}}, "interface.name: name '.' cannot be"),
    ({"interface": {"name": ".."}}, "interface.name: name '..' cannot be"),
    ({"interface": {"name": "a/b"}}, "interface.name: name 'a/b' may only contain"),
    ({"interface": {"name": "a b"}}, "interface.name: name 'a b' may only contain"),
    ({"interface": {"name": "eth\n0"}}, "interface.name"),
    ({"interface": {"name": "ethé"}}, "interface.name: name 'ethé' may only contain"),
    ({"interface": {"name": "ünïcødé"}}, "interface.name"),
    ({"interface": {"name": "$(reboot)"}}, "interface.name"),
    ({"interface": {"addresses": ["192.0.2.1"]}}, "interface.addresses[0]: invalid IP CIDR"),
    ({"interface": {"addresses": ["ok/24"]}}, "interface.addresses[0]: invalid IP CIDR"),
    ({"interface": {"addresses": ["10.0.0.1/33"]}}, "interface.addresses[0]"),
    (
        {"interface": {"dhcp": True, "addresses": ["192.0.2.1/24"]}},
        "interface.dhcp: dhcp and addresses are mutually exclusive",
    ),
    ({"interface": {"mtu": 67}}, "interface.mtu: must be an MTU (68..262140), got 67"),
    ({"interface": {"mtu": 300000}}, "interface.mtu: must be an MTU (68..262140), got 300000"),
    ({"interface": {"mtu": 2**31}}, "interface.mtu: must be an MTU"),
    ({"interface": {"hardwareAddr": "00:11:22:33:44"}}, "interface.hardwareAddr: invalid"),
    ({"interface": {"hardwareAddr": "zz:11:22:33:44:55"}}, "interface.hardwareAddr: invalid"),
    ({"interface": {"gsoMaxSize": 0}}, "interface.gsoMaxSize: must be a positive size"),
    ({"interface": {"groMaxSize": -1}}, "interface.groMaxSize: must be a positive size"),
    ({"interface": {"gsoIPv4MaxSize": 2**31}}, "interface.gsoIPv4MaxSize: must be a positive"),
    ({"interface": {"groIPv4MaxSize": 0}}, "interface.groIPv4MaxSize: must be a positive"),
    ({"interface": {"arpIgnore": 4}}, "interface.arpIgnore: must be one of 0, 1, 2, 3, 8"),
    ({"interface": {"arpAnnounce": 3}}, "interface.arpAnnounce: must be 0-2"),
    ({"interface": {"arpAnnounce": -1}}, "interface.arpAnnounce"),
    ({"interface": {"vrf": {}}}, "interface.vrf.name: cannot be empty"),
    ({"interface": {"vrf": {"name": "../x"}}}, "interface.vrf.name: name '../x' may only"),
    ({"interface": {"vrf": {"name": "v", "table": 0}}}, "interface.vrf.table: must be a positive"),
    ({"interface": {"vrf": {"name": "v", "table": 2**32}}}, "interface.vrf.table: must be a pos"),
    *(
        (
            {"interface": {"vrf": {"name": "v", "table": t}}},
            f"interface.vrf.table: cannot use reserved table ID {t}",
        )
        for t in (253, 254, 255)
    ),
    ({"routes": [{"gateway": "192.0.2.1"}]}, "routes[0].destination: cannot be empty"),
    (
        {"routes": [{"destination": "10.0.0.1", "gateway": "192.0.2.1"}]},
        "routes[0].destination: invalid CIDR '10.0.0.1' (host routes use /32 or /128)",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "scope": 200, "gateway": "192.0.2.1"}]},
        "routes[0].scope: invalid scope 200",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8"}]},
        "routes[0].gateway: must be specified for universe-scope routes",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "gateway": "nope"}]},
        "routes[0].gateway: invalid IP address 'nope'",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "gateway": "2001:db8::1"}]},
        "routes[0].gateway: '2001:db8::1' must be the same IP family as destination",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "scope": 253, "source": "2001:db8::1"}]},
        "routes[0].source: '2001:db8::1' must be the same IP family",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "scope": 253, "source": "x"}]},
        "routes[0].source: invalid IP address 'x'",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "scope": 253, "table": -1}]},
        "routes[0].table: must be a routing table ID (0..4294967295), got -1",
    ),
    (
        {"routes": [{"destination": "10.0.0.0/8", "scope": 253, "table": 2**32}]},
        "routes[0].table: must be a routing table ID",
    ),
    ({"rules": [{"priority": -1}]}, "rules[0].priority: must be a priority (0..32767), got -1"),
    ({"rules": [{"priority": 32768}]}, "rules[0].priority: must be a priority"),
    ({"rules": [{"table": -5}]}, "rules[0].table: must be a routing table ID"),
    ({"rules": [{"table": 2**32}]}, "rules[0].table: must be a routing table ID"),
    ({"rules": [{"source": "10.0.0.1"}]}, "rules[0].source: invalid CIDR '10.0.0.1'"),
    ({"rules": [{"destination": "x/8"}]}, "rules[0].destination: invalid CIDR 'x/8'"),
    (
        {"rules": [{"source": "10.0.0.0/8", "destination": "2001:db8::/32"}]},
        "rules[0]: source and destination must be the same IP family",
    ),
    (
        {"interface": {"vrf": {"name": "v"}}, "rules": [{"table": 5}]},
        "rules: rules are not supported when interface.vrf is set",
    ),
    (
        {"neighbors": [{"hardwareAddr": "02:00:00:00:00:01"}]},
        "neighbors[0].destination: cannot be empty",
    ),
    ({"neighbors": [{"destination": "192.0.2.1"}]}, "neighbors[0].hardwareAddr: cannot be empty"),
    (
        {"neighbors": [{"destination": "192.0.2.0/24", "hardwareAddr": "02:00:00:00:00:01"}]},
        "neighbors[0].destination: invalid IP address",
    ),
    (
        {"neighbors": [{"destination": "192.0.2.1", "hardwareAddr": "02:00"}]},
        "neighbors[0].hardwareAddr: invalid hardware address",
    ),
    ({"ethtool": {"features": {"../../etc": True}}}, "ethtool.features: invalid name"),
    ({"ethtool": {"privateFlags": {"": True}}}, "ethtool.privateFlags: invalid name"),
    ({"ethtool": {"features": {"x" * 32: True}}}, "ethtool.features: invalid name"),
    ({"profile": "  "}, "profile: cannot be blank when set"),
]


@pytest.mark.parametrize(("data", "expected"), INVALID, ids=lambda x: str(x)[:60])
def test_invalid_configs(data: dict[str, Any], expected: str) -> None:
    errs = errors_of(data)
    assert any(e.startswith(expected) for e in errs), errs


def test_interface_name_boundaries() -> None:
    assert interface_name_problem("a" * 15) is None
    assert interface_name_problem("a" * 16) is not None
    # 15 characters but more than 15 bytes: rejected (and non-ASCII anyway).
    assert interface_name_problem("é" * 8) is not None


def test_parsers_follow_go_semantics() -> None:
    assert parse_cidr("10.0.0.5/24") is not None  # host bits allowed, as net.ParseCIDR
    assert parse_cidr("10.0.0.5/024") is None
    assert parse_cidr("fe80::1%eth0/64") is None
    assert parse_mac("00:11:22:33:44:55:66:77") is not None  # EUI-64
    assert parse_mac("00:11:22:33:44:55:66") is None


def test_fnv1a_32_known_vectors() -> None:
    # Reference vectors of 32-bit FNV-1a.
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_vrf_table_default() -> None:
    cfg = with_defaults(decode({"interface": {"vrf": {"name": "test-vrf"}}}))
    assert cfg.interface is not None and cfg.interface.vrf is not None
    table = cfg.interface.vrf.table
    assert table == 1000 + fnv1a_32(b"test-vrf") % 1000 == default_vrf_table("test-vrf")
    assert 1000 <= table < 2000
    # An explicit table is kept; the input model is not mutated.
    explicit = decode({"interface": {"vrf": {"name": "test-vrf", "table": 7}}})
    assert with_defaults(explicit) == explicit
    raw = decode({"interface": {"vrf": {"name": "x"}}})
    with_defaults(raw)
    assert raw.interface is not None and raw.interface.vrf is not None
    assert raw.interface.vrf.table is None


RDMA_FORBIDDEN: list[tuple[dict[str, Any], str]] = [
    ({"interface": {"name": "ib0"}}, "interface.name"),
    ({"interface": {"addresses": ["192.0.2.1/24"]}}, "interface.addresses"),
    ({"interface": {"dhcp": True}}, "interface.dhcp"),
    ({"interface": {"mtu": 9000}}, "interface.mtu"),
    ({"interface": {"hardwareAddr": "00:11:22:33:44:55"}}, "interface.hardwareAddr"),
    ({"interface": {"gsoMaxSize": 1}}, "interface.gsoMaxSize"),
    ({"interface": {"groMaxSize": 1}}, "interface.groMaxSize"),
    ({"interface": {"gsoIPv4MaxSize": 1}}, "interface.gsoIPv4MaxSize"),
    ({"interface": {"groIPv4MaxSize": 1}}, "interface.groIPv4MaxSize"),
    ({"interface": {"disableEbpfPrograms": False}}, "interface.disableEbpfPrograms"),
    ({"interface": {"forwarding": True}}, "interface.forwarding"),
    ({"interface": {"arpIgnore": 1}}, "interface.arpIgnore"),
    ({"interface": {"arpAnnounce": 1}}, "interface.arpAnnounce"),
    ({"interface": {"vrf": {"name": "v"}}}, "interface.vrf"),
    ({"routes": [{"destination": "10.0.0.0/8", "scope": 253}]}, "routes"),
    ({"rules": [{"table": 100}]}, "rules"),
    (
        {"neighbors": [{"destination": "192.0.2.1", "hardwareAddr": "02:00:00:00:00:01"}]},
        "neighbors",
    ),
    ({"ethtool": {"features": {"tso": True}}}, "ethtool"),
    # DraNet refuses the object itself: even an empty one says "configure the netdev".
    ({"ethtool": {}}, "ethtool"),
    ({"ethtool": {"features": {}, "privateFlags": {}}}, "ethtool"),
]


@pytest.mark.parametrize(("data", "path"), RDMA_FORBIDDEN, ids=lambda x: str(x)[:40])
def test_rdma_only_rejects_network_fields(data: dict[str, Any], path: str) -> None:
    errs = validate_rdma_only(decode(data))
    assert [e.path for e in errs] == [path]
    assert "RDMA-only" in errs[0].message
    # The same config is fine for a device with a netdev (where it is valid at all).
    with pytest.raises(ConfigError, match="RDMA-only"):
        check_parameters(data, rdma_only=True)


@pytest.mark.parametrize("data", [{}, {"profile": "ib"}, {"interface": {}}, {"routes": []}])
def test_rdma_only_accepts_empty_and_profile(data: dict[str, Any]) -> None:
    assert validate_rdma_only(decode(data)) == []
    check_parameters(data, rdma_only=True)


# A `$` anchor matches before a trailing newline; every pattern must be a fullmatch, and strings
# that no pattern covers are checked for control characters. Each case is valid without the
# control character (checked below), so the rejection is due to that character alone.
CONTROL_CHAR_CASES: list[tuple[dict[str, Any], str]] = [
    ({"interface": {"name": "eth0\n"}}, "interface.name"),
    ({"interface": {"name": "eth0\r"}}, "interface.name"),
    ({"interface": {"vrf": {"name": "blue\n"}}}, "interface.vrf.name"),
    ({"interface": {"hardwareAddr": "00:11:22:33:44:55\n"}}, "interface.hardwareAddr"),
    ({"interface": {"addresses": ["192.0.2.1/24\n"]}}, "interface.addresses[0]"),
    ({"routes": [{"destination": "10.0.0.0/8\n", "gateway": "192.0.2.1"}]}, "routes[0]"),
    (
        {"neighbors": [{"destination": "192.0.2.1", "hardwareAddr": "02:00:00:00:00:01\n"}]},
        "neighbors[0].hardwareAddr",
    ),
    ({"ethtool": {"features": {"tso\n": True}}}, "ethtool.features"),
    ({"ethtool": {"privateFlags": {"x_y\x00": True}}}, "ethtool.privateFlags"),
    ({"profile": "gold\n"}, "profile"),
    ({"profile": "go\x1bld"}, "profile"),
    ({"profile": "gold\u202e"}, "profile"),  # a bidi override (Unicode format character)
]


@pytest.mark.parametrize(("data", "path"), CONTROL_CHAR_CASES, ids=lambda x: repr(x)[:50])
def test_control_characters_are_refused_everywhere(data: dict[str, Any], path: str) -> None:
    errs = [str(e) for e in validate(with_defaults(decode(data)))]
    assert errs and all(e.startswith(path) for e in errs), errs
    clean = json.loads(
        json.dumps(data)
        .replace("\\n", "")
        .replace("\\r", "")
        .replace("\\u0000", "")
        .replace("\\u001b", "")
        .replace("\\u202e", "")
    )
    assert clean != data
    assert validate(with_defaults(decode(clean))) == []
    with pytest.raises(ConfigError, match=re.escape(path)):
        check_parameters(data)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("eth0", True), ("eth0\n", False), ("\neth0", False), ("eth\t0", False)],
)
def test_interface_name_is_a_fullmatch(value: str, ok: bool) -> None:
    assert (interface_name_problem(value) is None) is ok
