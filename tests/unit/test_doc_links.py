"""Every `docs/<page>.md` named anywhere in the repository (code, docs, README, chart, examples)
exists: a renamed or missing page fails here, not in a reader's hands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
_PAGE = re.compile(r"docs/([A-Za-z0-9_-]+\.md)")
_SOURCES = ("src", "docs", "deploy", "examples", "scripts", "bench", "tests")
_SUFFIXES = (".py", ".md", ".yaml", ".txt", ".tpl", "")


def _files() -> list[Path]:
    files = [REPO / "README.md"]
    for top in _SOURCES:
        files += [
            p
            for p in sorted((REPO / top).rglob("*"))
            if p.is_file() and p.suffix in _SUFFIXES and "_proto" not in p.parts
        ]
    return files


def references() -> list[tuple[Path, str]]:
    return [
        (path, page)
        for path in _files()
        for page in sorted(set(_PAGE.findall(path.read_text(errors="replace"))))
    ]


def test_every_referenced_docs_page_exists() -> None:
    refs = references()
    assert len(refs) > 20  # the scan sees the repository's many references
    missing = [
        f"{path.relative_to(REPO)}: docs/{page}"
        for path, page in refs
        if not (REPO / "docs" / page).is_file()
    ]
    assert not missing, missing
