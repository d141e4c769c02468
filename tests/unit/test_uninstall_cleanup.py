"""knd.driver.uninstall: only a DaemonSet the API server says is gone counts as an uninstall,
and the state goes only when no pod still needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from knd.driver import uninstall
from knd.kube.errors import for_status


class FakeApi:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, float | None]] = []

    def request(self, method: str, path: str, *, timeout_s: float | None = None) -> Any:
        self.calls.append((method, path, timeout_s))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


REF = ("kube-system", "knd")


@pytest.mark.parametrize(
    ("answer", "deleted"),
    [
        (for_status(404, 'daemonsets.apps "knd" not found'), True),
        ({"metadata": {"name": "knd", "deletionTimestamp": "2026-11-30T20:00:00Z"}}, True),
        ({"metadata": {"name": "knd"}}, False),  # an upgrade or a restart: keep everything
        (for_status(401, "Unauthorized"), True),  # the release's ServiceAccount was deleted
        (for_status(403, "forbidden"), True),  # ... or its Role
        (for_status(429, "too many requests"), False),
        (for_status(500, "etcd down"), False),
        (TimeoutError("timed out"), False),
        (ConnectionRefusedError(111, "refused"), False),
    ],
)
def test_only_a_daemonset_that_is_gone_or_going_is_an_uninstall(answer: Any, deleted: bool) -> None:
    api = FakeApi(answer)
    assert uninstall.daemonset_deleted(api, REF) is deleted
    assert api.calls == [
        ("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/knd", uninstall.CHECK_TIMEOUT_S)
    ]


def test_no_or_bad_reference_asks_nothing_and_keeps_everything() -> None:
    api = FakeApi(for_status(404, "gone"))
    assert uninstall.daemonset_deleted(api, None) is False
    assert api.calls == []
    assert uninstall.daemonset_ref({}) is None
    assert uninstall.daemonset_ref({"KND_DAEMONSET": "kube-system/knd"}) == REF
    for bad in ("knd", "kube-system/", "/knd", "a/b/c", "Kube/knd", "ns/../x", "ns/" + "a" * 64):
        assert uninstall.daemonset_ref({"KND_DAEMONSET": bad}) is None, bad


def _state(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "knd" / "state.db"
    state.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").write_bytes(b"x")
    records = Path(f"{state}.restore")
    records.mkdir()
    return state, records


def test_state_removed_when_nothing_needs_it(tmp_path: Path) -> None:
    state, records = _state(tmp_path)
    other = state.parent / "not-ours.txt"
    other.write_text("kept")
    ipam = state.parent / "ipam.db"
    ipam.write_bytes(b"x")
    Path(f"{ipam}-wal").write_bytes(b"x")
    out = uninstall.remove_state(state, records, prepared_claims=0, companions=[ipam])
    assert out.kept == ""
    assert sorted(p.name for p in state.parent.iterdir()) == ["not-ours.txt"]
    assert str(state) in out.removed and str(records) in out.removed


def test_state_kept_while_a_pod_holds_a_nic_or_a_restore_is_pending(tmp_path: Path) -> None:
    state, records = _state(tmp_path)
    out = uninstall.remove_state(state, records, prepared_claims=1)
    assert out.kept.startswith("1 prepared claim") and out.removed == []
    assert state.exists() and records.exists()
    (records / "eth1.json").write_text("{}")
    out = uninstall.remove_state(state, records, prepared_claims=0)
    assert "1 restore record" in out.kept and state.exists()
