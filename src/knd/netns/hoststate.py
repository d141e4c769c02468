"""What prepare captured about one host interface (input of the pure plan builder)."""

from __future__ import annotations

from dataclasses import dataclass

from knd.netns.plan import CharDevice, HostSide, Toggle


@dataclass(frozen=True, slots=True)
class HostState:
    """Host interface (`host`, None for an RDMA-only device) plus the facts the builder needs:
    ethtool feature and private-flag names of the device and their current values (what
    detach restores), its RDMA link and char devices."""

    host: HostSide | None
    features: tuple[str, ...] = ()
    private_flags: tuple[str, ...] = ()
    feature_values: tuple[Toggle, ...] = ()
    private_flag_values: tuple[Toggle, ...] = ()
    rdma_link: str | None = None
    rdma_char_devices: tuple[CharDevice, ...] = ()


@dataclass(frozen=True, slots=True)
class DhcpLease:
    """A DHCPv4 lease obtained at prepare: address/prefix, router (option 3), classless
    static routes (option 121) as (destination CIDR, gateway)."""

    address: str
    router: str | None = None
    routes: tuple[tuple[str, str], ...] = ()
    server: str | None = None
    lease_time: int | None = None
    obtained_at: int | None = None  # wall-clock seconds (epoch) of the ACK
