"""Publish a node's devices as its ResourceSlice pool (pool name = node name), with few writes.

One `publish(devices)` call:
1. reads the Node (for the owner reference; cached) and the node's slices of this driver;
2. keeps slices of the highest pool generation G with a parseable index prefix; the rest
   (older generations, duplicates, foreign names) are obsolete;
3. plans slices with stable assignment (`knd.inventory.slices.assign`) and compares each planned
   slice with the stored one (devices, pool, nodeName, owner);
4. generation: unchanged when no slice is created or deleted and at most one slice changes
   (one changed NIC ⇒ one update); otherwise G+1 and every slice is rewritten (the Go helper's
   rule: consumers only trust slices of the highest generation);
5. deletes obsolete slices (uid + resourceVersion preconditions), updates changed ones (with
   their resourceVersion), creates missing ones (`generateName`).
Nothing changed ⇒ zero writes. A 409/404 during a write re-reads and replans (bounded retries).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from knd.api.attributes import DEFAULT_DRIVER_NAME
from knd.inventory.model import Device
from knd.inventory.slices import (
    API_VERSION,
    assign,
    generate_name,
    node_owner,
    slice_index,
    slice_spec,
)
from knd.kube.errors import ApiError, ConflictError, NotFoundError
from knd.kube.slice_client import SliceClient

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Publishing failed after retries (cause chained)."""


@dataclass(slots=True)
class PublishResult:
    generation: int
    slices: int
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    attempts: int = 1
    names: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return self.creates + self.updates + self.deletes


def _pool_generation(obj: dict[str, Any]) -> int:
    return int(obj.get("spec", {}).get("pool", {}).get("generation") or 0)


def _comparable(obj: dict[str, Any]) -> tuple[Any, ...]:
    spec = obj.get("spec", {})
    pool = spec.get("pool", {})
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    owner = [
        (o.get("kind"), o.get("name"), o.get("uid"), bool(o.get("controller"))) for o in owners
    ]
    return (
        spec.get("driver"),
        spec.get("nodeName"),
        pool.get("name"),
        int(pool.get("generation") or 0),
        int(pool.get("resourceSliceCount") or 0),
        spec.get("devices") or [],
        owner,
    )


class SlicePublisher:
    """Keeps the node's pool equal to the given devices."""

    def __init__(
        self,
        client: SliceClient,
        node_name: str,
        driver: str = DEFAULT_DRIVER_NAME,
        max_attempts: int = 5,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.driver = driver
        self.max_attempts = max_attempts
        self._owner: dict[str, Any] | None = None

    def _owner_ref(self) -> dict[str, Any]:
        if self._owner is None:
            try:
                node = self.client.get_node(self.node_name)
            except NotFoundError as exc:  # not a conflict: replanning cannot help
                raise PublishError(
                    f"node {self.node_name} not found (slices are owned by their Node; "
                    "is the node name right?)"
                ) from exc
            uid = node.get("metadata", {}).get("uid")
            if not uid:
                raise PublishError(f"node {self.node_name} has no uid")
            self._owner = node_owner(self.node_name, uid)
        return self._owner

    def publish(self, devices: Sequence[Device]) -> PublishResult:
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = self._sync(devices)
            except (ConflictError, NotFoundError) as exc:
                log.info("slice publish conflict (attempt %d): %s", attempt, exc)
                last = exc
                continue
            except ApiError as exc:
                raise PublishError(f"publishing slices failed: {exc}") from exc
            result.attempts = attempt
            return result
        raise PublishError(f"publishing slices failed after {self.max_attempts} attempts") from last

    def _sync(self, devices: Sequence[Device]) -> PublishResult:
        owner = self._owner_ref()
        existing = [
            s
            for s in self.client.list_slices(self.node_name)
            if s.get("spec", {}).get("driver") == self.driver
            and s.get("spec", {}).get("pool", {}).get("name") == self.node_name
        ]
        gen = max((_pool_generation(s) for s in existing), default=0)
        current: dict[int, dict[str, Any]] = {}
        obsolete: list[dict[str, Any]] = []
        for s in sorted(existing, key=lambda o: o["metadata"]["name"]):
            idx = slice_index(s["metadata"]["name"])
            if _pool_generation(s) != gen or idx is None or idx in current:
                obsolete.append(s)
            else:
                current[idx] = s
        previous = {
            i: [d["name"] for d in s.get("spec", {}).get("devices") or []]
            for i, s in current.items()
        }
        planned = assign(devices, previous)
        planned_idx = {p.index for p in planned}
        obsolete.extend(s for i, s in current.items() if i not in planned_idx)
        count = len(planned)

        def body(p_index: int, devs: Sequence[Device], generation: int) -> dict[str, Any]:
            return {
                "apiVersion": API_VERSION,
                "kind": "ResourceSlice",
                "metadata": {"ownerReferences": [owner]},
                "spec": slice_spec(self.node_name, self.driver, devs, generation, count),
            }

        changed = [
            p
            for p in planned
            if p.index in current
            and _comparable(body(p.index, p.devices, gen)) != _comparable(current[p.index])
        ]
        new = [p for p in planned if p.index not in current]
        if gen == 0 or new or obsolete or len(changed) > 1:
            gen += 1
            changed = [p for p in planned if p.index in current]
        result = PublishResult(generation=gen, slices=count)
        for s in obsolete:
            meta = s["metadata"]
            with contextlib.suppress(NotFoundError):  # already gone: that is what we wanted
                self.client.delete_slice(meta["name"], meta.get("uid"), meta.get("resourceVersion"))
            result.deletes += 1
        for p in changed:
            meta = current[p.index]["metadata"]
            b = body(p.index, p.devices, gen)
            b["metadata"].update(
                name=meta["name"], resourceVersion=meta.get("resourceVersion"), uid=meta.get("uid")
            )
            self.client.update_slice(b)
            result.updates += 1
            result.names.append(meta["name"])
        for p in new:
            b = body(p.index, p.devices, gen)
            b["metadata"]["generateName"] = generate_name(p.index, self.driver, self.node_name)
            created = self.client.create_slice(b)
            result.creates += 1
            result.names.append(created.get("metadata", {}).get("name", ""))
        if result.writes:
            log.info(
                "published %d device(s) in %d slice(s), generation %d: %d write(s)",
                len(devices),
                count,
                gen,
                result.writes,
            )
        return result
