"""Output formats shared by the `knd` commands, as kubectl prints them.

* `json` / `yaml`: a list of objects is one `kind: List` (`apiVersion: v1`, `items`), the form
  `kubectl get -o yaml` prints, so `knd explain` and `kubectl apply` read it back unchanged;
* `name`: one `<resource>.<group>/<name>` (or a device reference) per line;
* `table` / `wide`: aligned columns with an upper-case header; `wide` adds columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Formats a command may offer (each command picks those that fit).
FORMATS = ("table", "wide", "name", "json", "yaml")


def as_list(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`items` as a v1 List, exactly the envelope kubectl prints."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [dict(i) for i in items],
    }


def dumps(obj: Any, fmt: str) -> str:
    """`obj` as JSON (indented, trailing newline) or YAML (keys in insertion order)."""
    if fmt == "json":
        return json.dumps(obj, indent=2) + "\n"
    if fmt == "yaml":
        import yaml  # noqa: PLC0415 - the daemon imports the CLI modules but never writes YAML

        return str(yaml.safe_dump(obj, sort_keys=False, width=100))
    raise ValueError(f"not a document format: {fmt!r}")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, trailing blanks trimmed."""
    all_rows = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows
    )


def resource_name(obj: Mapping[str, Any]) -> str:
    """kubectl's `-o name` form: `resourceslice.resource.k8s.io/NAME` (`kind` lower-cased plus
    the API group; core objects have no group). Objects to be created with `generateName` show
    that prefix."""
    kind = str(obj.get("kind", "")).lower()
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or ""
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"
