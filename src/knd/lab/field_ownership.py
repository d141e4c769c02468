"""Server-side apply field ownership of a ResourceClaim's `status.devices` (EMULATED).

kube-apiserver records, per object, which field manager owns which fields (managedFields).
`status.devices` is a list-map keyed by driver/pool/device/shareID, shared by every DRA driver
that reports on a claim; this module keeps that bookkeeping for the emulator
(knd.lab.apiserver), one `DeviceStatusOwners` per claim:

* An entry is owned through its identity (its key fields, `IDENTITY`) and through each of its
  other top-level fields (`conditions`, `data`, `networkData`); each such field is atomic here
  (the real server tracks `conditions` per condition type; no knd path depends on the finer
  grain).
* `apply(current, applied, manager, force)` is one apply by `manager`: the applied entries
  become its whole set; entries/fields it owned before and leaves out now lose its ownership
  and are removed when nobody owns them any more; setting a field to a value other than the
  current one while another manager owns it is an `ApplyConflictError` (409) unless `force`, which
  takes the field over. Applying the same value is shared ownership, not a conflict.
* `update(before, after, manager)` records a non-apply write (merge/JSON patch, PUT): the
  fields it changed or added belong to `manager` alone, what it removed is owned by nobody.

Pure data; the store holds the lock and commits a copy only when the write succeeds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
Key = tuple[str, str, str, str]

#: list-map keys of `status.devices` (ResourceClaim), in the order of `Key`.
DEVICE_STATUS_KEYS = ("driver", "pool", "device", "shareID")
#: pseudo-field: the entry itself (its key fields).
IDENTITY = "."


def device_key(entry: Mapping[str, Any]) -> Key:
    """The list-map key of one `status.devices` entry (missing fields are empty)."""
    driver, pool, device, share = (str(entry.get(k) or "") for k in DEVICE_STATUS_KEYS)
    return driver, pool, device, share


def key_path(key: Key) -> str:
    """The entry as kube-apiserver names it in conflict messages."""
    parts = [
        f'{name}="{value}"' for name, value in zip(DEVICE_STATUS_KEYS, key, strict=True) if value
    ]
    return ".status.devices[" + ",".join(parts) + "]"


@dataclass(frozen=True)
class Conflict:
    """Another manager owns `field` of the entry `key` and the apply sets another value."""

    key: Key
    field: str
    managers: tuple[str, ...]

    @property
    def path(self) -> str:
        return key_path(self.key) + ("" if self.field == IDENTITY else "." + self.field)


class ApplyConflictError(Exception):
    """An apply without force touched fields other managers own (a 409 Conflict)."""

    def __init__(self, conflicts: Iterable[Conflict]) -> None:
        self.conflicts = tuple(conflicts)
        n = len(self.conflicts)
        details = "; ".join(
            ", ".join(f'conflict with "{m}"' for m in c.managers) + f": {c.path}"
            for c in self.conflicts
        )
        super().__init__(f"Apply failed with {n} conflict{'s' if n != 1 else ''}: {details}")


class InvalidApplyError(Exception):
    """The applied configuration itself is malformed (a 422 Invalid)."""


def _fields(entry: Mapping[str, Any]) -> list[str]:
    return [f for f in entry if f not in DEVICE_STATUS_KEYS]


class DeviceStatusOwners:
    """Field managers of one claim's `status.devices` entries."""

    def __init__(self) -> None:
        self._owners: dict[Key, dict[str, set[str]]] = {}

    def copy(self) -> DeviceStatusOwners:
        other = DeviceStatusOwners()
        other._owners = {k: {f: set(m) for f, m in fs.items()} for k, fs in self._owners.items()}
        return other

    def managers(self, key: Key) -> set[str]:
        """Every manager owning something in the entry `key`."""
        return set().union(*self._owners.get(key, {}).values())

    def owners(self, key: Key, field: str = IDENTITY) -> set[str]:
        """The managers of one field of one entry."""
        return set(self._owners.get(key, {}).get(field, set()))

    def apply(
        self,
        current: Iterable[Mapping[str, Any]],
        applied: Iterable[Mapping[str, Any]],
        manager: str,
        force: bool,
    ) -> list[JSON]:
        """One apply by `manager`; returns the new `status.devices`. Mutates self."""
        wanted: dict[Key, Mapping[str, Any]] = {}
        for entry in applied:
            if not isinstance(entry, Mapping):
                raise InvalidApplyError("status.devices: entries must be objects")
            key = device_key(entry)
            if key in wanted:
                raise InvalidApplyError(
                    f"status.devices: duplicate entries for key {key_path(key)}"
                )
            wanted[key] = entry
        result: dict[Key, JSON] = {device_key(e): copy.deepcopy(dict(e)) for e in current}

        conflicts = []
        for key, entry in wanted.items():
            existing = result.get(key)
            if existing is None:
                continue
            for field in _fields(entry):
                others = self.owners(key, field) - {manager}
                if others and existing.get(field) != entry[field]:
                    conflicts.append(Conflict(key, field, tuple(sorted(others))))
        if conflicts and not force:
            raise ApplyConflictError(conflicts)
        for c in conflicts:  # forced: the applier takes these fields over
            self._owners[c.key][c.field] = {manager}

        # Release what this manager owned before and does not apply now.
        for key, fields in list(self._owners.items()):
            kept = wanted.get(key)
            for field, who in list(fields.items()):
                if manager not in who or (
                    kept is not None and (field == IDENTITY or field in kept)
                ):
                    continue
                who.discard(manager)
                if not who:
                    del fields[field]
                    if field != IDENTITY and key in result:
                        result[key].pop(field, None)
            if not fields:
                del self._owners[key]
                if kept is None:
                    result.pop(key, None)

        for key, entry in wanted.items():
            result[key] = {**result.get(key, {}), **copy.deepcopy(dict(entry))}
            fields = self._owners.setdefault(key, {})
            for field in (IDENTITY, *_fields(entry)):
                fields.setdefault(field, set()).add(manager)
        return list(result.values())

    def update(
        self,
        before: Iterable[Mapping[str, Any]],
        after: Iterable[Mapping[str, Any]],
        manager: str,
    ) -> None:
        """Record a non-apply write that turned `before` into `after`. Mutates self."""
        old = {device_key(e): e for e in before if isinstance(e, Mapping)}
        new = {device_key(e): e for e in after if isinstance(e, Mapping)}
        for key in [k for k in self._owners if k not in new]:
            del self._owners[key]
        for key, entry in new.items():
            previous = old.get(key)
            fields = self._owners.setdefault(key, {})
            if previous is None:
                fields.clear()
                fields[IDENTITY] = {manager}
            for field in set(_fields(entry)) | set(_fields(previous or {})):
                if field not in entry:
                    fields.pop(field, None)
                elif previous is None or previous.get(field) != entry[field]:
                    fields[field] = {manager}
            if not fields:
                del self._owners[key]
