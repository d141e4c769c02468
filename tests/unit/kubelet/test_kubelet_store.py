"""The SQLite state store: durability settings, permissions, migrations, reopen."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from knd.driver.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ClaimRecord,
    PlanRecord,
    PodRecord,
    StateStore,
    StoreError,
)

pytestmark = pytest.mark.unit


def _save(store: StateStore, claim_uid: str = "c1", device: str = "eth1") -> None:
    store.save_prepared(
        ClaimRecord(claim_uid, "ns", f"name-{claim_uid}", "p1", 1.0, {"devices": []}),
        PodRecord("p1", "ns", "pod"),
        [PlanRecord(claim_uid, "node", device, "nic", "p1", {"x": [1, 2]}, "gold")],
    )


def test_pragmas_mode_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "d" / "knd.db"
    s = StateStore(path)
    _save(s)
    s.set_netns("p1", "/var/run/netns/cni-1")
    s.touch_nri_activity("p1", 42.0)
    assert s.schema_version == SCHEMA_VERSION
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    s2 = StateStore(path)
    assert s2.plans_for_pod("p1") == [
        PlanRecord("c1", "node", "eth1", "nic", "p1", {"x": [1, 2]}, "gold")
    ]
    assert s2.pod("p1") == PodRecord("p1", "ns", "pod", "/var/run/netns/cni-1", 42.0)
    s2.close()


def test_hook_writes_skip_the_fsync_and_prepared_state_keeps_it(tmp_path: Path) -> None:
    """Boot-scoped hook writes commit with synchronous=NORMAL (still atomic, in the WAL), the
    prepared state with FULL; the connection is back to FULL after each hook write, also
    after one that failed. Watched through SQLite's trace of the statements it runs."""
    s = StateStore(tmp_path / "knd.db")
    seen: list[str] = []
    s._db.set_trace_callback(seen.append)
    _save(s)
    assert not any("synchronous" in q for q in seen)  # FULL, the connection's setting
    seen.clear()
    s.record_attach("p1", "/var/run/netns/cni-1", 5.0, "note")
    assert seen[0] == "PRAGMA synchronous=NORMAL" and seen[-1] == "PRAGMA synchronous=FULL"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(sqlite3.OperationalError), s._tx(durable=False) as db:
        db.execute("UPDATE no_such_table SET x = 1")
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    s.close()
    again = StateStore(tmp_path / "knd.db")  # what a restart after a kill finds
    pod = again.pod("p1")
    assert pod is not None and (pod.netns, pod.attach_note) == ("/var/run/netns/cni-1", "note")
    again.close()


def test_device_held_once_and_delete_is_idempotent(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "knd.db")
    _save(s, "c1", "eth1")
    with pytest.raises(StoreError, match="conflicting state"):
        _save(s, "c2", "eth1")
    assert s.claim("c2") is None  # the failed transaction left nothing behind
    owner = s.device_owner("node", "eth1")
    assert owner is not None and owner.uid == "c1"
    assert [p.device for p in s.delete_claim("c1")] == ["eth1"]
    assert s.delete_claim("c1") == []
    assert s.pod("p1") is None and s.device_owner("node", "eth1") is None
    s.close()


def test_migrates_from_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "PRAGMA user_version=1;")
    db.execute("INSERT INTO pods(uid, namespace, name) VALUES ('p', 'ns', 'n')")
    db.commit()
    db.close()
    s = StateStore(path)
    assert s.schema_version == SCHEMA_VERSION == 4
    assert s.pod("p") == PodRecord("p", "ns", "n")
    _save(s, "c9", "eth9")  # the v2 column `profile` exists now
    assert s.plans_for_claim("c9")[0].profile == "gold"
    s.close()


def test_refuses_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this knd"):
        StateStore(path)


def test_reboot_clears_runtime_state_keeps_plans(tmp_path: Path) -> None:
    path = tmp_path / "knd.db"
    s = StateStore(path, boot_id="boot-1")
    _save(s)
    s.set_netns("p1", "/var/run/netns/cni-1")
    s.touch_nri_activity("p1", 7.0)
    s.close()
    same = StateStore(path, boot_id="boot-1")  # a plain restart keeps everything
    assert not same.rebooted
    assert same.pod("p1") == PodRecord("p1", "ns", "pod", "/var/run/netns/cni-1", 7.0)
    same.close()
    after = StateStore(path, boot_id="boot-2")
    assert after.rebooted
    assert after.pod("p1") == PodRecord("p1", "ns", "pod", None, None)
    assert [p.device for p in after.plans_for_claim("c1")] == ["eth1"]
    after.close()


@pytest.mark.parametrize(
    "content", [b"this is not a database at all" * 200, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_a_corrupt_store_is_refused_with_recovery_instructions(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(content)
    with pytest.raises(StoreError) as err:
        StateStore(path, boot_id="b")
    message = str(err.value)
    assert "is corrupt" in message and f"mv {path} {path}.corrupt" in message
    assert f"{path}.restore/" in message
    assert err.value.__cause__ is None  # no raw sqlite3 traceback chained


def test_an_emptied_store_says_it_was_created(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path, boot_id="b").close()
    again = StateStore(path, boot_id="b")
    assert not again.created
    again.close()
    path.write_bytes(b"")  # truncated to 0 bytes
    emptied = StateStore(path, boot_id="b")
    assert emptied.created
    emptied.close()
