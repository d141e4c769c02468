"""Scheduler emulator: a DRA structured-parameters allocator for one node, with explanations.

What it does, as kube-scheduler's DRA plugin does for `resource.k8s.io/v1` claims:
* candidate devices: the node's ResourceSlices (spec.nodeName == node, or allNodes), newest pool
  generation only, minus devices already allocated to other claims;
* per request (`exactly`): DeviceClass selectors AND request selectors (CEL), allocation mode
  `ExactCount` (count, default 1) or `All`; `firstAvailable` subrequests tried in order;
* claim constraints `matchAttribute` (all chosen devices of the listed requests, default all,
  carry the attribute with one value; devices without it are not eligible) and
  `distinctAttribute` (pairwise different values);
* first fit with backtracking over requests and devices in slice order;
* result: `status.allocation` (`devices.results`, `devices.config` with class configs first as
  `FromClass`, then claim configs as `FromClaim`, and a nodeSelector for the node).

* consumable capacity (KEP-5075, knd.lab.capacity): a device with `allowMultipleAllocations`
  stays a candidate while its capacities have room for the request (other claims'
  `consumedCapacity` counted), and its result carries `consumedCapacity` and a `shareID`.

What it does not do (docs/lab.md): admin access, device taints and tolerations, partitionable
devices / counters, binding conditions, prioritised scoring across nodes, multi-node pools;
one claim never gets the same shareable device twice.

Every decision is recorded in an `Explanation` so `knd explain` can show, per request, which
devices each selector kept or dropped and why, and which constraint blocked allocation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from knd.lab.capacity import Consumed, consumption
from knd.lab.celenv import DeviceSelector, SelectorError, SliceDevice
from knd.lab.quantity import render


class AllocationError(Exception):
    """The claim cannot be allocated; the message says why (the Explanation has details)."""


@dataclass
class DeviceVerdict:
    """Why one device is or is not a candidate for one request."""

    device: SliceDevice
    kept: bool
    reason: str


@dataclass
class RequestExplanation:
    """Candidates of one request (or subrequest) and the verdict for every device."""

    name: str
    device_class: str
    mode: str
    count: int
    verdicts: list[DeviceVerdict] = field(default_factory=list)
    #: What this request would consume of each kept shareable device.
    consumption: dict[tuple[str, str, str], dict[str, Decimal]] = field(default_factory=dict)

    @property
    def candidates(self) -> list[SliceDevice]:
        """Devices that passed every selector, in slice order."""
        return [v.device for v in self.verdicts if v.kept]


@dataclass
class Explanation:
    """The whole dry run: per-request verdicts, the outcome and, on failure, the blocker."""

    requests: list[RequestExplanation] = field(default_factory=list)
    allocated: list[tuple[str, SliceDevice]] = field(default_factory=list)
    blocker: str = ""

    @property
    def ok(self) -> bool:
        """True when an allocation was found."""
        return not self.blocker


def devices_from_slices(slices: Iterable[Mapping[str, Any]], node: str | None) -> list[SliceDevice]:
    """Devices visible to `node` (None = every node), newest generation of each pool only."""
    newest: dict[tuple[str, str], int] = {}
    usable = []
    for s in slices:
        spec = s.get("spec") or {}
        if node is not None and spec.get("nodeName") not in (node, None):
            continue
        if node is not None and spec.get("nodeName") is None and not spec.get("allNodes"):
            continue
        pool = spec.get("pool") or {}
        key = (str(spec.get("driver")), str(pool.get("name")))
        gen = int(pool.get("generation") or 0)
        newest[key] = max(newest.get(key, gen), gen)
        usable.append((key, gen, spec))
    out: list[SliceDevice] = []
    for key, gen, spec in usable:
        if gen != newest[key]:
            continue
        for dev in spec.get("devices") or []:
            out.append(
                SliceDevice(
                    driver=key[0],
                    pool=key[1],
                    name=str(dev.get("name")),
                    attributes=dev.get("attributes") or {},
                    capacity=dev.get("capacity") or {},
                    multiple_allocations=bool(dev.get("allowMultipleAllocations")),
                )
            )
    return out


def _selectors(obj: Mapping[str, Any] | None) -> list[DeviceSelector]:
    out = []
    for sel in (obj or {}).get("selectors") or []:
        expr = (sel.get("cel") or {}).get("expression")
        if expr:
            out.append(DeviceSelector(str(expr)))
    return out


@dataclass
class _Slot:
    request: str
    candidates: list[SliceDevice]
    consumption: Mapping[tuple[str, str, str], Mapping[str, Decimal]] = field(default_factory=dict)


class Allocator:
    """Allocate claims on one node against a set of slices and DeviceClasses."""

    def __init__(
        self,
        slices: Sequence[Mapping[str, Any]],
        device_classes: Mapping[str, Mapping[str, Any]],
        node: str | None,
    ) -> None:
        self.devices = devices_from_slices(slices, node)
        self.classes = device_classes
        self.node = node
        self.domains = sorted(
            {
                name.partition("/")[0] if "/" in name else d.driver
                for d in self.devices
                for name in d.attributes
            }
        )

    # -- request evaluation -------------------------------------------------------------
    def _explain_request(
        self,
        name: str,
        exact: Mapping[str, Any],
        in_use: set[tuple[str, str, str]],
        consumed: Consumed,
    ) -> RequestExplanation:
        class_name = str(exact.get("deviceClassName", ""))
        mode = str(exact.get("allocationMode") or "ExactCount")
        count = int(exact.get("count") or 1)
        req = RequestExplanation(name, class_name, mode, count)
        dclass = self.classes.get(class_name)
        if dclass is None:
            raise AllocationError(f"request {name!r}: DeviceClass {class_name!r} not found")
        stages = [
            (f"class {class_name} selector", _selectors(dclass.get("spec"))),
            ("request selector", _selectors(exact)),
        ]
        for device in self.devices:
            verdict = DeviceVerdict(device, True, "all selectors true")
            if device.key in in_use and not device.multiple_allocations:
                verdict = DeviceVerdict(device, False, "already allocated to another claim")
            else:
                for label, selectors in stages:
                    failed = self._first_false(selectors, device)
                    if failed:
                        verdict = DeviceVerdict(device, False, f"{label} {failed}")
                        break
            if verdict.kept:
                misfit, use = consumption(device, exact, consumed)
                if misfit:
                    verdict = DeviceVerdict(device, False, misfit)
                elif use:
                    req.consumption[device.key] = use
            req.verdicts.append(verdict)
        return req

    def _first_false(self, selectors: list[DeviceSelector], device: SliceDevice) -> str:
        for sel in selectors:
            try:
                if not sel.matches(device, self.domains):
                    return f"false: {sel.expression}"
            except SelectorError as exc:
                return f"error: {exc}"
        return ""

    # -- search -----------------------------------------------------------------------
    def allocate(
        self,
        claim: Mapping[str, Any],
        in_use: Iterable[tuple[str, str, str]] = (),
        consumed: Consumed | None = None,
    ) -> tuple[dict[str, Any], Explanation]:
        """Allocate `claim` (a ResourceClaim or its `spec`); returns (status.allocation,
        explanation). `in_use`: devices other claims hold; `consumed`: the capacity they
        consume of shareable ones (knd.lab.capacity.consumed_by). Raises AllocationError (its
        explanation in `.args[1]`)."""
        spec = claim.get("spec", claim) if "devices" not in claim else claim
        devices_spec = (spec or {}).get("devices") or {}
        used = set(in_use)
        explanation = Explanation()
        slots: list[_Slot] = []
        for request in devices_spec.get("requests") or []:
            name = str(request.get("name"))
            alternatives: list[tuple[str, Mapping[str, Any]]]
            if "firstAvailable" in request:
                alternatives = [
                    (f"{name}/{sub.get('name')}", sub) for sub in request["firstAvailable"]
                ]
            else:
                alternatives = [(name, request.get("exactly") or {})]
            chosen = None
            for alt_name, exact in alternatives:
                req = self._explain_request(alt_name, exact, used, consumed or {})
                explanation.requests.append(req)
                if req.mode == "All":
                    if req.candidates:
                        chosen = [_Slot(alt_name, [d], req.consumption) for d in req.candidates]
                        break
                elif len(req.candidates) >= req.count:
                    chosen = [
                        _Slot(alt_name, req.candidates, req.consumption) for _ in range(req.count)
                    ]
                    break
            if chosen is None:
                last = explanation.requests[-1]
                explanation.blocker = (
                    f"request {name!r}: {len(last.candidates)} matching device(s), "
                    f"{'at least 1' if last.mode == 'All' else last.count} needed"
                )
                raise AllocationError(explanation.blocker, explanation)
            slots.extend(chosen)
        constraints = list(devices_spec.get("constraints") or [])
        picked = self._search(slots, constraints, explanation)
        if picked is None:
            raise AllocationError(explanation.blocker, explanation)
        explanation.allocated = picked
        uses = {slot.request: slot.consumption for slot in slots}
        return self._allocation(spec, picked, uses), explanation

    def _search(
        self, slots: list[_Slot], constraints: list[Mapping[str, Any]], explanation: Explanation
    ) -> list[tuple[str, SliceDevice]] | None:
        chosen: list[tuple[str, SliceDevice]] = []
        taken: set[tuple[str, str, str]] = set()
        blockers: dict[str, int] = {}

        def ok(request: str, device: SliceDevice) -> str:
            for c in constraints:
                applies = c.get("requests") or [s.request for s in slots]
                parents = {request, request.split("/", 1)[0]}
                if not parents & set(applies):
                    continue
                if "matchAttribute" in c:
                    attr = str(c["matchAttribute"])
                    value = device.attribute(attr)
                    if value is None:
                        return f"matchAttribute {attr}: {device.name} lacks it"
                    for r, d in chosen:
                        if {r, r.split("/", 1)[0]} & set(applies) and d.attribute(attr) != value:
                            return f"matchAttribute {attr}: {value!r} != {d.attribute(attr)!r}"
                if "distinctAttribute" in c:
                    attr = str(c["distinctAttribute"])
                    value = device.attribute(attr)
                    for r, d in chosen:
                        if {r, r.split("/", 1)[0]} & set(applies) and d.attribute(attr) == value:
                            return f"distinctAttribute {attr}: {value!r} already used"
            return ""

        def step(i: int) -> bool:
            if i == len(slots):
                return True
            slot = slots[i]
            for device in slot.candidates:
                if device.key in taken:
                    continue
                why = ok(slot.request, device)
                if why:
                    key = f"request {slot.request!r}: {why.split(':')[0]}"
                    blockers[key] = blockers.get(key, 0) + 1
                    continue
                chosen.append((slot.request, device))
                taken.add(device.key)
                if step(i + 1):
                    return True
                chosen.pop()
                taken.discard(device.key)
            return False

        if step(0):
            return chosen
        if blockers:
            worst = max(blockers, key=lambda k: blockers[k])
            explanation.blocker = f"no combination satisfies the constraints; {worst} blocks"
        else:
            explanation.blocker = "not enough distinct devices for all requests together"
        return None

    def _allocation(
        self,
        spec: Mapping[str, Any],
        picked: list[tuple[str, SliceDevice]],
        uses: Mapping[str, Mapping[tuple[str, str, str], Mapping[str, Decimal]]],
    ) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for r, d in picked:
            result: dict[str, Any] = {
                "request": r,
                "driver": d.driver,
                "pool": d.pool,
                "device": d.name,
            }
            if d.multiple_allocations:
                # As kube-scheduler: each allocation of a shareable device is one share.
                result["shareID"] = str(uuid.uuid4())
                taken = uses.get(r, {}).get(d.key) or {}
                result["consumedCapacity"] = {n: render(v) for n, v in sorted(taken.items())}
            results.append(result)
        config: list[dict[str, Any]] = []
        devices_spec = spec.get("devices") or {}
        for request in devices_spec.get("requests") or []:
            class_name = (request.get("exactly") or {}).get("deviceClassName")
            dclass = self.classes.get(str(class_name)) if class_name else None
            for entry in ((dclass or {}).get("spec") or {}).get("config") or []:
                config.append(
                    {
                        "source": "FromClass",
                        "requests": [request["name"]],
                        "opaque": entry["opaque"],
                    }
                )
        for entry in devices_spec.get("config") or []:
            item: dict[str, Any] = {"source": "FromClaim", "opaque": entry["opaque"]}
            if entry.get("requests"):
                item["requests"] = list(entry["requests"])
            config.append(item)
        allocation: dict[str, Any] = {"devices": {"results": results}}
        if config:
            allocation["devices"]["config"] = config
        if self.node:
            allocation["nodeSelector"] = {
                "nodeSelectorTerms": [
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": [self.node]}
                        ]
                    }
                ]
            }
        return allocation
