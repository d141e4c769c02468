"""`knd lab up` refuses a state directory whose kubelet sockets could not be bound (a unix
socket path is at most 107 bytes), up front, instead of timing out 60 s later."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from knd.lab import lab as labmod

pytestmark = pytest.mark.unit


def test_too_deep_state_dir_is_refused_before_anything_starts(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / "lab"
    cfg = labmod.LabConfig(state_dir=deep)
    with pytest.raises(labmod.LabError, match=r"too deep.*107 bytes"):
        labmod.up(cfg, out=io.StringIO())
    assert not deep.exists()  # nothing was created


def test_a_short_state_dir_passes_the_check() -> None:
    labmod.check_state_dir(labmod.LabConfig(state_dir=Path("/tmp/kl")))
    limit_dir = "/" + "a" * (
        labmod.MAX_SOCKET_PATH - len("/kubelet/plugins_registry/dra.net-reg.sock") - 1
    )
    labmod.check_state_dir(labmod.LabConfig(state_dir=Path(limit_dir)))
    with pytest.raises(labmod.LabError):
        labmod.check_state_dir(labmod.LabConfig(state_dir=Path(limit_dir + "a")))
