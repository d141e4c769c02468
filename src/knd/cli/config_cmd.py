"""`knd config validate PATH...`: check claim configs offline, as the driver would at prepare.

Each PATH is a JSON/YAML file or a directory (searched recursively for *.json, *.yaml, *.yml).
A document is either a bare config object or a Kubernetes manifest (DeviceClass, ResourceClaim,
ResourceClaimTemplate, List; multi-document YAML) whose opaque configs for `--driver-name` are
checked. Exit status: 0 all valid, 1 any invalid (each error printed with file, object and field
path), 2 usage error (unreadable file, unparsable YAML/JSON, no files found).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from knd.api.attributes import DEFAULT_DRIVER_NAME
from knd.api.check import check_parameters
from knd.api.errors import ConfigError
from knd.api.manifests import find_configs, is_manifest

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
_SUFFIXES = (".json", ".yaml", ".yml")
#: `-` names standard input.
STDIN = Path("-")
#: The most one input file (or standard input) may hold; a larger one is refused, not truncated.
MAX_INPUT_BYTES = 64 * 1024 * 1024


class UsageError(Exception):
    """A problem with the command line or an input file as a whole (exit status 2)."""


def register(sub: Any) -> None:
    """Register `knd config validate` on the top-level sub-parser collection."""
    config = sub.add_parser("config", help="claim configuration tools")
    config_sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    config.set_defaults(handler=lambda _a: (config.print_help(sys.stderr), EXIT_USAGE)[1])
    validate = config_sub.add_parser(
        "validate",
        help="validate claim configs in files or manifests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", type=Path)
    validate.add_argument(
        "--driver-name",
        default=DEFAULT_DRIVER_NAME,
        help="whose opaque configs to check (default: %(default)s)",
    )
    validate.add_argument(
        "--rdma-only",
        action="store_true",
        help="validate as for an RDMA-only device (no netdev: interface/routes/... forbidden)",
    )
    validate.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    validate.set_defaults(handler=run_validate)


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files named directly, plus config files found under directories, in a stable order.
    `-` (standard input) and pipes (`<(kubectl get ... -o yaml)`) count as files."""
    files: list[Path] = []
    for path in paths:
        if path == STDIN:
            files.append(path)
        elif path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
            )
        elif path.exists():  # a regular file, a pipe or a character device
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    if not files:
        raise UsageError("no JSON or YAML files found in " + ", ".join(map(str, paths)))
    return files


def read_input(path: Path) -> str:
    """The UTF-8 text of `path` (`-`: standard input), at most MAX_INPUT_BYTES."""
    try:
        if path == STDIN:
            raw = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with path.open("rb") as f:
                raw = f.read(MAX_INPUT_BYTES + 1)
        if len(raw) > MAX_INPUT_BYTES:
            raise UsageError(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc


def load_documents(path: Path) -> list[object]:
    """All documents in a JSON or (multi-document) YAML file; empty documents dropped."""
    text = read_input(path)
    import yaml  # noqa: PLC0415 - the daemon imports this module but never parses YAML

    try:
        if path.suffix == ".json":
            return [json.loads(text)]
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot parse: {exc}") from exc


def iter_configs(doc: object, driver: str) -> Iterator[tuple[str, object]]:
    """(where, parameters) for each config of ours in one document."""
    if is_manifest(doc):
        assert isinstance(doc, dict)
        for found in find_configs(doc, driver):
            yield found.where, found.parameters
    else:
        yield "config", doc


def validate_file(path: Path, driver: str, rdma_only: bool, out: TextIO) -> tuple[int, int]:
    """Validate every config in `path`; print errors to `out`. Returns (checked, invalid)."""
    checked = invalid = 0
    for doc_index, doc in enumerate(load_documents(path)):
        for where, parameters in iter_configs(doc, driver):
            checked += 1
            try:
                check_parameters(parameters, rdma_only=rdma_only)
            except ConfigError as exc:
                invalid += 1
                label = f"{path}[{doc_index}]" if doc_index else str(path)
                for err in exc.errors:
                    print(f"{label}: {where}: {err}", file=out)
    return checked, invalid


def run_validate(args: argparse.Namespace) -> int:
    """Handler of `knd config validate`."""
    try:
        files = expand_paths(args.paths)
        total = bad = 0
        for path in files:
            checked, invalid = validate_file(path, args.driver_name, args.rdma_only, sys.stdout)
            total += checked
            bad += invalid
            if not args.quiet and not invalid:
                print(f"ok {path} ({checked} config{'s' if checked != 1 else ''})")
    except UsageError as exc:
        print(f"knd config validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        print(f"{total - bad} of {total} configs valid in {len(files)} file(s)")
    return EXIT_INVALID if bad else EXIT_OK
