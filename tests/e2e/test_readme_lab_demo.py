"""The README's first command, `bash scripts/lab-demo`, run as written (root, the project-local
containerd): the lab comes up, the aligned GPU+NIC pod runs, the unsatisfiable claim is
explained, and everything is taken down. Its own lab directory and NIC names, so it never meets
the lab of tests/e2e/test_lab.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import _skip_reason

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_lab_demo_runs_as_written(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        print(f"SKIP e2e: {reason}")
        pytest.skip(reason)
    env = {**os.environ, "KND_LAB_DIR": str(tmp_path / "lab")}
    proc = subprocess.run(
        ["bash", "scripts/lab-demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    for marker in (
        "== knd lab up",
        "== knd lab apply examples/lab/gpu-nic-aligned.yaml",
        "UNSATISFIABLE",
        "== knd lab status",
    ):
        assert marker in out, marker
    state = tmp_path / "lab" / "state.json"
    assert not state.exists(), "the demo takes the lab down again"
