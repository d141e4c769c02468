"""`knd explain FILE... [--slices FILE...|--lab] [--node NAME]`: why a claim would (not) allocate.

A dry run of the scheduler emulator (knd.lab.allocator) over ResourceSlices and DeviceClasses
read from files, or (`--lab`) from the running lab's API server, where devices already allocated
to other claims count as taken and the node defaults to the lab node. For every ResourceClaim /
ResourceClaimTemplate found it prints, per request, which devices each selector kept or dropped
and why, then the allocation or the constraint that blocks it. Exit status: 0 every claim
allocatable, 1 any claim unsatisfiable, 2 usage error.

Inputs: YAML or JSON files, `-` for standard input, or pipes; each holds objects, multi-document
YAML or `kind: List` (what `kubectl get resourceslices,deviceclasses -o yaml` and
`knd inventory --slices` print). `-o json|yaml` prints one `kind: List` of the claims, each with
`status.allocation` when allocatable and the annotation `explain.knd.dev/result` (`allocatable`
or why not).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from knd.api.manifests import object_name
from knd.cli import output
from knd.cli.config_cmd import UsageError, expand_paths, load_documents

if TYPE_CHECKING:
    from knd.lab.allocator import Allocator
    from knd.lab.capacity import Consumed

# The knd.lab modules are imported by the functions that use them: every `knd` command,
# the node daemon included, imports this module to register its parser.

EXIT_OK, EXIT_UNSATISFIABLE, EXIT_USAGE = 0, 1, 2
#: Set on each claim of the `-o json|yaml` output: "allocatable" or the reason it is not.
RESULT_ANNOTATION = "explain.knd.dev/result"


def register(sub: Any) -> None:
    """Register `knd explain`."""
    p = sub.add_parser("explain", help="allocation dry run: why is my claim (not) allocatable")
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    p.add_argument(
        "--slices",
        nargs="*",
        type=Path,
        default=[],
        metavar="FILE",
        help="files with ResourceSlices and DeviceClasses",
    )
    p.add_argument(
        "--lab",
        action="store_true",
        help="read slices, classes and allocated claims from the running `knd lab`",
    )
    p.add_argument("--lab-state-dir", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--node", default=None, help="only slices of this node (default: any)")
    p.add_argument("-v", "--verbose", action="store_true", help="list every dropped device")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    p.set_defaults(handler=run_explain)


def _flatten(docs: list[object]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items") or []
            out.extend(i for i in (items if isinstance(items, list) else []) if isinstance(i, dict))
        elif isinstance(doc, dict):
            out.append(doc)
    for doc in out:
        _check_shape(doc)
    return out


def _check_shape(doc: dict[str, Any]) -> None:
    """Objects must be shaped like Kubernetes objects before the allocator walks them."""
    kind = doc.get("kind")
    for key in ("metadata", "spec"):
        if not isinstance(doc.get(key, {}), dict):
            raise UsageError(f"{kind or 'object'}: {key} must be a mapping")
    devices = (doc.get("spec") or {}).get("devices")
    if devices is not None and not isinstance(devices, dict | list):
        raise UsageError(f"{kind or 'object'}: spec.devices must be a mapping or a list")


def _claim_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("kind") == "ResourceClaimTemplate":
        spec: dict[str, Any] = (doc.get("spec") or {}).get("spec") or {}
        return spec
    spec = doc.get("spec") or {}
    return spec


def explain_claim(
    allocator: Allocator,
    doc: dict[str, Any],
    verbose: bool,
    out: TextIO,
    in_use: frozenset[tuple[str, str, str]] = frozenset(),
    consumed: Consumed | None = None,
) -> bool:
    """Print the explanation of one claim; True when it is allocatable. `in_use` and
    `consumed`: what other claims hold (devices, and capacity of shareable ones)."""
    from knd.lab.allocator import AllocationError, Explanation  # noqa: PLC0415
    from knd.lab.celenv import SelectorError  # noqa: PLC0415

    print(f"== {object_name(doc)}", file=out)
    try:
        allocation, exp = allocator.allocate(_claim_spec(doc), in_use, consumed)
    except AllocationError as exc:
        exp = exc.args[1] if len(exc.args) > 1 else Explanation(blocker=str(exc))
        allocation = None
    except SelectorError as exc:
        print(f"  selector error: {exc}", file=out)
        return False
    for req in exp.requests:
        kept = req.candidates
        need = "all" if req.mode == "All" else str(req.count)
        print(
            f"  request {req.name} (class {req.device_class}, {req.mode} {need}): "
            f"{len(kept)} of {len(req.verdicts)} devices kept",
            file=out,
        )
        for v in req.verdicts:
            if v.kept:
                print(f"    kept     {v.device.driver}/{v.device.name}", file=out)
            elif verbose:
                print(f"    dropped  {v.device.driver}/{v.device.name}: {v.reason}", file=out)
        dropped = [v for v in req.verdicts if not v.kept]
        if dropped and not verbose:
            reasons: dict[str, int] = {}
            for v in dropped:
                reasons[v.reason] = reasons.get(v.reason, 0) + 1
            for reason, n in sorted(reasons.items(), key=lambda x: -x[1]):
                print(f"    dropped  {n} device(s): {reason}", file=out)
    if allocation is None:
        print(f"  UNSATISFIABLE: {exp.blocker}", file=out)
        return False
    for request, device in exp.allocated:
        root = device.attribute("resource.kubernetes.io/pcieRoot")
        extra = f" (pcieRoot {root})" if root is not None else ""
        print(
            f"  allocated {request} -> {device.driver}/{device.pool}/{device.name}{extra}", file=out
        )
    return True


def run_explain(args: argparse.Namespace) -> int:
    """Handler of `knd explain`."""
    from knd.lab.allocator import AllocationError, Allocator  # noqa: PLC0415
    from knd.lab.capacity import consumed_by  # noqa: PLC0415
    from knd.lab.celenv import SelectorError  # noqa: PLC0415
    from knd.lab.lab import LabError  # noqa: PLC0415
    from knd.lab.restapi import RestError  # noqa: PLC0415

    try:
        docs = _flatten(
            [d for p in expand_paths([*args.paths, *args.slices]) for d in load_documents(p)]
        )
    except UsageError as exc:
        print(f"knd explain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    in_use: frozenset[tuple[str, str, str]] = frozenset()
    consumed: Consumed = {}
    node = args.node
    if args.lab:
        try:
            lab_docs, held, lab_node = _from_lab(args.lab_state_dir, docs)
            in_use = frozenset((str(r["driver"]), str(r["pool"]), str(r["device"])) for r in held)
            consumed = consumed_by(held)
        except (LabError, RestError) as exc:
            print(f"knd explain: --lab: {exc}", file=sys.stderr)
            return EXIT_USAGE
        docs = lab_docs + docs
        node = node or lab_node
    slices = [d for d in docs if d.get("kind") == "ResourceSlice"]
    classes = {
        str((d.get("metadata") or {}).get("name")): d
        for d in docs
        if d.get("kind") == "DeviceClass"
    }
    claims = [d for d in docs if d.get("kind") in ("ResourceClaim", "ResourceClaimTemplate")]
    if not claims:
        print(
            "knd explain: no ResourceClaim or ResourceClaimTemplate in the input", file=sys.stderr
        )
        return EXIT_USAGE
    allocator = Allocator(slices, classes, node)
    if args.output in ("json", "yaml"):
        items, ok = [], True
        for doc in claims:
            item = copy.deepcopy(doc)
            annotations = item.setdefault("metadata", {}).setdefault("annotations", {})
            try:
                allocation, _ = allocator.allocate(_claim_spec(doc), in_use, consumed)
                item["status"] = {"allocation": allocation}
                annotations[RESULT_ANNOTATION] = "allocatable"
            except (AllocationError, SelectorError) as exc:
                item.pop("status", None)
                annotations[RESULT_ANNOTATION] = str(exc.args[0])
                ok = False
            items.append(item)
        sys.stdout.write(output.dumps(output.as_list(items), args.output))
        return EXIT_OK if ok else EXIT_UNSATISFIABLE
    results = [
        explain_claim(allocator, doc, args.verbose, sys.stdout, in_use, consumed) for doc in claims
    ]
    return EXIT_OK if all(results) else EXIT_UNSATISFIABLE


def _from_lab(
    state_dir: Path | None, docs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Slices and DeviceClasses of the running lab, the allocation results its other claims
    hold, and the lab node. Claims named in `docs` do not count as holding their own devices."""
    from knd.lab.lab import LabConfig, client, read_state  # noqa: PLC0415

    cfg = LabConfig(state_dir=state_dir) if state_dir else LabConfig()
    api = client(cfg)

    def key(d: dict[str, Any]) -> tuple[str, str]:
        meta = d.get("metadata") or {}
        return (str(meta.get("namespace") or "default"), str(meta.get("name")))

    mine = {key(d) for d in docs if d.get("kind") == "ResourceClaim"}
    held: list[dict[str, Any]] = []
    for c in api.list("ResourceClaim"):
        if key(c) in mine:
            continue
        allocation = (c.get("status") or {}).get("allocation") or {}
        held.extend((allocation.get("devices") or {}).get("results") or [])
    state = read_state(cfg) or {}
    objs = api.list("ResourceSlice") + api.list("DeviceClass")
    for o in objs:
        o.setdefault(
            "kind", "ResourceSlice" if "driver" in (o.get("spec") or {}) else "DeviceClass"
        )
    return objs, held, str(state.get("node", "knd-lab"))
