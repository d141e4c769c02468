"""`knd config validate PATH...`: check claim configs offline, as the driver would at prepare.

Each PATH is a JSON/YAML file, a directory (searched recursively for *.json, *.yaml, *.yml), or
`-` for standard input (JSON or YAML).
A document is either a bare config object or a Kubernetes manifest (DeviceClass, ResourceClaim,
ResourceClaimTemplate, List; multi-document YAML) whose opaque configs for `--driver-name` are
checked. Exit status: 0 all valid, 1 any invalid (each error printed with file, object and field
path), 2 usage error (unreadable file, unparsable YAML/JSON, no files found, or input over the
limits of knd.api.documents: 3 MiB per input, 100 levels of nesting, 2**17 YAML nodes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from knd.api.attributes import DEFAULT_DRIVER_NAME
from knd.api.check import check_parameters
from knd.api.errors import ConfigError
from knd.api.manifests import find_configs, is_manifest
from knd.host.files import FileReadError, read_bounded

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
_SUFFIXES = (".json", ".yaml", ".yml")
STDIN = Path("-")
#: How long a pipe named on the command line may stay silent before the read gives up.
PIPE_IDLE_S = 30.0


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
        elif path.exists():  # a file, or something read_input refuses with a reason
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    if not files:
        raise UsageError("no JSON or YAML files found in " + ", ".join(map(str, paths)))
    return files


def _label(path: Path) -> str:
    return "<stdin>" if path == STDIN else str(path)


def read_input(path: Path) -> bytes:
    """The bytes of a regular file (or stdin for `-`), at most one byte over the input limit.

    A FIFO or device named on the command line is refused at once (`knd.host.files`).
    """
    from knd.api.documents import MAX_INPUT_BYTES  # noqa: PLC0415 - see load_documents

    if path == STDIN:
        return sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    try:
        return read_bounded(path, MAX_INPUT_BYTES, pipe_idle_s=PIPE_IDLE_S)
    except FileReadError as exc:
        raise UsageError(str(exc)) from exc


def load_documents(path: Path) -> list[object]:
    """All documents in a JSON or (multi-document) YAML file; empty documents dropped."""
    # Imported here: it imports yaml, and the daemon imports this module but never parses YAML.
    from knd.api.documents import DocumentError, parse_documents  # noqa: PLC0415

    name = _label(path)
    try:
        return parse_documents(read_input(path), name, json_only=path.suffix == ".json")
    except DocumentError as exc:
        raise UsageError(str(exc)) from exc


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
                label = f"{_label(path)}[{doc_index}]" if doc_index else _label(path)
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
                print(f"ok {_label(path)} ({checked} config{'s' if checked != 1 else ''})")
    except UsageError as exc:
        print(f"knd config validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        print(f"{total - bad} of {total} configs valid in {len(files)} file(s)")
    return EXIT_INVALID if bad else EXIT_OK
