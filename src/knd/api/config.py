"""The opaque claim configuration of knd: exactly DraNet's JSON schema (pkg/apis/types.go).

A config is the `parameters` object of an opaque device config whose `driver` is ours, in a
DeviceClass (`spec.config[]`) or a ResourceClaim (`spec.devices.config[]`). Decoding is strict:
an unknown field or a wrong JSON type is an error naming the JSON path
(`interface.vrf.table: must be an integer`). All fields are optional; `None` means "not set".
Semantic rules live in `knd.api.validation`, defaults in `knd.api.defaults`, merging in
`knd.api.merge`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knd.api.errors import ConfigError, FieldError

_MODEL = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class VrfConfig(BaseModel):
    """`interface.vrf`: enslave the pod interface to a VRF device created in the pod."""

    model_config = _MODEL
    name: str | None = None
    table: int | None = None


class InterfaceConfig(BaseModel):
    """`interface`: properties of the netdev inside the pod."""

    model_config = _MODEL
    name: str | None = None
    addresses: list[str] | None = None
    dhcp: bool | None = None
    mtu: int | None = None
    hardware_addr: str | None = Field(default=None, alias="hardwareAddr")
    gso_max_size: int | None = Field(default=None, alias="gsoMaxSize")
    gro_max_size: int | None = Field(default=None, alias="groMaxSize")
    gso_ipv4_max_size: int | None = Field(default=None, alias="gsoIPv4MaxSize")
    gro_ipv4_max_size: int | None = Field(default=None, alias="groIPv4MaxSize")
    disable_ebpf_programs: bool | None = Field(default=None, alias="disableEbpfPrograms")
    forwarding: bool | None = None
    arp_ignore: int | None = Field(default=None, alias="arpIgnore")
    arp_announce: int | None = Field(default=None, alias="arpAnnounce")
    vrf: VrfConfig | None = None


class RouteConfig(BaseModel):
    """`routes[]`: a static route in the pod (scope 0 universe or 253 link)."""

    model_config = _MODEL
    destination: str | None = None
    gateway: str | None = None
    source: str | None = None
    scope: int | None = None
    table: int | None = None


class RuleConfig(BaseModel):
    """`rules[]`: a policy-routing rule in the pod."""

    model_config = _MODEL
    priority: int | None = None
    source: str | None = None
    destination: str | None = None
    table: int | None = None


class NeighborConfig(BaseModel):
    """`neighbors[]`: a permanent ARP/NDP entry in the pod."""

    model_config = _MODEL
    destination: str | None = None
    hardware_addr: str | None = Field(default=None, alias="hardwareAddr")


class EthtoolConfig(BaseModel):
    """`ethtool`: offload features and driver private flags (name → on/off)."""

    model_config = _MODEL
    features: dict[str, bool] | None = None
    private_flags: dict[str, bool] | None = Field(default=None, alias="privateFlags")


class IpRangeConfig(BaseModel):
    """`subInterface.ipRanges[]`: a node-local IPAM range: `subnet` (CIDR), optionally narrowed
    to `start`..`end` (inclusive)."""

    model_config = _MODEL
    subnet: str | None = None
    start: str | None = None
    end: str | None = None


class SubInterfaceConfig(BaseModel):
    """`subInterface`: give the pod a macvlan/ipvlan child of the device instead of the device
    itself, so several pods share one NIC (DraNet's sub-interfaces). The child takes
    `interface.name` (default: the parent's name) and `interface.addresses`, or one address per
    IP family from `ipRanges`; `routes`, `rules` and `neighbors` apply to the child."""

    model_config = _MODEL
    type: str | None = None
    mode: str | None = None
    flag: str | None = None
    ip_ranges: list[IpRangeConfig] | None = Field(default=None, alias="ipRanges")


class NumaConfig(BaseModel):
    """knd only (not in DraNet's schema): CPU placement on the NUMA nodes of the claimed NICs."""

    model_config = _MODEL
    align_cpus: bool | None = Field(default=None, alias="alignCpus")
    on_no_overlap: str | None = Field(default=None, alias="onNoOverlap")


class NetworkConfig(BaseModel):
    """The whole opaque config object (`profile` and `numa` are knd's additions)."""

    model_config = _MODEL
    profile: str | None = None
    numa: NumaConfig | None = None
    interface: InterfaceConfig | None = None
    sub_interface: SubInterfaceConfig | None = Field(default=None, alias="subInterface")
    routes: list[RouteConfig] | None = None
    rules: list[RuleConfig] | None = None
    neighbors: list[NeighborConfig] | None = None
    ethtool: EthtoolConfig | None = None

    def to_json_obj(self) -> dict[str, Any]:
        """The JSON object form, camelCase field names, unset fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, compact)."""
        return json.dumps(self.to_json_obj(), sort_keys=True, separators=(",", ":"))


EMPTY = NetworkConfig()

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "bool_type": "must be a boolean",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "extra_forbidden": "unknown field",
}


def _json_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "dict_type" and loc and loc[-1] == "[key]":
            loc = loc[:-1]
        message = _TYPE_MESSAGES.get(err["type"], str(err["msg"]).lower())
        errors.append(FieldError(_json_path(loc), message))
    return errors


def decode(data: object) -> NetworkConfig:
    """Strictly decode a JSON value (already parsed) into a NetworkConfig.

    `None` and `{}` decode to an empty config. Raises ConfigError listing every type error and
    unknown field with its JSON path; never raises anything else for any JSON-shaped input.
    """
    if data is None:
        return EMPTY
    if not isinstance(data, Mapping):
        raise ConfigError([FieldError("", "config must be a JSON object")])
    try:
        return NetworkConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_field_errors(exc)) from None


def decode_json(text: str | bytes) -> NetworkConfig:
    """Decode JSON text (the raw `parameters` bytes of an opaque config)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError([FieldError("", f"invalid JSON: {exc}")]) from None
    return decode(data)
