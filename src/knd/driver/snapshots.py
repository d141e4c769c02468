"""Feature gate `PersistentResourceSliceAttributes` (DraNet's): allocated devices keep their
attributes in the ResourceSlice while a pod uses them.

Why: once a NIC's netdev is in a pod, a host scan sees the PCI function without `ifName`, `mac`,
`mtu`, addresses..., and a virtual interface (a veth, a macvlan) is not seen at all, so the
published device changes or disappears while allocated (autoscalers and KEP-5055 consumers read
allocated devices from the slice). With the gate on, the daemon snapshots each device's
discovered attributes when its claim is prepared, and every publish merges the snapshots of
still-prepared claims into the live scan, live attributes winning where both have one, before
the admin filter runs — DraNet's order (pkg/driver/dra_hooks.go).

Contract: `DeviceSnapshots(store)` keeps snapshots in the state store's `meta` table (keys
`snapshot/<claim uid>/<device>`, value the device's JSON), so they survive a daemon restart;
`record` at prepare, `forget` at unprepare, `active()` returns only snapshots whose claim is
still prepared (a claim unprepared while the daemon was down leaves nothing behind). Each call is
one SQLite statement; `merge` is linear in the number of devices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from knd.driver.store import StateStore
from knd.inventory.model import AttrValue, Device

log = logging.getLogger(__name__)

PREFIX = "snapshot/"


def _decode(raw: str) -> Device | None:
    try:
        data = json.loads(raw)
        attrs: dict[str, AttrValue] = {}
        for key, value in dict(data["attributes"]).items():
            attrs[str(key)] = tuple(value) if isinstance(value, list) else value
        shares = data.get("shares", 0)
        return Device(str(data["name"]), attrs, shares if type(shares) is int else 0)
    except (ValueError, KeyError, TypeError):
        return None


class DeviceSnapshots:
    """Snapshots of allocated devices, persisted in the state store (see the module contract)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def record(self, claim_uid: str, devices: Iterable[Device]) -> int:
        """Remember these devices for `claim_uid`; returns how many."""
        n = 0
        for dev in devices:
            snap: dict[str, Any] = {"name": dev.name, "attributes": dict(dev.attributes)}
            if dev.shares:
                snap["shares"] = dev.shares
            value = json.dumps(snap)
            self.store.put_meta(f"{PREFIX}{claim_uid}/{dev.name}", value)
            n += 1
        return n

    def forget(self, claim_uid: str) -> int:
        """Drop the snapshots of `claim_uid`; returns how many."""
        return self.store.delete_meta_prefix(f"{PREFIX}{claim_uid}/")

    def active(self) -> list[Device]:
        """Snapshots of claims that are still prepared (one per device name)."""
        prepared = {c.uid for c in self.store.claims()}
        out: dict[str, Device] = {}
        for key, raw in self.store.meta_with_prefix(PREFIX).items():
            claim_uid = key[len(PREFIX) :].partition("/")[0]
            if claim_uid not in prepared:
                continue
            dev = _decode(raw)
            if dev is None:
                log.warning("ignoring an unreadable device snapshot %s", key)
                continue
            out[dev.name] = dev
        return list(out.values())


def merge(live: Sequence[Device], snapshots: Sequence[Device]) -> list[Device]:
    """Live devices plus snapshots: a device only in a snapshot is added as it was; a device in
    both gets the union of attributes, the live value winning. Sorted by name."""
    merged: dict[str, Device] = {d.name: d for d in live}
    for snap in snapshots:
        current = merged.get(snap.name)
        if current is None:
            merged[snap.name] = snap
            continue
        attrs: dict[str, Any] = dict(snap.attributes)
        attrs.update(current.attributes)
        merged[snap.name] = Device(snap.name, attrs, current.shares or snap.shares)
    return [merged[name] for name in sorted(merged)]


def snapshot_of(results: Mapping[str, Any], live: Mapping[str, Device]) -> dict[str, list[Device]]:
    """Per prepared claim uid, the live devices its result names (PrepareResult-shaped values:
    `.error` and `.devices[].device`); devices not in the last scan are skipped with a warning."""
    out: dict[str, list[Device]] = {}
    for claim_uid, result in results.items():
        if getattr(result, "error", ""):
            continue
        found = []
        for prepared in getattr(result, "devices", ()):
            dev = live.get(prepared.device)
            if dev is None:
                log.warning(
                    "device %s of claim %s is not in the last scan: no attribute snapshot",
                    prepared.device,
                    claim_uid,
                )
                continue
            found.append(dev)
        out[claim_uid] = found
    return out
