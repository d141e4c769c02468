"""Pending-restore records: one small file per prepared device, written before it can move.

Why files next to the SQLite store and not rows in it: they must survive the store being lost
(deleted, emptied, truncated to 0 bytes, corrupt). A record holds what is needed to bring the
device home and to rebuild the store's entry of its claim: the claim (UID, namespace, name,
the answer kubelet got), the pod UID, the pool/device/request, the AttachPlan (host state
captured at prepare) and its profile.

Lifetime: written by prepare before the plan is persisted (so before any NRI hook can move the
device); marked `released` when its claim is unprepared while the device is not home yet (so
a restart never puts that claim back into the store), and removed once the device is home
after the unprepare (knd.driver.restorer). A device whose record exists may be away from the host.

Layout: `<dir>/<sha256(pool/device)[:32]>.json`, 0600 in a 0700 directory; written to a
temporary file and renamed (atomic: a reader sees the old record or the new one).

Durability: not fsync'd, on purpose. What a record must survive is knd's death (a kill, a
crash, an OOM) and the loss of the store file; the page cache survives both, and the rename
makes each write atomic against a process crash. A power loss is different: it may drop or
tear (0 bytes) the records written in the last seconds. It needs no fsync either, because
(1) the NICs are not away any more: the kernel's netns are gone after the reboot and every
physical NIC is back in the host, where the reboot path captures its host state anew; and
(2) the store, which is fsync'd (it must be as durable as the kubelet's own checkpoint: see
knd.driver.store), still holds every prepared claim, and the reboot path writes each device's
record again from it (knd.driver.reconcile.recapture_after_reboot) before any attach can
move the device. The remaining window is a power loss and the loss of the store file
together. Skipping them keeps two fsyncs per device (the file, the directory) off each
prepare. Reads are bounded (`MAX_RECORD_BYTES` per file, `MAX_RECORDS`
files); a record that cannot be read or decoded is reported by `load()` (never raised), so
one bad file cannot hide the others. Budget: one write ≈ 0.1-0.5 ms, at prepare time only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

RECORD_VERSION: Final = 1
MAX_RECORD_BYTES: Final = 256 * 1024
MAX_RECORDS: Final = 4096
_FIELDS: Final = (
    "claim_uid",
    "namespace",
    "name",
    "pod_uid",
    "pool",
    "device",
    "request",
    "plan",
    "profile",
    "prepared_at",
    "result",
    "released",
)


class RecordError(ValueError):
    """A record file that cannot be used (its path and the reason in the message)."""


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    claim_uid: str
    namespace: str
    name: str
    pod_uid: str
    pool: str
    device: str
    request: str
    plan: Mapping[str, Any]
    profile: str | None = None
    prepared_at: float = 0.0
    result: Mapping[str, Any] = field(default_factory=dict)
    #: the claim was unprepared; the record stays only until the device is home
    released: bool = False

    def to_json(self) -> str:
        body: dict[str, Any] = {"version": RECORD_VERSION}
        body.update({name: getattr(self, name) for name in _FIELDS})
        body["plan"] = dict(self.plan)
        body["result"] = dict(self.result)
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "record") -> RestoreRecord:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"{where}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise RecordError(f"{where}: not a version {RECORD_VERSION} restore record")
        unknown = set(data) - {"version", *_FIELDS}
        if unknown:
            raise RecordError(f"{where}: unknown field(s) {sorted(unknown)}")
        for name in ("claim_uid", "namespace", "name", "pod_uid", "pool", "device", "request"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise RecordError(f"{where}: field {name} must be a non-empty string")
        if not isinstance(data.get("plan"), dict):
            raise RecordError(f"{where}: field plan must be an object")
        profile = data.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise RecordError(f"{where}: field profile must be a string")
        prepared_at = data.get("prepared_at", 0.0)
        if not isinstance(prepared_at, int | float) or isinstance(prepared_at, bool):
            raise RecordError(f"{where}: field prepared_at must be a number")
        result = data.get("result", {})
        if not isinstance(result, dict):
            raise RecordError(f"{where}: field result must be an object")
        released = data.get("released", False)
        if not isinstance(released, bool):
            raise RecordError(f"{where}: field released must be a boolean")
        return cls(
            claim_uid=data["claim_uid"],
            namespace=data["namespace"],
            name=data["name"],
            pod_uid=data["pod_uid"],
            pool=data["pool"],
            device=data["device"],
            request=data["request"],
            plan=data["plan"],
            profile=profile,
            prepared_at=float(prepared_at),
            result=result,
            released=released,
        )


def records_dir_for(state_path: Path | str) -> Path:
    """Where the records of the store at `state_path` live (`<state_path>.restore/`)."""
    return Path(f"{state_path}.restore")


class RestoreRecords:
    """The record directory (created 0700 on first write)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    def _path(self, pool: str, device: str) -> Path:
        digest = hashlib.sha256(f"{pool}/{device}".encode()).hexdigest()[:32]
        return self.dir / f"{digest}.json"

    def write(self, record: RestoreRecord) -> None:
        """Atomically (re)write the record of (pool, device). Raises OSError."""
        if not self.dir.exists():
            self.dir.mkdir(parents=True, mode=0o700)
        path = self._path(record.pool, record.device)
        tmp = path.with_suffix(".tmp")
        data = record.to_json().encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def remove(self, pool: str, device: str) -> None:
        """Drop the record of (pool, device) (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(pool, device).unlink()

    def get(self, pool: str, device: str) -> RestoreRecord | None:
        path = self._path(pool, device)
        try:
            return RestoreRecord.from_json(_read_bounded(path), str(path))
        except FileNotFoundError:
            return None

    def load(self) -> tuple[list[RestoreRecord], list[str]]:
        """Every readable record, and one problem line per file that is not."""
        records: list[RestoreRecord] = []
        problems: list[str] = []
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".json"))
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            return [], [f"{self.dir}: {exc}"]
        if len(names) > MAX_RECORDS:
            problems.append(f"{self.dir}: {len(names)} records, only {MAX_RECORDS} read")
            names = names[:MAX_RECORDS]
        for name in names:
            path = self.dir / name
            try:
                records.append(RestoreRecord.from_json(_read_bounded(path), str(path)))
            except (OSError, RecordError) as exc:
                problems.append(str(exc))
        return records, problems


def _read_bounded(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        data = os.read(fd, MAX_RECORD_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"{path}: larger than {MAX_RECORD_BYTES} bytes")
    return data
