"""`knd lab up|down|status|apply|delete`: a whole DRA node on this machine (docs/lab.md): real
Kubernetes (scripts/kubernetes) and the project-local containerd around knd.

Exit status: 0 success, 1 a lab operation failed (or pods did not all run), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from knd.lab.lab import LabConfig


def _lab() -> ModuleType:
    """knd.lab.lab, imported on use: every `knd` command (the node daemon included) imports
    this module to register its parser."""
    from knd.lab import lab  # noqa: PLC0415

    return lab


def _rest_error() -> type[Exception]:
    from knd.lab.restapi import RestError  # noqa: PLC0415

    return RestError


def register(sub: Any) -> None:
    """Register `knd lab`."""
    p = sub.add_parser("lab", help="run a DRA node (real Kubernetes + containerd) around knd")
    p.add_argument(
        "--state-dir", type=Path, default=None, help="default: .local/lab of the checkout"
    )
    lsub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    u = lsub.add_parser("up", help="start the lab (idempotent)")
    u.add_argument(
        "--containerd",
        choices=["2", "1.7"],
        default="2",
        help="the project-local containerd the kubelet runs on (scripts/runtime; default 2)",
    )
    u.add_argument(
        "--knd-as",
        choices=["process", "pod"],
        default="process",
        help="pod: import .local/image/knd-oci.tar and `helm install` the chart (DaemonSet)",
    )
    u.set_defaults(handler=_up)
    lsub.add_parser("down", help="stop the lab and clean up (idempotent)").set_defaults(
        handler=_down
    )
    st = lsub.add_parser("status", help="processes, devices, pods, claims")
    st.add_argument("-o", "--output", choices=["text", "json"], default="text")
    st.set_defaults(handler=_status)
    a = lsub.add_parser("apply", help="create DeviceClasses, claims, templates, pods; wait; show")
    a.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    a.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the pods")
    a.set_defaults(handler=_apply)
    d = lsub.add_parser("delete", help="delete the objects of the files (pods first)")
    d.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    d.set_defaults(handler=_delete)


def _cfg(args: argparse.Namespace) -> LabConfig:
    lab = _lab()
    kw: dict[str, Any] = {}
    if getattr(args, "containerd", None):
        kw["containerd"] = args.containerd
    if getattr(args, "knd_as", "process") == "pod":
        kw["knd_as"] = "pod"
    if args.state_dir:
        kw["state_dir"] = args.state_dir
    cfg: LabConfig = lab.LabConfig(**kw)
    return cfg


def _up(args: argparse.Namespace) -> int:
    lab = _lab()
    try:
        lab.up(_cfg(args), out=sys.stdout)
    except lab.LabError as exc:
        print(f"knd lab up: {exc}", file=sys.stderr)
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    lab = _lab()
    try:
        lab.down(_cfg(args), out=sys.stdout)
    except lab.LabError as exc:
        print(f"knd lab down: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    lab = _lab()
    if args.output == "json":
        info = lab.status_json(_cfg(args))
        print(json.dumps(info, indent=1))
        return 0 if info.get("up") else 1
    return 0 if lab.status(_cfg(args), out=sys.stdout) else 1


def _apply(args: argparse.Namespace) -> int:
    lab = _lab()
    cfg = _cfg(args)
    try:
        docs = lab.load_manifests(args.paths)
    except (OSError, ValueError, lab.LabError) as exc:
        print(f"knd lab apply: {exc}", file=sys.stderr)
        return 2
    try:
        api = lab.client(cfg)
        pods = lab.apply(api, docs, out=sys.stdout, cfg=cfg)
        if not pods:
            return 0
        print("waiting for pods:")
        current = lab.wait_pods(api, pods, args.timeout, out=sys.stdout)
        lab.show(cfg, api, current, out=sys.stdout)
    except (lab.LabError, _rest_error()) as exc:
        print(f"knd lab apply: {exc}", file=sys.stderr)
        return 1
    running = all((p.get("status") or {}).get("phase") == "Running" for p in current.values())
    return 0 if running and len(current) == len(pods) else 1


def _delete(args: argparse.Namespace) -> int:
    lab = _lab()
    cfg = _cfg(args)
    try:
        docs = list(reversed(lab.load_manifests(args.paths)))
        api = lab.client(cfg)
        for doc in docs:
            meta = doc.get("metadata") or {}
            gone = api.delete(doc["kind"], meta["name"], meta.get("namespace", "default"))
            print(f"  {'deleted' if gone else 'absent '} {doc['kind']} {meta['name']}")
    except (OSError, ValueError, lab.LabError, _rest_error()) as exc:
        print(f"knd lab delete: {exc}", file=sys.stderr)
        return 1
    return 0
