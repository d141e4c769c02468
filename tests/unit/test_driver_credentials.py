"""`knd driver` without usable API server credentials stops at once with a message that says
what is missing (before opening the state file or any socket)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _driver(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    state = tmp_path / "state.db"
    return subprocess.run(
        [sys.executable, "-m", "knd.cli.main", "driver", "--hostname-override", "n1",
         "--state-path", str(state), *flags],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_outside_a_pod_without_kubeconfig(tmp_path: Path) -> None:
    done = _driver(tmp_path)
    assert done.returncode == 1
    assert "no API server credentials" in done.stderr
    assert "KUBERNETES_SERVICE_HOST" in done.stderr and "--kubeconfig" in done.stderr
    assert not (tmp_path / "state.db").exists()


def test_unreadable_kubeconfig(tmp_path: Path) -> None:
    done = _driver(tmp_path, "--kubeconfig", str(tmp_path / "missing"))
    assert done.returncode == 1
    assert f"kubeconfig {tmp_path / 'missing'}" in done.stderr
