"""`knd driver`: run the node daemon (flags: docs/deploy.md and `knd driver --help`)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from knd.driver.daemon import Daemon
from knd.driver.logs import setup_logging
from knd.driver.options import OptionsError, add_arguments, resolve
from knd.inventory.filter import FilterError

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


def api_client(kubeconfig: str, apiserver: str) -> Any:
    """A Kubernetes ApiClient: explicit URL (lab), kubeconfig file, or in-cluster config."""
    from kubernetes import client, config  # noqa: PLC0415 - heavy; only for the daemon

    if apiserver:
        return client.ApiClient(client.Configuration(host=apiserver))
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def run(args: argparse.Namespace) -> int:
    """Handler of `knd driver`: exit 0 after a clean shutdown, 1 on a fatal start-up error."""
    try:
        opts = resolve(args)
    except OptionsError as exc:
        print(f"knd driver: {exc}", file=sys.stderr)
        return 2
    setup_logging(opts.log_format, opts.verbosity)
    log.info("knd driver starting: %s", opts)
    try:
        daemon = Daemon(opts, api_client(opts.kubeconfig, args.apiserver), args.sysfs_root)
        daemon.run()
    except FilterError as exc:
        log.error("invalid --filter: %s", exc)
        return 1
    except Exception:
        log.exception("fatal error")
        return 1
    log.info("knd driver stopped")
    return 0
