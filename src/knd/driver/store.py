"""The node-local state store: SQLite at a configurable path, root-only, durable.

What survives a restart of knd: which claims are prepared for which pod, which device each
claim holds, the AttachPlan of every (claim, device), the pod's netns path and the last NRI
activity. Loaded (opened) before the kubelet plugin registers, so a prepare answered before a
crash is never forgotten (DraNet issue #89).

Durability: WAL journal; every multi-row change is one transaction, atomic against a crash or a
kill of knd at any point. Two classes of writes:
* the prepared state (claims, devices, plans, meta) commits with `synchronous=FULL` (the WAL is
  fsync'd before the commit returns), so it survives a power loss. It must: NodePrepare answers
  only after this commit, and the kubelet checkpoints the claim as prepared on persistent disk
  and never asks again after a reboot (its DRA manager skips prepared claims), so a prepare
  that a power loss undid here would leave the pod's NIC unattached for good;
* the boot-scoped facts of the NRI hooks (`record_attach`, `set_netns`, `touch_nri_activity`:
  the pod's netns, its last NRI activity, the attach note) commit with `synchronous=NORMAL`
  (no fsync on the hook's path). A crash or kill of knd keeps them (the commit is in the WAL
  in the page cache); a power loss may undo the last ones, which changes nothing: after a
  reboot every netns is gone and the boot-id check below clears these columns anyway.
Measured on this project's test disks, the fsync is ~0.5 ms of a prepare's commit. The file
(and its -wal/-shm siblings, which SQLite creates with the database's mode) is 0600; a
directory created for it is 0700.

Schema versions are `PRAGMA user_version`; `MIGRATIONS[i]` upgrades version i to i+1 inside
one transaction. A database newer than this code is refused (StoreError).

Node reboot: the store lives on persistent disk (default /var/lib/knd), because kubelet's own
DRA checkpoint survives a reboot too. On open, the kernel boot id is compared with the one
recorded; after a reboot every pod's netns path and NRI activity are cleared (those namespaces
are gone) while claims and plans stay, so a repeated prepare is still answered idempotently and
a later unprepare still finds the claim. `rebooted` tells the caller this happened; the daemon
then captures the host state of every plan again (knd.driver.reconcile).

Time budget: a prepare commit is one fsync'd transaction (~0.5-5 ms on SSD); a hook's write
is one transaction without fsync (~0.1 ms); reads hit memory pages. One connection guarded by
a lock; safe from any thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from knd.host.procfs import read_boot_id

DEFAULT_PATH: Final = Path("/var/lib/knd/state.db")


class StoreError(RuntimeError):
    """The state store cannot be opened or written (fatal at start-up; claim error in prepare)."""


_CORRUPT: Final = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CORRUPT_INDEX"})


def corrupt_message(path: Path, detail: str) -> str:
    """What a corrupt store means and how to recover (the StoreError's message)."""
    return (
        f"state store {path} is corrupt ({detail}). knd refuses to start rather than forget "
        f"which devices it moved. To recover: stop knd, move the file aside (mv {path} "
        f"{path}.corrupt, and its -wal/-shm files), then start knd: it rebuilds the prepared "
        f"claims from the pending-restore records in {path}.restore/ and the claims on the API "
        "server, and reports what it could not rebuild. Keep the .restore directory."
    )


MIGRATIONS: Final[tuple[str, ...]] = (
    # 0 -> 1: the initial schema.
    """
    CREATE TABLE pods (
        uid TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        netns TEXT,
        last_nri_activity REAL
    );
    CREATE TABLE claims (
        uid TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        pod_uid TEXT NOT NULL REFERENCES pods(uid),
        prepared_at REAL NOT NULL,
        result TEXT NOT NULL
    );
    CREATE TABLE devices (
        pool TEXT NOT NULL,
        device TEXT NOT NULL,
        claim_uid TEXT NOT NULL REFERENCES claims(uid) ON DELETE CASCADE,
        PRIMARY KEY (pool, device)
    );
    CREATE TABLE plans (
        claim_uid TEXT NOT NULL REFERENCES claims(uid) ON DELETE CASCADE,
        pool TEXT NOT NULL,
        device TEXT NOT NULL,
        request TEXT NOT NULL,
        pod_uid TEXT NOT NULL,
        plan TEXT NOT NULL,
        PRIMARY KEY (claim_uid, pool, device)
    );
    """,
    # 1 -> 2: NRI looks plans up by pod; remember the profile a plan allocated (release later).
    """
    CREATE INDEX plans_by_pod ON plans(pod_uid);
    CREATE INDEX claims_by_pod ON claims(pod_uid);
    ALTER TABLE plans ADD COLUMN profile TEXT;
    """,
    # 2 -> 3: store-wide facts (the kernel boot id, to recognise a node reboot).
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3 -> 4: the note of the pod's last attach (e.g. healed after a restart), re-reported.
    """
    ALTER TABLE pods ADD COLUMN attach_note TEXT;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_PLAN_COLUMNS = "SELECT claim_uid, pool, device, request, pod_uid, plan, profile FROM plans"
_PLANS_BY_CLAIM: Final = _PLAN_COLUMNS + " WHERE claim_uid = ? ORDER BY pool, device"
_PLANS_BY_POD: Final = _PLAN_COLUMNS + " WHERE pod_uid = ? ORDER BY claim_uid, pool, device"


@dataclass(frozen=True, slots=True)
class PodRecord:
    uid: str
    namespace: str
    name: str
    netns: str | None = None
    last_nri_activity: float | None = None
    attach_note: str | None = None


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """The AttachPlan of one device of one claim, as persisted (plan is JSON-shaped)."""

    claim_uid: str
    pool: str
    device: str
    request: str
    pod_uid: str
    plan: Mapping[str, Any]
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """A prepared claim and the answer kubelet got (`result`, JSON-shaped)."""

    uid: str
    namespace: str
    name: str
    pod_uid: str
    prepared_at: float
    result: Mapping[str, Any]


def _create_private(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class StateStore:
    """SQLite-backed store; `open()` applies pending migrations."""

    def __init__(self, path: Path | str, boot_id: str | None = None) -> None:
        self.path = Path(path)
        self.rebooted = False
        self._lock = threading.RLock()
        try:
            _create_private(self.path)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.created = self._is_empty()
            self._check_integrity()
            self._migrate()
            self._note_boot(read_boot_id() if boot_id is None else boot_id)
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") in _CORRUPT or "integrity" in str(exc):
                raise StoreError(corrupt_message(self.path, str(exc))) from None
            raise StoreError(f"cannot open state store {self.path}: {exc}") from exc
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state store {self.path}: {exc}") from exc

    # -- plumbing ----------------------------------------------------------------------------
    def _is_empty(self) -> bool:
        """No schema yet: a new file, or one emptied or truncated to 0 bytes."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0]) == 0

    def _check_integrity(self) -> None:
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            problems = "; ".join(str(r[0]) for r in rows[:5])
            raise sqlite3.DatabaseError(f"integrity check failed: {problems}")

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction. `durable=False` commits without the fsync (synchronous=NORMAL for
        this commit only): still atomic, and it survives a crash or kill of knd, but a power
        loss may undo it. Only for the boot-scoped facts (see the module docstring)."""
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state store {self.path} has schema version {version}, newer than this knd "
                f"({SCHEMA_VERSION}); refusing to downgrade"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={target}")

    def _note_boot(self, boot_id: str) -> None:
        if not boot_id:
            return
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchone()
            if row is not None and row[0] != boot_id:
                self.rebooted = True
                db.execute("UPDATE pods SET netns = NULL, last_nri_activity = NULL")
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('boot_id', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (boot_id,),
            )

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- claims and plans --------------------------------------------------------------------
    def save_prepared(
        self, claim: ClaimRecord, pod: PodRecord, plans: Sequence[PlanRecord]
    ) -> None:
        """Atomically record a prepared claim, its pod, its devices and their plans.

        Raises StoreError when a device is already held by another claim (the caller checks
        first; this is the race-proof backstop) or on any database error.
        """
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO pods(uid, namespace, name) VALUES (?, ?, ?) "
                    "ON CONFLICT(uid) DO NOTHING",
                    (pod.uid, pod.namespace, pod.name),
                )
                db.execute("DELETE FROM claims WHERE uid = ?", (claim.uid,))
                db.execute(
                    "INSERT INTO claims(uid, namespace, name, pod_uid, prepared_at, result) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        claim.uid,
                        claim.namespace,
                        claim.name,
                        claim.pod_uid,
                        claim.prepared_at,
                        json.dumps(claim.result, sort_keys=True),
                    ),
                )
                for p in plans:
                    if p.plan.get("sub") is None:  # sub-interface claims share the device
                        db.execute(
                            "INSERT INTO devices(pool, device, claim_uid) VALUES (?, ?, ?)",
                            (p.pool, p.device, p.claim_uid),
                        )
                    db.execute(
                        "INSERT INTO plans(claim_uid, pool, device, request, pod_uid, plan, "
                        "profile) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            p.claim_uid,
                            p.pool,
                            p.device,
                            p.request,
                            p.pod_uid,
                            json.dumps(p.plan, sort_keys=True),
                            p.profile,
                        ),
                    )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"conflicting state for claim {claim.uid}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"cannot persist claim {claim.uid}: {exc}") from exc

    def claim(self, uid: str) -> ClaimRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT uid, namespace, name, pod_uid, prepared_at, result FROM claims "
                "WHERE uid = ?",
                (uid,),
            ).fetchone()
        if row is None:
            return None
        return ClaimRecord(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))

    def claims(self) -> list[ClaimRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT uid, namespace, name, pod_uid, prepared_at, result FROM claims "
                "ORDER BY prepared_at"
            ).fetchall()
        return [ClaimRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def device_owner(self, pool: str, device: str) -> ClaimRecord | None:
        """The prepared claim holding (pool, device), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT claim_uid FROM devices WHERE pool = ? AND device = ?", (pool, device)
            ).fetchone()
        return None if row is None else self.claim(row[0])

    def device_sharers(self, pool: str, device: str) -> list[ClaimRecord]:
        """The prepared claims holding (pool, device) through a sub-interface plan."""
        with self._lock:
            rows = self._db.execute(
                "SELECT claim_uid, plan FROM plans WHERE pool = ? AND device = ?", (pool, device)
            ).fetchall()
        uids = [uid for uid, plan in rows if json.loads(plan).get("sub") is not None]
        return [c for c in (self.claim(uid) for uid in uids) if c is not None]

    def _plans(self, by_pod: bool, arg: str) -> list[PlanRecord]:
        query = _PLANS_BY_POD if by_pod else _PLANS_BY_CLAIM
        with self._lock:
            rows = self._db.execute(query, (arg,)).fetchall()
        return [PlanRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def plans_for_claim(self, claim_uid: str) -> list[PlanRecord]:
        return self._plans(False, claim_uid)

    def plans_for_pod(self, pod_uid: str) -> list[PlanRecord]:
        """What the NRI hooks execute for a pod sandbox."""
        return self._plans(True, pod_uid)

    def update_plan(self, claim_uid: str, pool: str, device: str, plan: Mapping[str, Any]) -> None:
        """Replace one stored plan (host state captured again after a reboot)."""
        try:
            with self._tx() as db:
                db.execute(
                    "UPDATE plans SET plan = ? WHERE claim_uid = ? AND pool = ? AND device = ?",
                    (json.dumps(plan, sort_keys=True), claim_uid, pool, device),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot update the plan of {pool}/{device}: {exc}") from exc

    def all_plans(self) -> list[PlanRecord]:
        """Every stored plan."""
        with self._lock:
            rows = self._db.execute(_PLAN_COLUMNS + " ORDER BY claim_uid, pool, device").fetchall()
        return [PlanRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def delete_claim(self, uid: str) -> list[PlanRecord]:
        """Forget a claim (idempotent); returns the plans it had. Drops the pod when unused."""
        plans = self.plans_for_claim(uid)
        try:
            with self._tx() as db:
                row = db.execute("SELECT pod_uid FROM claims WHERE uid = ?", (uid,)).fetchone()
                db.execute("DELETE FROM claims WHERE uid = ?", (uid,))
                if row is not None:
                    db.execute(
                        "DELETE FROM pods WHERE uid = ? AND NOT EXISTS "
                        "(SELECT 1 FROM claims WHERE pod_uid = ?)",
                        (row[0], row[0]),
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot delete claim {uid}: {exc}") from exc
        return plans

    # -- pods (NRI side) ---------------------------------------------------------------------
    def pod(self, uid: str) -> PodRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT uid, namespace, name, netns, last_nri_activity, attach_note FROM pods "
                "WHERE uid = ?",
                (uid,),
            ).fetchone()
        return None if row is None else PodRecord(*row)

    def attached_pods(self) -> list[str]:
        """UIDs of the pods with a recorded netns (their devices are in the pod)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT uid FROM pods WHERE netns IS NOT NULL ORDER BY uid"
            ).fetchall()
        return [r[0] for r in rows]

    def set_netns(self, pod_uid: str, netns: str | None) -> None:
        with self._tx(durable=False) as db:
            db.execute("UPDATE pods SET netns = ? WHERE uid = ?", (netns, pod_uid))

    def record_attach(
        self, pod_uid: str, netns: str, when: float | None = None, note: str | None = None
    ) -> None:
        """RunPodSandbox succeeded: the pod's netns, its NRI activity and the attach's note
        (kept for later status re-assertions), in one transaction, without fsync (boot-scoped:
        see the module docstring)."""
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE pods SET netns = ?, last_nri_activity = ?, attach_note = ? WHERE uid = ?",
                (netns, time.time() if when is None else when, note or None, pod_uid),
            )

    def touch_nri_activity(self, pod_uid: str, when: float | None = None) -> None:
        with self._tx(durable=False) as db:
            db.execute(
                "UPDATE pods SET last_nri_activity = ? WHERE uid = ?",
                (time.time() if when is None else when, pod_uid),
            )

    # -- meta: small key/value facts (boot id, device snapshots) ----------------------------
    def put_meta(self, key: str, value: str) -> None:
        """Set one meta key (insert or replace)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every meta key starting with `prefix` (compared as text, no pattern characters)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def delete_meta_prefix(self, prefix: str) -> int:
        """Delete every meta key starting with `prefix`; returns how many."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
            return int(cur.rowcount)
