"""E2E fixtures: the project-local containerd (scripts/runtime) and a knd NRI plugin on it.

Skips (with the reason printed) only when not root or when `scripts/runtime install` has not
been run. Each containerd version is started once per module and stopped (by PID) afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "scripts" / "runtime"
STAMP = ROOT / ".local" / "runtime" / "installed.json"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "e2e needs root (containerd, netns)"
    if not STAMP.exists():
        return "container runtime not installed: run `scripts/runtime install`"
    return None


def runtime_cmd(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(RUNTIME), *args], check=True, capture_output=True, text=True
    )
    return out.stdout


@pytest.fixture(scope="module", params=["2", "1.7"], ids=["containerd2", "containerd1.7"])
def runtime(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    reason = _skip_reason()
    if reason:
        print(f"SKIP e2e: {reason}")
        pytest.skip(reason)
    version = request.param
    runtime_cmd("stop", "--version", version)  # leftovers of an aborted run
    info: dict[str, Any] = json.loads(runtime_cmd("start", "--version", version).splitlines()[-1])
    try:
        yield info
    finally:
        runtime_cmd("stop", "--version", version)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules on the default real lab run one after another (k8s_support.RUNNING keeps
    that lab up across them): they move up to where the first of them is, in their own order;
    every other test keeps its place."""
    from tests.e2e.k8s_support import uses_default_lab

    shared = [i for i in items if uses_default_lab(getattr(i, "module", None))]
    if not shared:
        return
    first = items.index(shared[0])
    rest = [i for i in items if not uses_default_lab(getattr(i, "module", None))]
    items[:] = rest[:first] + shared + rest[first:]


@pytest.fixture(scope="module", autouse=True)
def _one_lab_at_a_time(request: pytest.FixtureRequest) -> None:
    """A module that does not use the default lab finds no real lab up (it may start its own,
    or the project-local containerd the lab runs on)."""
    from tests.e2e.k8s_support import RUNNING, uses_default_lab

    if not uses_default_lab(request.module):
        RUNNING.down()


@pytest.fixture(scope="session", autouse=True)
def _no_lab_left() -> Iterator[None]:
    yield
    from tests.e2e.k8s_support import RUNNING

    RUNNING.down()
