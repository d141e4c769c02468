"""`knd config ...` sub-commands (placeholder until validate lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Register `knd config` on the top-level sub-parser collection."""
    parser: argparse.ArgumentParser = sub.add_parser("config", help="claim configuration tools")
    parser.set_defaults(handler=lambda _args: 2)
