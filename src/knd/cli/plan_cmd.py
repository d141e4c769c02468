"""`knd plan (FILE | -n NAMESPACE NAME)`: what attach would do on this node for a claim.

A node-side dry run (knd.driver.dry_run): the allocated claim comes from a file (JSON or YAML,
the first ResourceClaim in it) or from the API server by name (kubeconfig / in-cluster /
`--apiserver`, as `knd driver`). The real prepare path builds the plans; the steps attach would
run are printed per device. Nothing on the node changes. Exit status: 0 plans printed, 1 prepare
would fail (the message prepare would give, on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO, cast

from knd.api.claims import ResourceClaim
from knd.cli.config_cmd import UsageError, load_documents
from knd.driver.claim_api import KubeClaimApi
from knd.driver.dry_run import DevicePlan, PlanFailedError, plan_claim, plan_steps, report
from knd.driver.errors import ClaimNotFoundError, TransientError
from knd.kube.connection import CredentialsError, connect
from knd.netns import rdma

EXIT_OK, EXIT_FAILS, EXIT_USAGE = 0, 1, 2
DEFAULT_DRIVER = "dra.net"


def register(sub: Any) -> None:
    """Register `knd plan`."""
    p = sub.add_parser("plan", help="node-side dry run: what attach would do for a claim")
    p.add_argument("target", metavar="FILE|NAME", help="claim file, or claim name with -n")
    p.add_argument("-n", "--namespace", default=None, help="read claim NAME from the API server")
    p.add_argument("--driver-name", default=DEFAULT_DRIVER, help="driver name (default dra.net)")
    p.add_argument(
        "--node-name", default="", help="this node's pool (default: $NODE_NAME, else hostname)"
    )
    p.add_argument("--kubeconfig", default="", help="kubeconfig path; empty = in-cluster")
    p.add_argument("--apiserver", default="", help="API server URL without auth (lab use)")
    p.add_argument("--rdma-mode", choices=("shared", "exclusive"), default=None)
    p.add_argument("--sysfs-root", default="/sys", help=argparse.SUPPRESS)
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(handler=run_plan)


def _claim_from_file(path: Path) -> ResourceClaim:
    for doc in load_documents(path):
        if isinstance(doc, dict) and doc.get("kind") == "ResourceClaim":
            return cast(ResourceClaim, doc)  # the document itself, untouched
    raise UsageError(f"{path}: no ResourceClaim in the file")


def _claim_from_api(args: argparse.Namespace, namespace: str, name: str) -> ResourceClaim:
    try:
        conn = connect(apiserver=args.apiserver, kubeconfig=args.kubeconfig)
        return KubeClaimApi(conn, component="knd-plan").get(namespace, name)
    except (ClaimNotFoundError, TransientError, CredentialsError) as exc:
        raise UsageError(str(exc)) from exc


def _print_text(plans: list[DevicePlan], claim: ResourceClaim, out: TextIO) -> None:
    meta = claim.get("metadata") or {}
    print(
        f"claim {meta.get('namespace', '')}/{meta.get('name', '')}: {len(plans)} device(s)",
        file=out,
    )
    for p in plans:
        print(f"device {p.pool}/{p.device} (request {p.request}):", file=out)
        for i, (step, action) in enumerate(plan_steps(p.plan), 1):
            print(f"  {i:2d}. {step:<9} {action}", file=out)


def run_plan(args: argparse.Namespace) -> int:
    """Handler of `knd plan`."""
    try:
        if args.namespace is not None:
            claim = _claim_from_api(args, args.namespace, args.target)
        else:
            claim = _claim_from_file(Path(args.target))
    except UsageError as exc:
        print(f"knd plan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    node = args.node_name or os.environ.get("NODE_NAME") or os.uname().nodename
    mode = args.rdma_mode
    if mode is None:
        mode, _ = rdma.netns_mode_or_shared()
    try:
        plans = plan_claim(
            claim, driver=args.driver_name, pool=node, sysfs_root=args.sysfs_root, rdma_mode=mode
        )
    except PlanFailedError as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_FAILS
    if args.output == "json":
        json.dump(report(plans), sys.stdout, indent=2)
        print()
    else:
        _print_text(plans, claim, sys.stdout)
    return EXIT_OK
