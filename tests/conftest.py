"""Shared pytest configuration: markers by directory, root detection, and (in CI) no skips.

With `CI=true` or `KND_FORBID_SKIPS=1` in the environment (`.ci/run` sets it), a skipped netns
or e2e test fails the run: CI installs every optional component, so a skip there means a test
did not run that should have. The skipped tests and their reasons are listed at the end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

IS_ROOT = os.geteuid() == 0

_MARK_BY_DIR = {
    "unit": pytest.mark.unit,
    "netns": pytest.mark.netns,
    "e2e": pytest.mark.e2e,
    "vm": pytest.mark.vm,
}

# tests/vm runs only inside the VM that `bash scripts/vm test` boots (which sets KND_IN_VM=1);
# elsewhere it is not collected at all (CI runs it through scripts/vm, its own step).
collect_ignore = [] if os.environ.get("KND_IN_VM") == "1" else ["vm"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by its directory (tests/unit → unit, ...) so `-m` selection works."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for name, mark in _MARK_BY_DIR.items():
            if name in parts:
                item.add_marker(mark)


_FORBIDDEN_SKIP_MARKS = ("netns", "e2e")
_SKIPPED: list[str] = []


def _forbid_skips() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("KND_FORBID_SKIPS") == "1"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A strict xfail ran and showed its known, named failure: that is not a skip.
    if report.skipped and not hasattr(report, "wasxfail") and _forbid_skips():
        parts = Path(report.location[0]).parts
        if any(mark in parts for mark in _FORBIDDEN_SKIP_MARKS):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SKIPPED:
        terminalreporter.section("skipped netns/e2e tests (not allowed in CI)", red=True)
        for line in _SKIPPED:
            terminalreporter.write_line(line)
