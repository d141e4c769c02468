"""The README's first command, `bash scripts/lab-demo`, run as written (root, the project-local
containerd): the lab comes up, the aligned GPU+NIC pod runs, the unsatisfiable claim is
explained, and everything is taken down. Its own lab directory and the default NIC names, so it
never meets the labs of tests/e2e/test_k8s_*.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import _skip_reason

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab_dir() -> Iterator[Path]:
    """A short directory: the kubelet's sockets live below it, and a unix socket path may not
    exceed 107 bytes (pytest's tmp_path is too deep)."""
    path = Path(tempfile.mkdtemp(prefix="kdemo-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_lab_demo_runs_as_written(lab_dir: Path) -> None:
    reason = _skip_reason()
    if reason:
        print(f"SKIP e2e: {reason}")
        pytest.skip(reason)
    env = {**os.environ, "KND_LAB_DIR": str(lab_dir / "lab")}
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
    if proc.returncode != 0:
        for log in ("driver", "gpu_driver"):
            path = lab_dir / "lab" / f"{log}.log"
            if path.exists():
                print(f"--- {log}.log (tail)\n" + "\n".join(path.read_text().splitlines()[-30:]))
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    for marker in (
        "== knd lab up",
        "== knd lab apply examples/lab/gpu-nic-aligned.yaml",
        "UNSATISFIABLE",
        "== knd lab status",
    ):
        assert marker in out, marker
    state = lab_dir / "lab" / "state.json"
    assert not state.exists(), "the demo takes the lab down again"
