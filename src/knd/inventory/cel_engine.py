"""The CEL engine (the `cel` package's compiled Rust core), loaded without its command line.

Contract: `compile(expression)` returns a program with `.execute(activation)`, exactly the
`cel.compile` of the pinned `common-expression-language` package; errors are the engine's.

Why not `import cel`: the package's `__init__` imports its interactive CLI first (prompt_toolkit,
typer, rich), ~11 MB of resident memory a node daemon never uses (bench/daemon.py; the idle
budget is 80 MB). The compiled core is the `cel.cel` extension module inside the package; this
module loads that file directly and registers it as `cel.cel`, so a later plain `import cel`
(tests, the lab) reuses it instead of initialising the extension twice. If the file is not
where the pinned version keeps it, it falls back to `import cel`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_CORE = "cel.cel"
_lock = threading.Lock()


def _load_core() -> ModuleType:
    loaded = sys.modules.get(_CORE)
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("cel")
    locations = list(package.submodule_search_locations or []) if package else []
    for folder in locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder) / f"cel{suffix}"
            if not path.is_file():
                continue
            loader = importlib.machinery.ExtensionFileLoader(_CORE, str(path))
            spec = importlib.util.spec_from_file_location(_CORE, path, loader=loader)
            if spec is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[_CORE] = module
            try:
                loader.exec_module(module)
            except BaseException:
                del sys.modules[_CORE]
                raise
            return module
    return importlib.import_module("cel")  # unexpected layout: the documented import


def engine() -> ModuleType:
    """The module exposing `compile` (loaded once, thread-safe)."""
    with _lock:
        return _load_core()


def compile(expression: str) -> Any:
    """Compile a CEL expression (raises the engine's ValueError/RuntimeError on errors)."""
    return engine().compile(expression)
