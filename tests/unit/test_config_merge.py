"""Merge order (provider < class < claim), per-request selection and de-duplication."""

from __future__ import annotations

from typing import Any

import pytest

from knd.api.config import decode
from knd.api.errors import ConfigError
from knd.api.merge import (
    ConfigEntry,
    configs_for_request,
    merge_configs,
    resolve_request_config,
)


def entry(
    source: str,
    params: dict[str, Any],
    requests: tuple[str, ...] = (),
    index: int = 0,
    driver: str = "dra.net",
) -> ConfigEntry:
    return ConfigEntry(
        source=source, requests=requests, driver=driver, parameters=params, index=index
    )


def test_scalars_later_wins_and_nested_objects_merge_field_by_field() -> None:
    base = decode({"interface": {"name": "a", "mtu": 1500, "vrf": {"name": "v", "table": 5}}})
    over = decode({"interface": {"mtu": 9000, "vrf": {"table": 6}}})
    merged = merge_configs(base, over)
    assert merged.to_json_obj() == {
        "interface": {"name": "a", "mtu": 9000, "vrf": {"name": "v", "table": 6}}
    }


def test_lists_concatenate_with_dedup_keys() -> None:
    base = decode(
        {
            "interface": {"addresses": ["192.0.2.1/24", "2001:db8::1/64"]},
            "routes": [
                {"destination": "10.0.0.0/8", "gateway": "192.0.2.1"},
                {"destination": "10.0.0.0/8", "gateway": "192.0.2.1", "table": 100},
            ],
            "rules": [{"priority": 10, "table": 100}],
            "neighbors": [{"destination": "192.0.2.9", "hardwareAddr": "02:00:00:00:00:01"}],
        }
    )
    over = decode(
        {
            "interface": {"addresses": ["2001:db8:0::1/64", "192.0.2.2/24"]},
            "routes": [{"destination": "10.0.0.0/8", "gateway": "192.0.2.254"}],
            "rules": [{"priority": 10, "table": 100}, {"priority": 11, "table": 100}],
            "neighbors": [{"destination": "192.0.2.9", "hardwareAddr": "02:00:00:00:00:02"}],
        }
    )
    merged = merge_configs(base, over).to_json_obj()
    # Same address written differently counts once; order is stable.
    assert merged["interface"]["addresses"] == ["192.0.2.1/24", "2001:db8:0::1/64", "192.0.2.2/24"]
    # Routes by (destination, table): the main-table route is replaced in place.
    assert merged["routes"] == [
        {"destination": "10.0.0.0/8", "gateway": "192.0.2.254"},
        {"destination": "10.0.0.0/8", "gateway": "192.0.2.1", "table": 100},
    ]
    assert merged["rules"] == [{"priority": 10, "table": 100}, {"priority": 11, "table": 100}]
    assert merged["neighbors"] == [
        {"destination": "192.0.2.9", "hardwareAddr": "02:00:00:00:00:02"}
    ]


def test_ethtool_maps_merge_key_by_key() -> None:
    merged = merge_configs(
        decode({"ethtool": {"features": {"tso": True, "gro": True}}}),
        decode({"ethtool": {"features": {"gro": False}, "privateFlags": {"p": True}}}),
    )
    assert merged.to_json_obj() == {
        "ethtool": {"features": {"tso": True, "gro": False}, "privateFlags": {"p": True}}
    }


def test_route_table_zero_and_unset_are_the_same_key() -> None:
    merged = merge_configs(
        decode({"routes": [{"destination": "10.0.0.0/8", "gateway": "192.0.2.1"}]}),
        decode({"routes": [{"destination": "10.0.0.0/8", "gateway": "192.0.2.2", "table": 0}]}),
    )
    assert merged.routes is not None and len(merged.routes) == 1
    assert merged.routes[0].gateway == "192.0.2.2"


def test_single_config_is_deduplicated_too() -> None:
    merged = merge_configs(decode({"interface": {"addresses": ["10.0.0.1/8", "10.0.0.1/8"]}}))
    assert merged.interface is not None and merged.interface.addresses == ["10.0.0.1/8"]


def test_precedence_provider_class_claim_regardless_of_input_order() -> None:
    entries = [
        entry("FromClaim", {"interface": {"mtu": 3000}}, index=0),
        entry("FromClass", {"interface": {"mtu": 2000, "name": "cls0"}}, index=1),
    ]
    provider = decode({"interface": {"mtu": 1000, "hardwareAddr": "02:00:00:00:00:01"}})
    cfg = resolve_request_config(entries, "dra.net", "nic", provider=provider)
    assert cfg.to_json_obj() == {
        "interface": {"mtu": 3000, "name": "cls0", "hardwareAddr": "02:00:00:00:00:01"}
    }


def test_claim_config_is_not_shadowed_by_class_config() -> None:
    # DraNet's defect: the first (class) config wins and the claim's is ignored.
    entries = [
        entry("FromClass", {"interface": {"mtu": 9000}}, index=0),
        entry("FromClaim", {"interface": {"name": "eth99"}}, index=1),
    ]
    cfg = resolve_request_config(entries, "dra.net", "nic")
    assert cfg.interface is not None
    assert (cfg.interface.mtu, cfg.interface.name) == (9000, "eth99")


def test_request_selection_and_foreign_drivers() -> None:
    entries = [
        entry("FromClaim", {"interface": {"name": "all"}}, index=0),
        entry("FromClaim", {"interface": {"name": "left0"}}, ("left",), index=1),
        entry("FromClaim", {"interface": {"name": "right0"}}, ("right",), index=2),
        entry("FromClaim", {"sharing": "x"}, ("left",), index=3, driver="gpu.nvidia.com"),
        entry("FromClaim", {"interface": {"mtu": 1400}}, ("left",), index=4),
    ]
    picked = configs_for_request(entries, "dra.net", "left")
    assert [e.index for e in picked] == [0, 1, 4]
    # A main request name covers its subrequests.
    assert [e.index for e in configs_for_request(entries, "dra.net", "left/big")] == [0, 1, 4]
    cfg = resolve_request_config(entries, "dra.net", "right")
    assert cfg.to_json_obj() == {"interface": {"name": "right0"}}


def test_errors_name_the_entry_and_the_field() -> None:
    entries = [entry("FromClaim", {"interface": {"mtu": "big"}}, index=2)]
    with pytest.raises(ConfigError) as info:
        resolve_request_config(entries, "dra.net", "nic")
    assert (
        str(info.value) == "request 'nic': config[2] (FromClaim) interface.mtu: must be an integer"
    )


def test_entry_from_api_json() -> None:
    e = ConfigEntry.from_api(
        {
            "source": "FromClass",
            "requests": ["a"],
            "opaque": {"driver": "dra.net", "parameters": {"profile": "p"}},
        },
        index=3,
    )
    assert e == ConfigEntry("FromClass", ("a",), "dra.net", {"profile": "p"}, 3)
    assert ConfigEntry.from_api({}).driver == ""
