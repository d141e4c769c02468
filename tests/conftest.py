"""Shared pytest configuration: markers by directory, root detection."""

from __future__ import annotations

import os
from pathlib import Path

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
