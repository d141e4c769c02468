"""Shared helpers for netns tests: host-state setup and plan building."""

from __future__ import annotations

from typing import Any

from knd.api.config import decode
from knd.netns.builder import build_plan
from knd.netns.capture import capture_host_state
from knd.netns.plan import AttachPlan

from .conftest import Nic, sh


def give_host_state(nic: Nic, n: int) -> None:
    """Addresses, a policy route in table 100+n, a rule and a permanent neighbour."""
    sh("ip", "addr", "add", f"10.{n}.0.1/24", "dev", nic.name)
    sh("ip", "-6", "addr", "add", f"2001:db8:{n}::1/64", "dev", nic.name, "nodad")
    sh(
        "ip",
        "route",
        "add",
        f"10.{n + 100}.0.0/24",
        "via",
        f"10.{n}.0.254",
        "dev",
        nic.name,
        "table",
        str(100 + n),
    )
    sh("ip", "rule", "add", "from", f"10.{n}.0.0/24", "table", str(100 + n), "prio", str(1000 + n))
    sh(
        "ip",
        "neigh",
        "add",
        f"10.{n}.0.9",
        "lladdr",
        "02:00:00:00:09:09",
        "dev",
        nic.name,
        "nud",
        "permanent",
    )


def drop_rule(n: int) -> None:
    sh("ip", "rule", "del", "prio", str(1000 + n))


def plan_for(nic: Nic, config: dict[str, Any] | None = None, pod_uid: str = "uid-1") -> AttachPlan:
    state = capture_host_state(nic.name)
    return build_plan(nic.name, pod_uid, decode(config or {}), state)
