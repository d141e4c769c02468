"""`knd driver`: run the node daemon (flags: docs/deploy.md and `knd driver --help`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from knd.driver.daemon import Daemon
from knd.driver.logs import setup_logging
from knd.driver.options import OptionsError, add_arguments, resolve
from knd.host.sysfs import sysfs_tree_problem
from knd.inventory.filter import AdminFilter, FilterError
from knd.kube.connection import CredentialsError, connect
from knd.netns.steps import StepObserver

log = logging.getLogger("knd.driver")


def register(sub: Any) -> None:
    """Register `knd driver`."""
    p = sub.add_parser("driver", help="run the node daemon (DRA kubelet plugin + NRI plugin)")
    add_arguments(p)
    p.add_argument(
        "--apiserver",
        default="",
        help="API server URL without auth (lab use; default: kubeconfig/in-cluster)",
    )
    p.add_argument("--sysfs-root", default="/sys", help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, step_observer: StepObserver | None = None) -> int:
    """Handler of `knd driver`: exit 0 after a clean shutdown, 2 on a bad flag (an admin filter
    that does not compile or type-check included), 1 on any other fatal start-up error.

    `step_observer` (knd.netns.steps) is for a test's own entry point only (kill point (b) of
    tests/e2e/test_restart_faults.py); `knd driver` never passes one."""
    try:
        opts = resolve(args)
        AdminFilter(opts.filter, opts.driver_name)  # checked before anything starts
    except OptionsError as exc:
        print(f"knd driver: {exc}", file=sys.stderr)
        return 2
    except FilterError as exc:
        print(f"knd driver: --filter: {exc}", file=sys.stderr)
        return 2
    problem = sysfs_tree_problem(Path(args.sysfs_root))
    if problem is not None:
        print(f"knd driver: --sysfs-root {problem}", file=sys.stderr)
        return 2
    setup_logging(opts.log_format, opts.verbosity)
    log.info("knd driver starting: %s", opts)
    try:
        api = connect(apiserver=args.apiserver, kubeconfig=opts.kubeconfig)
        daemon = Daemon(opts, api, args.sysfs_root, step_observer=step_observer)
        daemon.run()
    except FilterError as exc:
        log.error("invalid --filter: %s", exc)
        return 1
    except CredentialsError as exc:
        log.error("no API server credentials: %s", exc)
        return 1
    except Exception:
        log.exception("fatal error")
        return 1
    log.info("knd driver stopped")
    return 0
