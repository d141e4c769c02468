"""Property tests: arbitrary JSON never crashes decoding/validation, valid configs round-trip."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from knd.api.check import check_parameters
from knd.api.config import NetworkConfig, decode, decode_json
from knd.api.errors import ConfigError
from knd.api.merge import merge_configs
from knd.api.validation import validate

FIELD_NAMES = [
    "profile",
    "interface",
    "routes",
    "rules",
    "neighbors",
    "ethtool",
    "name",
    "addresses",
    "dhcp",
    "mtu",
    "hardwareAddr",
    "gsoMaxSize",
    "groMaxSize",
    "gsoIPv4MaxSize",
    "groIPv4MaxSize",
    "disableEbpfPrograms",
    "forwarding",
    "arpIgnore",
    "arpAnnounce",
    "vrf",
    "table",
    "destination",
    "gateway",
    "source",
    "scope",
    "priority",
    "features",
    "privateFlags",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(
        ["10.0.0.1/8", "2001:db8::1/64", "192.0.2.1", "00:11:22:33:44:55", "eth0", ".."]
    )
)
keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json_only_ever_yields_config_errors(data: Any) -> None:
    try:
        cfg = check_parameters(data)
    except ConfigError as exc:
        assert exc.errors, "a ConfigError always carries at least one FieldError"
        for err in exc.errors:
            assert isinstance(err.path, str) and err.message
    else:
        assert isinstance(cfg, NetworkConfig)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_arbitrary_bytes_never_crash(raw: bytes | str) -> None:
    try:
        cfg = decode_json(raw)
    except ConfigError as exc:
        assert exc.errors
    else:
        assert isinstance(cfg, NetworkConfig)


ifnames = st.from_regex(r"[a-z][a-z0-9_.-]{0,14}", fullmatch=True).filter(
    lambda n: n not in (".", "..")
)
ipv4_cidr = st.builds(
    lambda a, b, p: f"10.{a}.{b}.1/{p}",
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(8, 32),
)
macs = st.builds(lambda bs: ":".join(f"{b:02x}" for b in bs), st.binary(min_size=6, max_size=6))
valid_configs = st.fixed_dictionaries(
    {},
    optional={
        # Profile names are printable text: control and format characters are refused.
        "profile": st.text(
            st.characters(exclude_categories=("Cc", "Cf", "Cs")), min_size=1, max_size=10
        ).filter(str.strip),
        "interface": st.fixed_dictionaries(
            {},
            optional={
                "name": ifnames,
                "addresses": st.lists(ipv4_cidr, max_size=3),
                "mtu": st.integers(68, 262140),
                "hardwareAddr": macs,
                "gsoMaxSize": st.integers(1, 2**31 - 1),
                "forwarding": st.booleans(),
                "arpIgnore": st.sampled_from([0, 1, 2, 3, 8]),
                "arpAnnounce": st.integers(0, 2),
                "vrf": st.fixed_dictionaries(
                    {"name": ifnames}, optional={"table": st.integers(256, 2**32 - 1)}
                ),
            },
        ),
        "routes": st.lists(
            st.fixed_dictionaries(
                {"destination": ipv4_cidr, "scope": st.just(253)},
                optional={"table": st.integers(0, 2**32 - 1)},
            ),
            max_size=3,
        ),
        "neighbors": st.lists(
            st.fixed_dictionaries({"destination": st.just("192.0.2.1"), "hardwareAddr": macs}),
            max_size=2,
        ),
        "ethtool": st.fixed_dictionaries(
            {},
            optional={
                "features": st.dictionaries(
                    st.sampled_from(["tso", "gro", "rx-gro-list"]), st.booleans()
                )
            },
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(valid_configs)
def test_valid_configs_round_trip(data: dict[str, Any]) -> None:
    cfg = decode(data)
    assert validate(cfg) == []
    encoded = json.loads(cfg.to_json())
    again = decode(encoded)
    assert again == cfg
    assert json.loads(again.to_json()) == encoded


@settings(max_examples=200, deadline=None)
@given(valid_configs, valid_configs)
def test_merge_is_idempotent_and_override_wins(a: dict[str, Any], b: dict[str, Any]) -> None:
    ca, cb = decode(a), decode(b)
    merged = merge_configs(ca, cb)
    assert merge_configs(merged, cb) == merged
    if cb.interface is not None and cb.interface.mtu is not None:
        assert merged.interface is not None and merged.interface.mtu == cb.interface.mtu
