"""Node-side dry run of prepare + attach (`knd plan`): what knd would do to this node for a claim.

`plan_claim(claim, ...)` runs the real prepare path (`PrepareEngine.dry_run`: the claim checks,
config resolution and validation, the real `NetnsPlanBuilder`: device lookup in sysfs, host
capture over netlink/ethtool, `knd.netns.builder.build_plan`) and returns the AttachPlans, or
raises the `ClaimError` prepare would answer the kubelet with. It changes nothing: the host
capture only reads, no DHCP exchange runs (the builder gets a placeholder lease and the report
says so), nothing is written to the node's state store (the engine gets an empty throwaway
store), no Event is recorded. Budget: a few ms per device (one capture each).

`plan_steps(plan)` lists, in the executor's order and with its step names (knd.netns.steps),
what attach would do with one plan: the netns move with the final name/MTU/MAC/sizes, sysctls,
addresses, link up, ethtool toggles, eBPF detach, VRF, routes, rules, neighbours, RDMA, and
what detach restores afterwards.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knd.driver.claim_api import Claim
from knd.driver.errors import ClaimNotFoundError
from knd.driver.netns_plans import NetnsPlanBuilder, SysfsDeviceLocator
from knd.driver.prepare import PrepareEngine
from knd.driver.store import StateStore
from knd.kubelet.types import ClaimRef
from knd.netns.hoststate import DhcpLease
from knd.netns.plan import SCOPE_LINK, AttachPlan, HostSide, PodSide, RdmaPlan, Route, Rule

#: The placeholder address of a `interface.dhcp` device in a dry run (RFC 5737 TEST-NET-1);
#: the report prints "DHCP lease" instead of it.
DRY_RUN_LEASE_ADDRESS = "192.0.2.0/32"


def _no_dhcp(ifname: str, mac: str) -> DhcpLease:
    del ifname, mac
    return DhcpLease(address=DRY_RUN_LEASE_ADDRESS)


class _NoReader:
    def get(self, namespace: str, name: str) -> Claim:
        raise ClaimNotFoundError(f"ResourceClaim {namespace}/{name}: a dry run reads no claim")


class _NoEvents:
    def warning(self, claim: Claim, reason: str, message: str) -> None:
        del claim, reason, message


@dataclass(frozen=True)
class DevicePlan:
    """One device of the claim: its allocation request and the plan attach would execute."""

    device: str
    pool: str
    request: str
    plan: AttachPlan


class PlanFailedError(Exception):
    """Prepare would fail: `message` is exactly the error prepare gives the kubelet."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def plan_claim(
    claim: Claim,
    *,
    driver: str,
    pool: str | None,
    sysfs_root: str = "/sys",
    rdma_mode: str = "shared",
    locator: SysfsDeviceLocator | None = None,
) -> list[DevicePlan]:
    """The plans prepare would persist for `claim` on this node; PlanFailedError with prepare's
    message otherwise. Changes nothing (see the module docstring)."""
    builder = NetnsPlanBuilder(
        locator=locator, rdma_mode=rdma_mode, sysfs_root=sysfs_root, lease=_no_dhcp
    )
    meta = claim.get("metadata") or {}
    ref = ClaimRef(
        str(meta.get("namespace", "")), str(meta.get("uid", "")), str(meta.get("name", ""))
    )
    with tempfile.TemporaryDirectory(prefix="knd-plan-") as tmp:
        store = StateStore(Path(tmp) / "dry-run.db")
        try:
            engine = PrepareEngine(
                driver=driver,
                store=store,
                reader=_NoReader(),
                events=_NoEvents(),
                plan_builder=builder,
                pool=pool,
            )
            try:
                records = engine.dry_run(claim)
                plans = [
                    DevicePlan(
                        r.device, r.pool, r.request, AttachPlan.from_json(json.dumps(r.plan))
                    )
                    for r in records
                ]
            except Exception as exc:  # the same catch-all as prepare, the same message
                raise PlanFailedError(engine.failure_message(ref, exc)) from exc
        finally:
            store.close()
    return plans


def _route(r: Route) -> str:
    out = r.destination
    if r.gateway:
        out += f" via {r.gateway}"
    if r.source:
        out += f" src {r.source}"
    if r.scope == SCOPE_LINK:
        out += " scope link"
    return out + f" table {r.table}"


Steps = list[tuple[str, str]]


def _move_steps(host: HostSide, pod: PodSide) -> Steps:
    steps: Steps = [("lookup", f"host interface {host.name} (ifindex {host.ifindex})")]
    if host.up:
        steps.append(("down", f"set {host.name} down in the host"))
    changes = [f"name {pod.name}"]
    if pod.mtu is not None:
        changes.append(f"mtu {pod.mtu} (host {host.mtu})")
    if pod.mac is not None:
        changes.append(f"mac {pod.mac} (host {host.mac})")
    for size in ("gso_max_size", "gro_max_size", "gso_ipv4_max_size", "gro_ipv4_max_size"):
        value = getattr(pod, size)
        if value is not None:
            changes.append(f"{size} {value}")
    steps.append(("move", "into the pod netns, " + ", ".join(changes)))
    return steps


def _interface_steps(host: HostSide, pod: PodSide) -> Steps:
    steps: Steps = [
        ("sysctl", f"net.{s.family}.conf.{pod.name}.{s.key} = {s.value}") for s in pod.sysctls
    ]
    for a in pod.addresses:
        if pod.dhcp is not None and a == DRY_RUN_LEASE_ADDRESS:
            steps.append(
                ("address", f"the DHCP lease's address (DHCP runs on {host.name} at prepare)")
            )
        else:
            steps.append(("address", a))
    steps.append(("up", f"set {pod.name} up"))
    for t in pod.features:
        steps.append(("ethtool", f"feature {t.name} {'on' if t.enable else 'off'}"))
    for t in pod.private_flags:
        steps.append(("ethtool", f"private flag {t.name} {'on' if t.enable else 'off'}"))
    if pod.disable_ebpf:
        steps.append(("ebpf", "detach the TC and TCX programs of the interface"))
    if pod.vrf is not None:
        steps.append(("vrf", f"VRF {pod.vrf.name} table {pod.vrf.table}, enslave {pod.name}"))
    return steps


def _rule(rule: Rule) -> str:
    sel = " ".join(
        p
        for p in (
            f"from {rule.source}" if rule.source else "",
            f"to {rule.destination}" if rule.destination else "",
            f"priority {rule.priority}" if rule.priority is not None else "",
        )
        if p
    )
    return f"{sel or 'all'} lookup {rule.table} (IPv{rule.family})"


def _routing_steps(pod: PodSide) -> Steps:
    steps: Steps = [("route", _route(r)) for r in pod.routes]
    steps += [("rule", _rule(rule)) for rule in pod.rules]
    steps += [
        ("neighbor", f"{n.destination} lladdr {n.hardware_addr} permanent") for n in pod.neighbors
    ]
    return steps


def _rdma_steps(rdma: RdmaPlan) -> Steps:
    steps: Steps = []
    if rdma.move_link and rdma.link:
        steps.append(("rdma", f"move RDMA device {rdma.link} into the pod netns"))
    elif rdma.link:
        steps.append(("rdma", f"RDMA device {rdma.link} stays shared (shared mode)"))
    for c in rdma.char_devices:
        steps.append(("rdma", f"CreateContainer: char device {c.path} ({c.major}:{c.minor})"))
    return steps


def _detach_step(host: HostSide) -> tuple[str, str]:
    restore = [f"name {host.name}", f"mtu {host.mtu}", f"mac {host.mac}"]
    if host.addresses:
        restore.append("addresses " + ", ".join(host.addresses))
    if host.routes:
        restore.append(f"{len(host.routes)} route(s)")
    return ("detach", "back to the host with " + ", ".join(restore))


def plan_steps(plan: AttachPlan) -> Steps:
    """(attach step, what it does) for one plan, in the executor's order."""
    steps: Steps = []
    host, pod = plan.host, plan.pod
    if host is not None and pod is not None:
        steps += _move_steps(host, pod) + _interface_steps(host, pod) + _routing_steps(pod)
    if plan.rdma is not None:
        steps += _rdma_steps(plan.rdma)
    if host is not None:
        steps.append(_detach_step(host))
    return steps


def report(plans: list[DevicePlan]) -> list[dict[str, Any]]:
    """JSON-shaped report: per device, its plan (as persisted) and the steps."""
    out: list[dict[str, Any]] = []
    for p in plans:
        plan_json: Mapping[str, Any] = json.loads(p.plan.to_json())
        out.append(
            {
                "device": p.device,
                "pool": p.pool,
                "request": p.request,
                "steps": [{"step": s, "action": a} for s, a in plan_steps(p.plan)],
                "plan": plan_json,
            }
        )
    return out
