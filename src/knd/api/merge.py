"""Which opaque configs apply to an allocated device, and how they merge.

Precedence, lowest first: provider/cloud config < DeviceClass config (`FromClass`) < claim config
(`FromClaim`); within one source, later entries win. An entry applies to a request when its
`requests` list is empty or names the request (a main request name also covers its
subrequests, `gpu` covers `gpu/large`, as Kubernetes defines).

Merge of two configs (`merge_configs(base, override)`):
* scalars and nested objects field by field: the override's value wins when it is set;
* `ethtool.features` / `ethtool.privateFlags`: key by key, override wins;
* lists are concatenated, then de-duplicated: `interface.addresses` by address value,
  `routes` by (destination network, table), `neighbors` by destination, `rules` by their whole
  value; table 0 and unset both mean main. The identity of an entry is the rule book's
  (`knd.api.rules.route_key` etc.), the one the plan builder uses against host data.
  A duplicate from the override replaces the earlier entry in place (order is kept stable).

DraNet instead uses the first valid config and ignores the rest, so a DeviceClass config
silently shadows a claim config; knd deliberately does not copy that.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from knd.api import rules
from knd.api.claims import DeviceConfig
from knd.api.config import NetworkConfig, decode
from knd.api.errors import ConfigError, FieldError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

SOURCE_PROVIDER = "Provider"
SOURCE_CLASS = "FromClass"
SOURCE_CLAIM = "FromClaim"
_SOURCE_RANK = {SOURCE_PROVIDER: 0, SOURCE_CLASS: 1, SOURCE_CLAIM: 2}


def _merge_list(base: list[T], override: list[T], key: Callable[[T], Hashable]) -> list[T]:
    index: dict[Hashable, int] = {}
    deduped: list[T] = []
    for item in [*base, *override]:
        k = key(item)
        if k in index:
            deduped[index[k]] = item
        else:
            index[k] = len(deduped)
            deduped.append(item)
    return deduped


def _list_key(field: str) -> Callable[[Any], Hashable] | None:
    keys: dict[str, Callable[[Any], Hashable]] = {
        "addresses": rules.address_key,
        "routes": lambda r: rules.route_key(r.destination or "", r.table),
        "neighbors": lambda n: rules.neighbor_key(n.destination or ""),
        "rules": lambda r: rules.rule_key(r.priority, r.source, r.destination, r.table),
    }
    return keys.get(field)


def _merge_models(base: M, override: M) -> M:
    updates: dict[str, Any] = {}
    for name in type(base).model_fields:
        b = getattr(base, name)
        o = getattr(override, name)
        if o is None:
            continue
        if b is None:
            # Merge into an empty value so lists from a single source are de-duplicated too.
            b = type(o)() if isinstance(o, (BaseModel, dict, list)) else None
        if b is None:
            updates[name] = o
        elif isinstance(b, BaseModel) and isinstance(o, BaseModel):
            updates[name] = _merge_models(b, o)
        elif isinstance(b, dict) and isinstance(o, dict):
            updates[name] = {**b, **o}
        elif isinstance(b, list) and isinstance(o, list):
            key = _list_key(name)
            updates[name] = _merge_list(b, o, key) if key else [*b, *o]
        else:
            updates[name] = o
    return base.model_copy(update=updates) if updates else base


def merge_configs(*configs: NetworkConfig) -> NetworkConfig:
    """Merge configs in precedence order, lowest first (see module docstring)."""
    result = NetworkConfig()
    for cfg in configs:
        result = _merge_models(result, cfg)
    return result


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One element of `status.allocation.devices.config` (or a DeviceClass/claim config)."""

    source: str
    requests: tuple[str, ...]
    driver: str
    parameters: object
    index: int = 0

    @classmethod
    def from_api(cls, obj: DeviceConfig, index: int = 0) -> ConfigEntry:
        """Build from the API's JSON form: {source, requests, opaque: {driver, parameters}}."""
        opaque = obj.get("opaque") or {}
        return cls(
            source=str(obj.get("source", SOURCE_CLAIM)),
            requests=tuple(str(r) for r in (obj.get("requests") or [])),
            driver=str(opaque.get("driver", "")) if isinstance(opaque, Mapping) else "",
            parameters=opaque.get("parameters") if isinstance(opaque, Mapping) else None,
            index=index,
        )

    def applies_to(self, request: str) -> bool:
        """True when this entry's `requests` is empty or names `request` (or its parent)."""
        if not self.requests:
            return True
        parent = request.split("/", 1)[0]
        return request in self.requests or parent in self.requests


def configs_for_request(
    entries: Iterable[ConfigEntry], driver: str, request: str
) -> list[ConfigEntry]:
    """The entries for our `driver` that apply to `request`, lowest precedence first."""
    mine = [e for e in entries if e.driver == driver and e.applies_to(request)]
    return sorted(mine, key=lambda e: (_SOURCE_RANK.get(e.source, 1), e.index))


def resolve_request_config(
    entries: Sequence[ConfigEntry],
    driver: str,
    request: str,
    provider: NetworkConfig | None = None,
) -> NetworkConfig:
    """Decode and merge every config that applies to `request`, on top of `provider`.

    Raises ConfigError naming the offending entry (`config[1] (FromClaim)`) and field paths. The
    merged result is returned undefaulted and unvalidated: call `knd.api.check.finalize` on it.
    """
    decoded: list[NetworkConfig] = [provider] if provider is not None else []
    errors: list[FieldError] = []
    for entry in configs_for_request(entries, driver, request):
        try:
            decoded.append(decode(entry.parameters))
        except ConfigError as exc:
            prefix = f"config[{entry.index}] ({entry.source})"
            errors.extend(
                FieldError(f"{prefix} {e.path}".strip() if e.path else prefix, e.message)
                for e in exc.errors
            )
    if errors:
        raise ConfigError(errors, context=f"request {request!r}")
    return merge_configs(*decoded)
