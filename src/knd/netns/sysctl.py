"""Per-interface sysctls, written from a thread inside the target netns (see `nsfd`).

Only a fixed set of keys can be written, and the interface name is validated before it becomes
part of a `/proc/sys/net/...` path: claim config is hostile. Values are integers.
"""

from __future__ import annotations

from knd.api.rules import interface_name_problem
from knd.netns.errors import PlanError

# (family, key) pairs a plan may carry for the pod interface.
INTERFACE_KEYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("ipv4", "arp_ignore"),
        ("ipv4", "arp_announce"),
        ("ipv4", "forwarding"),
        ("ipv6", "forwarding"),
    }
)
# netns-wide keys the executor sets itself (VRF).
GLOBAL_KEYS: frozenset[str] = frozenset({"ipv4/tcp_l3mdev_accept", "ipv4/udp_l3mdev_accept"})

PROC_SYS_NET = "/proc/sys/net"


def check_ifname(name: str) -> str:
    """Return `name` if it is a safe Linux interface name (the rule book's: ≤15 bytes,
    [A-Za-z0-9_.-], not `.`/`..`), else raise PlanError."""
    if not name or interface_name_problem(name) is not None:
        raise PlanError(f"invalid interface name {name!r}")
    return name


def interface_path(family: str, ifname: str, key: str) -> str:
    """`/proc/sys/net/<family>/conf/<ifname>/<key>` for an allowed (family, key)."""
    if (family, key) not in INTERFACE_KEYS:
        raise PlanError(f"sysctl {family}/{key} is not allowed")
    return f"{PROC_SYS_NET}/{family}/conf/{check_ifname(ifname)}/{key}"


def global_path(key: str) -> str:
    """`/proc/sys/net/<key>` for an allowed netns-wide key."""
    if key not in GLOBAL_KEYS:
        raise PlanError(f"sysctl {key} is not allowed")
    return f"{PROC_SYS_NET}/{key}"


def write(path: str, value: int) -> None:
    """Write an integer to a sysctl file (must run in the target netns's thread)."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write(f"{int(value)}\n")


def read(path: str) -> int:
    """Read an integer sysctl."""
    with open(path, encoding="ascii") as fh:
        return int(fh.read().split()[0])
