"""`knd kubelet-plugin`: run the kubelet side alone (store, prepare engine, DRA plugin, health).

Not wired into knd.cli.main yet (the integrator owns main.py): add
`from knd.cli import kubelet_plugin_cmd` and `kubelet_plugin_cmd.register(sub)`.
"""

from __future__ import annotations

import argparse
from typing import Any

from knd.driver import kubelet_main


def register(sub: Any) -> None:
    """Register `knd kubelet-plugin` on the top-level sub-parser collection."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "kubelet-plugin", help="serve the DRA kubelet plugin (registration, prepare, health)"
    )
    kubelet_main.add_arguments(parser)
    parser.set_defaults(handler=kubelet_main.run)
