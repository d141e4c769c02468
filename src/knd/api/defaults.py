"""Defaults applied to a decoded config before validation (DraNet pkg/apis/defaults.go).

Only one default exists: a VRF with a name and no table gets
`1000 + FNV-1a-32(name) mod 1000`, so every interface joining the same VRF name in a pod shares
one table, and the result never collides with the reserved tables 253-255.
"""

from knd.api.config import InterfaceConfig, NetworkConfig, VrfConfig

VRF_TABLE_BASE = 1000
VRF_TABLE_SPAN = 1000

_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    """The 32-bit FNV-1a hash (as Go's hash/fnv New32a)."""
    h = _FNV32_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV32_PRIME) & 0xFFFFFFFF
    return h


def default_vrf_table(name: str) -> int:
    """The table a VRF named `name` gets when none is configured."""
    return VRF_TABLE_BASE + fnv1a_32(name.encode()) % VRF_TABLE_SPAN


def with_defaults(cfg: NetworkConfig) -> NetworkConfig:
    """Return `cfg` with defaults filled in; `cfg` itself is not changed (models are frozen)."""
    iface = cfg.interface
    if iface is None or iface.vrf is None or iface.vrf.table is not None or not iface.vrf.name:
        return cfg
    vrf = VrfConfig.model_construct(name=iface.vrf.name, table=default_vrf_table(iface.vrf.name))
    new_iface = iface.model_copy(update={"vrf": vrf})
    assert isinstance(new_iface, InterfaceConfig)
    return cfg.model_copy(update={"interface": new_iface})
