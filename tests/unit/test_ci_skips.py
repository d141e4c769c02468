"""In CI (`KND_FORBID_SKIPS=1`, set by .ci/run; or `CI=true`) a skipped netns or e2e test fails
the pytest run with the skip reason listed; a skipped unit test, or any skip outside CI, does
not. Runs pytest in a subprocess on throwaway test files under the test's tmp dir, with the
project's own tests/conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPING = 'import pytest\n\ndef test_x():\n    pytest.skip("no widget on this host")\n'


XFAILING = (
    "import pytest\n\n@pytest.mark.xfail(strict=True, reason='known bug')\n"
    "def test_x():\n    assert False\n"
)


def run(
    tmp_path: Path, kind: str, forbid: dict[str, str], body: str = SKIPPING
) -> subprocess.CompletedProcess[str]:
    (tmp_path / kind).mkdir()
    (tmp_path / kind / "test_skipping.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KND_FORBID_SKIPS")}
    env.update(forbid)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / kind)],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("forbid", [{"KND_FORBID_SKIPS": "1"}, {"CI": "true"}])
@pytest.mark.parametrize("kind", ["netns", "e2e"])
def test_a_skipped_netns_or_e2e_test_fails_ci(
    tmp_path: Path, kind: str, forbid: dict[str, str]
) -> None:
    done = run(tmp_path, kind, forbid)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not allowed in CI" in done.stdout and "no widget on this host" in done.stdout


def test_skips_are_fine_outside_ci_and_for_unit_tests(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert run(tmp_path / "a", "netns", {}).returncode == 0
    (tmp_path / "b").mkdir()
    assert run(tmp_path / "b", "unit", {"KND_FORBID_SKIPS": "1"}).returncode == 0


def test_a_strict_xfail_is_not_a_skip_in_ci(tmp_path: Path) -> None:
    """It ran and failed as documented; once it passes, strict=True fails the run instead."""
    done = run(tmp_path, "e2e", {"KND_FORBID_SKIPS": "1"}, XFAILING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 xfailed" in done.stdout
    fixed = XFAILING.replace("assert False", "assert True")
    (tmp_path / "x").mkdir()
    done = run(tmp_path / "x", "e2e", {"KND_FORBID_SKIPS": "1"}, fixed)
    assert done.returncode == 1, done.stdout + done.stderr
