"""The `knd` command: entry point and sub-command dispatch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from knd import __version__
from knd.cli import (
    config_cmd,
    driver_cmd,
    explain_cmd,
    inventory_cmd,
    kubelet_plugin_cmd,
    lab_cmd,
    plan_cmd,
    top_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each sub-command module registers itself here."""
    parser = argparse.ArgumentParser(prog="knd", description="knd: Kubernetes Network Driver")
    parser.add_argument("--version", action="version", version=f"knd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_cmd.register(sub)
    explain_cmd.register(sub)
    inventory_cmd.register(sub)
    driver_cmd.register(sub)
    kubelet_plugin_cmd.register(sub)
    lab_cmd.register(sub)
    plan_cmd.register(sub)
    top_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `knd` command; returns the process exit code (0 ok, 1 failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
