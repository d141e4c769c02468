"""The `knd` command: entry point and sub-command dispatch."""

from __future__ import annotations

import argparse
import logging
import os
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
from knd.driver.options import go_style


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


#: DraNet's image runs `/dranet FLAGS...` (its DaemonSet's `args`, or `command`).
DRANET_ENTRYPOINT = "dranet"


def dranet_compat(argv: Sequence[str], prog: str) -> list[str]:
    """DraNet's entrypoint means `knd driver`: invoked as `dranet` (the image's `/dranet`
    symlink), or with `/dranet` as the first argument (a DraNet DaemonSet's `args` under knd's
    `knd` entrypoint). `knd driver` also takes Go's single-dash long flags (`-v=4` style:
    `-kubeconfig=x` is `--kubeconfig=x`). Anything else is returned unchanged."""
    args = list(argv)
    if os.path.basename(prog) == DRANET_ENTRYPOINT:
        args = ["driver", *args]
    elif args and args[0] in ("/dranet", DRANET_ENTRYPOINT):
        args = ["driver", *args[1:]]
    if args and args[0] == "driver":
        return ["driver", *go_style(args[1:])]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `knd` command; returns the process exit code (0 ok, 1 failure, 2 usage).

    No input ends in a traceback: an exception a command did not turn into a message is printed
    as one line (`knd COMMAND: error: ...`, the traceback only at debug level) with status 1.
    """
    parser = build_parser()
    prog = sys.argv[0] if argv is None else "knd"
    args = parser.parse_args(dranet_compat(sys.argv[1:] if argv is None else argv, prog))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a message, never a traceback
        logging.getLogger("knd.cli").debug("unhandled error", exc_info=True)
        print(f"knd {args.command}: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
