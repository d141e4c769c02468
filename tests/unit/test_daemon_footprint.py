"""The daemon's import footprint: what keeps idle RSS within its 80 MB budget (bench/daemon.py
measures the memory; these tests pin the causes so a stray import cannot undo them).

Each check runs in a fresh interpreter (this test process has imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_PROBE = """
import json, sys
import knd.cli.main, knd.driver.daemon
from knd.inventory.filter import DEFAULT_FILTER, AdminFilter
from knd.kube.connection import connect_url
AdminFilter(DEFAULT_FILTER)          # the default filter compiles through the CEL core
connect_url("http://127.0.0.1:1")    # the lab/daemon connection
heavy = ("kubernetes", "prompt_toolkit", "typer", "jsonschema", "kubernetes_validate", "cel.cli",
         "yaml")
loaded = [m for m in heavy if m in sys.modules]
loaded += [m for m in sys.modules if m.startswith("knd.lab")]  # the CLI loads the lab on use
print(json.dumps(sorted(loaded)))
"""


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_the_daemon_imports_neither_the_kubernetes_package_nor_cels_cli_nor_the_lab() -> None:
    assert json.loads(_run(_PROBE)) == []


def test_cel_core_matches_the_package_and_is_initialised_once() -> None:
    code = """
from knd.inventory import cel_engine
first = cel_engine.compile('device.attributes["dra.net"].type != "veth"')
act = {"device": {"attributes": {"dra.net": {"type": "veth"}}}}
import cel                      # the package's own import must reuse the loaded core
second = cel.compile('device.attributes["dra.net"].type != "veth"')
print(first.execute(act), second.execute(act), cel.compile is cel_engine.engine().compile)
"""
    assert _run(code) == "False False True"


def test_cel_errors_are_the_engines() -> None:
    from knd.inventory import cel_engine

    with pytest.raises(Exception, match=r"(?i)pars|syntax|unexpected"):
        cel_engine.compile("device.attributes[")
