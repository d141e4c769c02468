"""Strict decoding of the opaque config: unknown fields and wrong types name the JSON path."""

from __future__ import annotations

import pytest

from knd.api.config import NetworkConfig, decode, decode_json
from knd.api.errors import ConfigError


def _errors(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        decode(data)
    return [str(e) for e in info.value.errors]


FULL = {
    "profile": "p1",
    "interface": {
        "name": "eth99",
        "addresses": ["192.0.2.1/24"],
        "dhcp": False,
        "mtu": 1500,
        "hardwareAddr": "00:11:22:33:44:55",
        "gsoMaxSize": 65536,
        "groMaxSize": 65536,
        "gsoIPv4MaxSize": 65536,
        "groIPv4MaxSize": 65536,
        "disableEbpfPrograms": True,
        "forwarding": True,
        "arpIgnore": 1,
        "arpAnnounce": 2,
        "vrf": {"name": "blue", "table": 100},
    },
    "routes": [
        {
            "destination": "0.0.0.0/0",
            "gateway": "192.0.2.254",
            "source": "192.0.2.1",
            "scope": 0,
            "table": 100,
        }
    ],
    "rules": [
        {"priority": 10, "source": "192.0.2.0/24", "destination": "10.0.0.0/8", "table": 100}
    ],
    "neighbors": [{"destination": "192.0.2.9", "hardwareAddr": "02:00:00:00:00:09"}],
    "ethtool": {"features": {"tso": False}, "privateFlags": {"flag-a": True}},
}


def test_every_dranet_field_decodes_and_encodes_back() -> None:
    cfg = decode(FULL)
    assert cfg.interface is not None and cfg.interface.vrf is not None
    assert cfg.interface.gso_ipv4_max_size == 65536
    assert cfg.interface.vrf.table == 100
    assert cfg.ethtool is not None and cfg.ethtool.private_flags == {"flag-a": True}
    assert cfg.to_json_obj() == FULL


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"interface": {"vrf": {"table": "x"}}}, "interface.vrf.table: must be an integer"),
        ({"interface": {"mtu": 1500.0}}, "interface.mtu: must be an integer"),
        ({"interface": {"mtu": True}}, "interface.mtu: must be an integer"),
        ({"interface": {"dhcp": "true"}}, "interface.dhcp: must be a boolean"),
        ({"interface": {"name": 5}}, "interface.name: must be a string"),
        ({"interface": {"addresses": "10.0.0.1/8"}}, "interface.addresses: must be a list"),
        ({"interface": {"addresses": [1]}}, "interface.addresses[0]: must be a string"),
        ({"interface": []}, "interface: must be an object"),
        ({"routes": [{"table": "main"}]}, "routes[0].table: must be an integer"),
        ({"routes": {}}, "routes: must be a list"),
        ({"ethtool": {"features": {"tso": "off"}}}, "ethtool.features.tso: must be a boolean"),
        ({"bogus": 1}, "bogus: unknown field"),
        ({"interface": {"ipAddress": "x"}}, "interface.ipAddress: unknown field"),
        ({"neighbors": [{"ipAddress": "192.0.2.1"}]}, "neighbors[0].ipAddress: unknown field"),
        ({"interface": {"hardware_addr": "x"}}, "interface.hardware_addr: unknown field"),
    ],
)
def test_type_and_unknown_field_errors_name_the_path(data: object, expected: str) -> None:
    assert expected in _errors(data)


def test_all_errors_are_reported_at_once() -> None:
    errs = _errors({"a": 1, "interface": {"mtu": "x", "b": 2}})
    assert {
        "a: unknown field",
        "interface.mtu: must be an integer",
        "interface.b: unknown field",
    } <= set(errs)


@pytest.mark.parametrize("data", [None, {}])
def test_empty_configs(data: object) -> None:
    assert decode(data) == NetworkConfig()


@pytest.mark.parametrize("data", [[], "x", 3, True])
def test_non_object_is_an_error(data: object) -> None:
    assert _errors(data) == ["config must be a JSON object"]


def test_decode_json_rejects_bad_json() -> None:
    with pytest.raises(ConfigError, match="invalid JSON"):
        decode_json("{nope")
    assert decode_json('{"interface":{"mtu":9000}}').interface is not None


def test_null_means_unset() -> None:
    assert decode({"interface": {"mtu": None}, "routes": None}) == decode({"interface": {}})
