"""knd's hand-kept netlink numbers, checked against pyroute2's own tables.

The hot paths encode netlink by hand (knd.netns.rawlink, knd.host.rtnl, knd.netns.snapshot,
knd.netns.rdma) instead of through pyroute2; their constants are typed in by hand. pyroute2
lists attributes in the kernel's enum order, so an attribute's number is its position in
`nla_map`: every constant of those modules is checked here against that position (attributes)
or pyroute2's named constants (messages, flags, route types and protocols). The few numbers
pyroute2 does not know are listed with why, and are checked against the kernel's uapi values.
"""

from __future__ import annotations

import types

import pytest
from pyroute2 import netlink as nl
from pyroute2.netlink import rtnl
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from knd.host import rtnl as host_rtnl
from knd.netns import rawlink, rdma, snapshot

pytestmark = pytest.mark.unit

MODULES = (rawlink, host_rtnl, snapshot, rdma)

#: Numbers pyroute2 0.9 has no table entry for, with the kernel uapi value and where it is from.
HAND_CHECKED = {
    # include/uapi/linux/if_link.h, Linux 6.3: after IFLA_ALLMULTI (62); pyroute2 stops at 61.
    "IFLA_GSO_IPV4_MAX_SIZE": 63,
    "IFLA_GRO_IPV4_MAX_SIZE": 64,
    # include/uapi/linux/netlink.h
    "NETLINK_RDMA": 20,
    # include/uapi/linux/neighbour.h
    "NUD_PERMANENT": 0x80,
}
#: Prefixes of the constants this test owns; anything else (RDMA's nldev numbers, sizes,
#: scopes, clone flags) is not a netlink wire number pyroute2 tabulates.
PREFIXES = (
    "IFLA_",
    "IFA_",
    "RTA_",
    "RTM_",
    "NLM_F_",
    "NLMSG_",
    "RTN_",
    "RTPROT_",
    "NETLINK_",
    "NUD_",
)


def _positions(nla_map: tuple[tuple[str, str], ...]) -> dict[str, int]:
    return {name: i for i, (name, _kind) in enumerate(nla_map)}


ATTRS = {
    **_positions(ifinfmsg.nla_map),
    **_positions(ifinfmsg.ifinfo.nla_map),  # IFLA_INFO_* inside IFLA_LINKINFO
    **_positions(ifaddrmsg.nla_map),
    **_positions(rtmsg.nla_map),
}


def pyroute2_value(name: str) -> int | None:
    if name in ATTRS:
        return ATTRS[name]
    for source in (rtnl, nl):
        value = getattr(source, name, None)
        if isinstance(value, int):
            return value
    table: dict[str, int] = {}
    if name.startswith("RTN_"):
        table = rtnl.rt_type
    elif name.startswith("RTPROT_"):
        table = rtnl.rt_proto
    return table.get(name.partition("_")[2].lower())


def _constants(module: types.ModuleType) -> dict[str, int]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.startswith(PREFIXES) and isinstance(value, int) and not isinstance(value, bool)
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_hand_kept_number_matches_pyroute2_or_the_kernel(module: types.ModuleType) -> None:
    constants = _constants(module)
    assert constants, f"{module.__name__} keeps no netlink numbers?"
    wrong = {}
    for name, value in constants.items():
        expected = HAND_CHECKED.get(name, pyroute2_value(name))
        if expected is None:
            wrong[name] = "unknown to pyroute2 and not in HAND_CHECKED"
        elif expected != value:
            wrong[name] = f"{value} here, {expected} in pyroute2/uapi"
    assert wrong == {}


def test_hand_checked_numbers_are_still_missing_from_pyroute2() -> None:
    """When pyroute2 learns one of them, its table takes over (drop it from HAND_CHECKED)."""
    assert [name for name in HAND_CHECKED if pyroute2_value(name) is not None] == []
