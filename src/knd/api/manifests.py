"""Find this driver's opaque configs inside Kubernetes manifests (pure data walking).

Knows where DeviceClass (`spec.config[]`), ResourceClaim (`spec.devices.config[]`) and
ResourceClaimTemplate (`spec.spec.devices.config[]`) keep their opaque device configs, and
`kind: List` wrappers. A document without `apiVersion`/`kind` is a bare config object.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

CONFIG_PATHS: dict[str, tuple[str, ...]] = {
    "DeviceClass": ("spec", "config"),
    "ResourceClaim": ("spec", "devices", "config"),
    "ResourceClaimTemplate": ("spec", "spec", "devices", "config"),
}


@dataclass(frozen=True, slots=True)
class FoundConfig:
    """One opaque config of ours: where it is (`where`, e.g. `ResourceClaim/ns/name
    spec.devices.config[0]`) and its `parameters` JSON value."""

    where: str
    parameters: object


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def object_name(doc: Mapping[str, Any]) -> str:
    """`Kind/namespace/name` or `Kind/name` of a manifest."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    name = str(meta.get("name") or meta.get("generateName") or "<unnamed>")
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{ns}/{name}" if ns else f"{doc.get('kind')}/{name}"


def is_manifest(doc: object) -> bool:
    """True when `doc` looks like a Kubernetes object (has apiVersion and kind)."""
    return isinstance(doc, Mapping) and "apiVersion" in doc and "kind" in doc


def find_configs(doc: Mapping[str, Any], driver: str) -> Iterator[FoundConfig]:
    """Yield the opaque configs of `driver` in one manifest (recursing into `kind: List`).

    Kinds that carry no device config (Pods, Deployments, ...) yield nothing.
    """
    kind = doc.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List")):
        for item in doc.get("items") or []:
            if isinstance(item, Mapping):
                yield from find_configs(item, driver)
        return
    path = CONFIG_PATHS.get(str(kind))
    if path is None:
        return
    entries = _dig(doc, path)
    if not isinstance(entries, list):
        return
    for i, entry in enumerate(entries):
        opaque = entry.get("opaque") if isinstance(entry, Mapping) else None
        if not isinstance(opaque, Mapping) or opaque.get("driver") != driver:
            continue
        where = f"{object_name(doc)} {'.'.join(path)}[{i}].opaque.parameters"
        yield FoundConfig(where=where, parameters=opaque.get("parameters"))
