"""API server emulator: the Kubernetes REST paths knd and the lab use, in memory, over HTTP.

This is NOT kube-apiserver. It speaks the same wire (paths, verbs, JSON bodies, Status errors,
resourceVersions, watch streams) for the resources a DRA node needs, so the official Kubernetes
Python client talks to it unchanged:

* `resource.k8s.io/v1`: resourceslices, deviceclasses (cluster-scoped); resourceclaims (with the
  `/status` subresource), resourceclaimtemplates (namespaced);
* core `v1`: nodes (with `/status`), pods (with `/status`), events, namespaces.

Verbs: list (labelSelector `k=v,k!=v,k`, fieldSelector `metadata.name`, `metadata.namespace`,
`spec.nodeName`, `spec.driver`), get, create (`generateName`), update (PUT, optimistic
concurrency on `metadata.resourceVersion` → 409), patch (merge, strategic-merge treated as merge,
JSON patch, and server-side apply with `fieldManager`/`force`), delete, watch (`?watch=true`, from
a resourceVersion, JSON lines, `timeoutSeconds`).

Server-side apply field ownership is tracked for ResourceClaim `status.devices`, the list-map keyed
by driver/pool/device/shareID that several drivers share (see `DeviceStatusOwners`): each field
manager owns the entries (and the fields in them) it applied; an apply replaces that manager's set,
so an entry it applied before and leaves out now is removed unless another manager still owns it;
applying a different value for a field another manager owns is a 409 Conflict naming that manager
unless `force=true`, which takes the field over. Non-apply writes (merge/JSON patch, PUT) hand the
fields they change to their manager (`fieldManager`, else the client's User-Agent) and drop the
ownership of what they remove. Ownership lives per object and is dropped on delete or re-create.
Elsewhere apply merges maps and replaces other lists, without ownership.

Validation: every created/updated object is checked against the published Kubernetes schema
(kubernetes-validate, strict, the version given at start) and ResourceSlices against the DRA limits
(devices per slice, attributes per device, string lengths), and a ResourceClaim's `status.devices`
against its allocation (every entry must name an allocated driver/pool/device, no duplicates), on
every write path; failures are 422 `Invalid` Status errors like the real server's. Counters of
successful writes per (verb, resource) let tests assert how many API writes something made;
counters of HTTP requests per (verb, resource) (`get`, `list`, `watch`, `create`, `update`, `patch`,
`delete`, failed ones included) let them assert how often something asked.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from knd.api import limits
from knd.lab.field_ownership import (
    ApplyConflictError,
    DeviceStatusOwners,
    InvalidApplyError,
    device_key,
)

JSON = dict[str, Any]
JSONList = list[JSON]


@dataclass(frozen=True)
class ResourceType:
    """One REST resource the emulator serves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        """`group/version`, or `v1` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = (
    ResourceType("resource.k8s.io", "v1", "resourceslices", "ResourceSlice", False),
    ResourceType("resource.k8s.io", "v1", "deviceclasses", "DeviceClass", False),
    ResourceType("resource.k8s.io", "v1", "resourceclaims", "ResourceClaim", True, True),
    ResourceType("resource.k8s.io", "v1", "resourceclaimtemplates", "ResourceClaimTemplate", True),
    ResourceType("", "v1", "nodes", "Node", False, True),
    ResourceType("", "v1", "pods", "Pod", True, True),
    ResourceType("", "v1", "events", "Event", True),
    ResourceType("", "v1", "namespaces", "Namespace", False),
)
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
SLICES = _BY_PATH[("resource.k8s.io", "v1", "resourceslices")]
CLAIMS = _BY_PATH[("resource.k8s.io", "v1", "resourceclaims")]
NODES = _BY_PATH[("", "v1", "nodes")]
EVENTS = _BY_PATH[("", "v1", "events")]


_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> JSON:
        """The `Status` body."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, ops: list[JSON]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1] if parts else ""
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ApiError(422, "Invalid", f"test failed at {op['path']}")
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        else:
            raise ApiError(400, "BadRequest", f"unsupported JSON patch op {kind!r}")
    return doc


def apply_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Server-side apply without ownership: maps merge recursively, the list-map
    `status.devices` merges by its keys (driver, pool, device, shareID), other lists are
    replaced. (For ResourceClaims the store then settles `status.devices` by field ownership.)"""
    if isinstance(patch, dict) and isinstance(target, dict):
        result = dict(target)
        for key, value in patch.items():
            result[key] = apply_patch(target.get(key), value, (*path, key))
        return result
    if path == ("status", "devices") and isinstance(patch, list) and isinstance(target, list):
        merged = {device_key(e): e for e in target}
        for entry in patch:
            merged[device_key(entry)] = entry
        return list(merged.values())
    return copy.deepcopy(patch)


def _label_selector(selector: str) -> Callable[[JSON], bool]:
    clauses = [c.strip() for c in selector.split(",") if c.strip()]

    def match(obj: JSON) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for clause in clauses:
            if "!=" in clause:
                k, v = clause.split("!=", 1)
                if labels.get(k.strip()) == v.strip():
                    return False
            elif "=" in clause:
                k, v = clause.split("=", 1)
                if labels.get(k.strip().rstrip("=")) != v.strip():
                    return False
            elif clause.startswith("!"):
                if clause[1:] in labels:
                    return False
            elif clause not in labels:
                return False
        return True

    return match


_FIELD_PATHS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.driver": ("spec", "driver"),
    "involvedObject.name": ("involvedObject", "name"),
}


def _field_selector(selector: str) -> Callable[[JSON], bool]:
    clauses = []
    for clause in (c.strip() for c in selector.split(",") if c.strip()):
        negate = "!=" in clause
        key, value = clause.split("!=" if negate else "=", 1)
        key = key.strip().rstrip("=")
        if key not in _FIELD_PATHS:
            raise ApiError(400, "BadRequest", f'field label not supported: "{key}"')
        clauses.append((_FIELD_PATHS[key], value.strip(), negate))

    def match(obj: JSON) -> bool:
        for (a, b), value, negate in clauses:
            actual = str((obj.get(a) or {}).get(b, ""))
            if (actual == value) == negate:
                return False
        return True

    return match


def dra_limit_problems(obj: JSON) -> list[str]:
    """ResourceSlice checks the schema cannot express (resource.k8s.io/v1 validation)."""
    if obj.get("kind") != "ResourceSlice":
        return []
    problems: list[str] = []
    devices = (obj.get("spec") or {}).get("devices") or []
    restricted = any(
        d.get("taints")
        or d.get("consumesCounters")
        or any(
            set(a) & {"ints", "bools", "strings", "versions"}
            for a in (d.get("attributes") or {}).values()
        )
        for d in devices
    )
    cap = limits.max_devices_per_slice(restricted)
    if len(devices) > cap:
        problems.append(f"spec.devices: Too many: {len(devices)}: must have at most {cap} items")
    names: set[str] = set()
    for i, dev in enumerate(devices):
        name = str(dev.get("name", ""))
        if not limits.is_dns_label(name):
            problems.append(f"spec.devices[{i}].name: Invalid value: {name!r}: not a DNS label")
        if name in names:
            problems.append(f"spec.devices[{i}].name: Duplicate value: {name!r}")
        names.add(name)
        attrs = dev.get("attributes") or {}
        total = len(attrs) + len(dev.get("capacity") or {})
        if total > limits.MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE:
            problems.append(
                f"spec.devices[{i}].attributes: Too many: {total}: must have at most "
                f"{limits.MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE} attributes and capacities"
            )
        for key, attr in attrs.items():
            for problem in limits.check_qualified_name(key):
                problems.append(f"spec.devices[{i}].attributes[{key}]: {problem}")
            for vkey in ("string", "version"):
                value = attr.get(vkey)
                if isinstance(value, str) and len(value) > limits.MAX_ATTRIBUTE_STRING_LEN:
                    problems.append(
                        f"spec.devices[{i}].attributes[{key}].{vkey}: Too long: may not be "
                        f"more than {limits.MAX_ATTRIBUTE_STRING_LEN} bytes"
                    )
    return problems


def claim_status_problems(obj: JSON) -> list[str]:
    """ResourceClaim status checks (resource.k8s.io/v1 status validation): every
    `status.devices` entry names a device of `status.allocation.devices.results`, once."""
    if obj.get("kind") != "ResourceClaim":
        return []
    status = obj.get("status") or {}
    devices = status.get("devices") or []
    results = ((status.get("allocation") or {}).get("devices") or {}).get("results") or []
    allocated = {device_key(r)[:3] for r in results if isinstance(r, dict)}
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for i, entry in enumerate(devices):
        if not isinstance(entry, dict):
            continue  # the schema check reports it
        key = device_key(entry)
        name = "/".join(key[:3])
        if key[:3] not in allocated:
            problems.append(
                f'status.devices[{i}]: Invalid value: "{name}": must be an allocated device '
                "in the claim"
            )
        if key in seen:
            problems.append(f'status.devices[{i}]: Duplicate value: "{name}"')
        seen.add(key)
    return problems


def _devices(obj: JSON | None) -> list[JSON]:
    devices = ((obj or {}).get("status") or {}).get("devices") or []
    return [d for d in devices if isinstance(d, dict)]


class ObjectStore:
    """The emulator's in-memory state: objects by resource, a global resourceVersion counter,
    an event log for watches, write and request counters, and the field ownership of claim
    `status.devices`. Thread-safe."""

    def __init__(self, k8s_version: str = "1.34", validate: bool = True) -> None:
        self.k8s_version = k8s_version
        self.validate = validate
        self._lock = threading.Condition()
        self._rv = 0
        self._objects: dict[ResourceType, dict[tuple[str, str], JSON]] = {r: {} for r in RESOURCES}
        self._events: list[tuple[int, ResourceType, str, JSON]] = []
        self.writes: dict[tuple[str, str], int] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self._failures: list[tuple[str, int]] = []
        self._device_owners: dict[tuple[str, str], DeviceStatusOwners] = {}

    # -- helpers -------------------------------------------------------------------
    def _count(self, verb: str, rtype: ResourceType) -> None:
        key = (verb, rtype.plural)
        self.writes[key] = self.writes.get(key, 0) + 1

    def count_request(self, verb: str, plural: str) -> None:
        """Count one HTTP request (`verb`: get, list, watch, create, update, patch, delete)."""
        with self._lock:
            key = (verb, plural)
            self.requests[key] = self.requests.get(key, 0) + 1

    def request_count(self, verb: str, plural: str) -> int:
        """HTTP requests so far with this verb on this resource, failed ones included."""
        with self._lock:
            return self.requests.get((verb, plural), 0)

    def device_owners(self, namespace: str, name: str) -> DeviceStatusOwners:
        """A copy of the field ownership of one claim's `status.devices`."""
        with self._lock:
            return self._device_owners.get((namespace, name), DeviceStatusOwners()).copy()

    def fail_next(self, verb: str, code: int = 409) -> None:
        """Make the next HTTP request with `verb` (POST/PUT/PATCH/DELETE/GET) fail with `code`
        (fault injection for retry tests)."""
        with self._lock:
            self._failures.append((verb.upper(), code))

    def take_failure(self, verb: str) -> int | None:
        """The injected failure code for this request, if one is pending for `verb`."""
        with self._lock:
            for i, (v, code) in enumerate(self._failures):
                if v == verb:
                    del self._failures[i]
                    return code
            return None

    def reset_counts(self) -> None:
        """Forget the write and request counters."""
        with self._lock:
            self.writes.clear()
            self.requests.clear()

    def write_count(self, plural: str | None = None) -> int:
        """Writes so far (create/update/patch/delete), optionally for one resource."""
        with self._lock:
            return sum(n for (_, p), n in self.writes.items() if plural in (None, p))

    def _check(self, rtype: ResourceType, obj: JSON) -> None:
        problems = dra_limit_problems(obj) + claim_status_problems(obj)
        if self.validate and not problems:
            import kubernetes_validate  # noqa: PLC0415 - heavy; only when validating

            try:
                kubernetes_validate.validate(obj, self.k8s_version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{path}: {exc.message}" if path else str(exc.message))
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(str(exc))
        if problems:
            name = (obj.get("metadata") or {}).get("name", "")
            raise ApiError(
                422,
                "Invalid",
                f'{rtype.kind} "{name}" is invalid: ' + "; ".join(problems),
                {
                    "name": name,
                    "group": rtype.group,
                    "kind": rtype.kind,
                    "causes": [{"message": p} for p in problems],
                },
            )

    def _emit(self, rtype: ResourceType, kind: str, obj: JSON) -> None:
        self._events.append((self._rv, rtype, kind, copy.deepcopy(obj)))
        if len(self._events) > 10000:
            del self._events[:5000]
        self._lock.notify_all()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _not_found(rtype: ResourceType, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{rtype.plural}.{rtype.group or "core"} "{name}" not found',
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        )

    # -- verbs ---------------------------------------------------------------------
    def list(
        self, rtype: ResourceType, namespace: str | None, label: str = "", field: str = ""
    ) -> JSON:
        """A `<Kind>List` of the matching objects."""
        lmatch, fmatch = _label_selector(label), _field_selector(field)
        with self._lock:
            items = [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self._objects[rtype].items())
                if (namespace is None or ns == namespace) and lmatch(o) and fmatch(o)
            ]
            rv = str(self._rv)
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    def get(self, rtype: ResourceType, namespace: str, name: str) -> JSON:
        """One object (deep copy) or 404."""
        with self._lock:
            obj = self._objects[rtype].get((namespace, name))
            if obj is None:
                raise self._not_found(rtype, name)
            return copy.deepcopy(obj)

    def create(self, rtype: ResourceType, namespace: str, obj: JSON) -> JSON:
        """Create; fills uid, resourceVersion, creationTimestamp, generation, namespace."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        obj.setdefault("apiVersion", rtype.api_version)
        obj.setdefault("kind", rtype.kind)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if rtype.namespaced:
            meta["namespace"] = namespace
        self._check(rtype, obj)
        with self._lock:
            key = (namespace if rtype.namespaced else "", name)
            if key in self._objects[rtype]:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{rtype.plural} "{name}" already exists',
                    {"name": name, "group": rtype.group, "kind": rtype.plural},
                )
            meta.update(
                uid=str(uuid.uuid4()),
                resourceVersion=self._next_rv(),
                creationTimestamp=_now(),
                generation=1,
            )
            self._objects[rtype][key] = obj
            if rtype is CLAIMS:
                self._device_owners.pop(key, None)  # a new object: nobody owns anything yet
            self._count("create", rtype)
            self._emit(rtype, "ADDED", obj)
            return copy.deepcopy(obj)

    def replace(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        obj: JSON,
        subresource: str = "",
        field_manager: str = "",
    ) -> JSON:
        """PUT: optimistic concurrency on resourceVersion; `/status` changes only status and
        the main resource ignores status when the resource has a status subresource.
        `field_manager` takes over the claim `status.devices` fields the PUT changes."""
        with self._lock:
            current = self._objects[rtype].get((namespace if rtype.namespaced else "", name))
            if current is None:
                raise self._not_found(rtype, name)
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {rtype.plural}"
                    f' "{name}": the object has been modified; please apply your '
                    "changes to the latest version and try again",
                    {"name": name, "group": rtype.group, "kind": rtype.plural},
                )
            new = copy.deepcopy(obj)
            if subresource == "status":
                new = {**copy.deepcopy(current), "status": new.get("status")}
            elif rtype.status_subresource:
                new["status"] = copy.deepcopy(current.get("status"))
                if new["status"] is None:
                    new.pop("status")
            owners = self._updated_owners(rtype, namespace, name, current, new, field_manager)
            return self._store_update(rtype, namespace, name, current, new, owners)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        content_type: str,
        subresource: str = "",
        create_on_apply: bool = True,
        field_manager: str = "",
        force: bool = False,
    ) -> JSON:
        """PATCH with merge, strategic-merge (as merge), JSON patch or apply semantics.

        For a ResourceClaim's `status.devices`, an apply (by `field_manager`, with `force`)
        follows field ownership (409 on a conflict); other patches hand the fields they change
        to `field_manager`."""
        with self._lock:
            key = (namespace if rtype.namespaced else "", name)
            current = self._objects[rtype].get(key)
            if current is None:
                if "apply-patch" in content_type and create_on_apply and not subresource:
                    return self.create(rtype, namespace, body)
                raise self._not_found(rtype, name)
            meta = body.get("metadata") if isinstance(body, dict) else None
            want_uid = meta.get("uid") if isinstance(meta, dict) else None
            if want_uid and want_uid != current["metadata"].get("uid"):
                # what the API server does: a uid in the patched object is a precondition
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {want_uid}, UID in object "
                    f"meta: {current['metadata'].get('uid')}",
                )
            owners: DeviceStatusOwners | None = None
            if "json-patch" in content_type:
                new = json_patch(current, body)
            elif "apply-patch" in content_type:
                new = apply_patch(current, body)
                if rtype is CLAIMS and subresource == "status":
                    owners, devices = self._applied_devices(
                        key, current, body, field_manager, force
                    )
                    status = new.setdefault("status", {})
                    if devices:
                        status["devices"] = devices
                    else:
                        status.pop("devices", None)
            else:
                new = merge_patch(current, body)
            if subresource == "status":
                new = {**copy.deepcopy(current), "status": new.get("status")}
            elif rtype.status_subresource and "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            if owners is None:
                owners = self._updated_owners(rtype, namespace, name, current, new, field_manager)
            return self._store_update(rtype, namespace, name, current, new, owners)

    def _applied_devices(
        self, key: tuple[str, str], current: JSON, body: Any, manager: str, force: bool
    ) -> tuple[DeviceStatusOwners, JSONList]:
        """One apply of claim `status.devices`: the new ownership and entries."""
        status = (body.get("status") if isinstance(body, dict) else None) or {}
        applied = status.get("devices") if isinstance(status, dict) else None
        if applied is not None and not isinstance(applied, list):
            raise ApiError(422, "Invalid", "status.devices: must be a list")
        owners = self._device_owners.get(key, DeviceStatusOwners()).copy()
        try:
            devices = owners.apply(_devices(current), applied or [], manager, force)
        except ApplyConflictError as exc:
            raise ApiError(
                409,
                "Conflict",
                str(exc),
                {
                    "name": key[1],
                    "group": CLAIMS.group,
                    "kind": CLAIMS.plural,
                    "causes": [
                        {
                            "reason": "FieldManagerConflict",
                            "message": ", ".join(f'conflict with "{m}"' for m in c.managers),
                            "field": c.path,
                        }
                        for c in exc.conflicts
                    ],
                },
            ) from exc
        except InvalidApplyError as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
        return owners, devices

    def _updated_owners(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        current: JSON,
        new: JSON,
        manager: str,
    ) -> DeviceStatusOwners | None:
        """Ownership of claim `status.devices` after a non-apply write by `manager`."""
        if rtype is not CLAIMS:
            return None
        owners = self._device_owners.get((namespace, name), DeviceStatusOwners()).copy()
        owners.update(_devices(current), _devices(new), manager or "unknown")
        return owners

    def _store_update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        current: JSON,
        new: JSON,
        owners: DeviceStatusOwners | None = None,
    ) -> JSON:
        meta = new.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "namespace", "name"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        meta["generation"] = current["metadata"].get("generation", 1) + (
            1 if new.get("spec") != current.get("spec") else 0
        )
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        self._check(rtype, new)
        if owners is not None:  # the write is valid: its field ownership takes effect
            self._device_owners[(namespace if rtype.namespaced else "", name)] = owners
        if new == current:
            return copy.deepcopy(current)  # a no-op write does not bump the resourceVersion
        meta["resourceVersion"] = self._next_rv()
        self._objects[rtype][(namespace if rtype.namespaced else "", name)] = new
        self._count("update", rtype)
        self._emit(rtype, "MODIFIED", new)
        return copy.deepcopy(new)

    def delete(
        self, rtype: ResourceType, namespace: str, name: str, options: JSON | None = None
    ) -> JSON:
        """Delete immediately (no finalizers), honouring DeleteOptions preconditions on uid
        and resourceVersion (409 when they do not match); returns the deleted object."""
        with self._lock:
            key = (namespace if rtype.namespaced else "", name)
            current = self._objects[rtype].get(key)
            if current is None:
                raise self._not_found(rtype, name)
            pre = (options or {}).get("preconditions") or {}
            for field in ("uid", "resourceVersion"):
                if pre.get(field) and pre[field] != current["metadata"].get(field):
                    raise ApiError(
                        409,
                        "Conflict",
                        f"Precondition failed: {field} in "
                        f"precondition: {pre[field]}, in object meta: "
                        f"{current['metadata'].get(field)}",
                    )
            obj = self._objects[rtype].pop(key)
            if rtype is CLAIMS:
                self._device_owners.pop(key, None)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            self._count("delete", rtype)
            self._emit(rtype, "DELETED", obj)
            return copy.deepcopy(obj)

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        since: int,
        timeout: float,
        label: str = "",
        field: str = "",
    ) -> Iterator[JSON]:
        """Yield watch events after resourceVersion `since` until `timeout` seconds pass."""
        lmatch, fmatch = _label_selector(label), _field_selector(field)
        deadline = time.monotonic() + timeout
        cursor = since
        while True:
            with self._lock:
                pending = [e for e in self._events if e[0] > cursor and e[1] == rtype]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._lock.wait(min(remaining, 0.5))
                    continue
            for rv, _, kind, obj in pending:
                cursor = max(cursor, rv)
                ns = (obj.get("metadata") or {}).get("namespace", "")
                if (namespace is None or ns == namespace) and lmatch(obj) and fmatch(obj):
                    yield {"type": kind, "object": obj}


def _parse_path(path: str) -> tuple[ResourceType, str | None, str, str]:
    """URL path → (resource, namespace or None, name, subresource)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, version, rest = "", parts[1] if len(parts) > 1 else "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, version, rest[2]) in _BY_PATH:
        namespace, rest = rest[1], rest[2:]
    if not rest or (group, version, rest[0]) not in _BY_PATH:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")
    rtype = _BY_PATH[(group, version, rest[0])]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and (sub != "status" or not rtype.status_subresource):
        raise ApiError(404, "NotFound", f"subresource {sub!r} not found")
    return rtype, namespace, name, sub


def _discovery(path: str) -> JSON | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": "resource.k8s.io",
                    "versions": [{"groupVersion": "resource.k8s.io/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "resource.k8s.io/v1", "version": "v1"},
                }
            ],
        }
    if path == "/version":
        return {"major": "1", "minor": "34", "gitVersion": "v1.34.0-knd-lab-emulator"}
    for group, version in (("", "v1"), ("resource.k8s.io", "v1")):
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if path == prefix:
            return {
                "kind": "APIResourceList",
                "groupVersion": f"{group}/{version}".lstrip("/"),
                "resources": [
                    {
                        "name": r.plural,
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                    }
                    for r in RESOURCES
                    if (r.group, r.version) == (group, version)
                ],
            }
    return None


_KUBE_VERBS = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


class _QuietServer(ThreadingHTTPServer):
    """A client that disconnects mid-request (a killed daemon) is normal here, not a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys  # noqa: PLC0415

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class ApiServerEmulator:
    """HTTP front end of an ObjectStore on 127.0.0.1 (port 0 = any free port)."""

    def __init__(
        self, store: ObjectStore | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.store = store or ObjectStore()
        self.unavailable = threading.Event()  # set → every request gets 503 (fault tests)
        self._server = _QuietServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="apiserver-emulator", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL for a Kubernetes client `Configuration.host`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiServerEmulator:
        """Serve in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ApiServerEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def writes(self) -> int:
        """Successful writes so far, all resources."""
        return self.store.write_count()

    def fail_next(self, verb: str, code: int = 409) -> None:
        """See ObjectStore.fail_next."""
        self.store.fail_next(verb, code)

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> JSON:
        """Create a Node directly (not counted as a write)."""
        node = self.store.create(
            NODES,
            "",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels or {}},
            },
        )
        self.store.writes[("create", "nodes")] -= 1
        return node

    def put_claim(self, claim: JSON) -> JSON:
        """Create a ResourceClaim directly, in `metadata.namespace` (default `default`), as
        scheduler output would leave it (schema- and status-validated, not counted as a
        write); returns the stored object with the server-assigned uid."""
        namespace = (claim.get("metadata") or {}).get("namespace") or "default"
        with self.store._lock:  # one step: the un-count cannot hit another thread's create
            obj = self.store.create(CLAIMS, namespace, claim)
            self.store.writes[("create", CLAIMS.plural)] -= 1
        return obj

    def delete_claim(self, namespace: str, name: str) -> None:
        """Delete a ResourceClaim directly if it exists (not counted as a write)."""
        with self.store._lock:
            try:
                self.store.delete(CLAIMS, namespace, name)
            except ApiError:
                return
            self.store.writes[("delete", CLAIMS.plural)] -= 1

    def claim(self, namespace: str, name: str) -> JSON | None:
        """The stored ResourceClaim (a copy), or None."""
        try:
            return self.store.get(CLAIMS, namespace, name)
        except ApiError:
            return None

    def events(self, namespace: str | None = None) -> list[JSON]:
        """The stored core/v1 Events (copies), optionally of one namespace."""
        return list(self.store.list(EVENTS, namespace)["items"])

    def slices(self) -> list[JSON]:
        """Every stored ResourceSlice (copies), sorted by name."""
        return list(self.store.list(SLICES, None)["items"])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        def _count_request(verb: str, path: str, query: dict[str, str]) -> None:
            try:
                rtype, _, name, _ = _parse_path(path)
            except ApiError:
                return  # discovery or an unknown path: not a resource request
            if verb == "GET" and not name:
                kind = "watch" if query.get("watch") in ("true", "1") else "list"
            else:
                kind = _KUBE_VERBS.get(verb, verb.lower())
            emulator.store.count_request(kind, rtype.plural)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall

            def log_message(self, format: str, *args: object) -> None:
                return

            def _reply(self, code: int, body: JSON) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                raw = self._raw
                ctype = self.headers.get("Content-Type", "")
                try:
                    if "yaml" in ctype:
                        return yaml.safe_load(raw) if raw else {}
                    return json.loads(raw) if raw else {}
                except (ValueError, yaml.YAMLError) as exc:
                    raise ApiError(400, "BadRequest", f"cannot decode body: {exc}") from exc

            def _handle(self, verb: str) -> None:
                # Always consume the body first, so an early error keeps the connection usable.
                length = int(self.headers.get("Content-Length") or 0)
                self._raw = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                _count_request(verb, url.path, query)
                try:
                    if emulator.unavailable.is_set():
                        raise ApiError(503, "ServiceUnavailable", "emulated outage")
                    if (code := emulator.store.take_failure(verb)) is not None:
                        raise ApiError(
                            code,
                            _REASONS.get(code, "InternalError"),
                            f"injected failure for {verb}",
                        )
                    if verb == "GET" and (disc := _discovery(url.path.rstrip("/"))) is not None:
                        self._reply(200, disc)
                        return
                    rtype, ns, name, sub = _parse_path(url.path)
                    store = emulator.store
                    nsv = ns or ""
                    if verb == "GET" and not name:
                        if query.get("watch") in ("true", "1"):
                            self._watch(rtype, ns, query)
                            return
                        self._reply(
                            200,
                            store.list(
                                rtype,
                                ns,
                                query.get("labelSelector", ""),
                                query.get("fieldSelector", ""),
                            ),
                        )
                    elif verb == "GET":
                        self._reply(200, store.get(rtype, nsv, name))
                    elif verb == "POST" and not name:
                        self._reply(201, store.create(rtype, nsv, self._body()))
                    elif verb == "PUT" and name:
                        self._reply(
                            200,
                            store.replace(
                                rtype, nsv, name, self._body(), sub, self._manager(query)
                            ),
                        )
                    elif verb == "PATCH" and name:
                        ctype = self.headers.get("Content-Type", "")
                        if "apply-patch" in ctype and not query.get("fieldManager"):
                            raise ApiError(422, "Invalid", "PATCH with apply requires fieldManager")
                        self._reply(
                            200,
                            store.patch(
                                rtype,
                                nsv,
                                name,
                                self._body(),
                                ctype,
                                sub,
                                field_manager=self._manager(query),
                                force=query.get("force") in ("true", "1"),
                            ),
                        )
                    elif verb == "DELETE" and name:
                        body = self._body()
                        self._reply(
                            200,
                            store.delete(
                                rtype, nsv, name, body if isinstance(body, dict) else None
                            ),
                        )
                    else:
                        raise ApiError(405, "MethodNotAllowed", f"{verb} not allowed here")
                except ApiError as err:
                    self._reply(err.code, err.status())
                except (KeyError, IndexError, TypeError, ValueError) as exc:
                    self._reply(400, ApiError(400, "BadRequest", str(exc)).status())

            def _manager(self, query: dict[str, str]) -> str:
                """The field manager: `fieldManager`, else the client's program name from its
                User-Agent, as kube-apiserver defaults it for non-apply writes."""
                agent = self.headers.get("User-Agent", "").split("/", 1)[0].strip()
                return query.get("fieldManager") or agent or "unknown"

            def _watch(self, rtype: ResourceType, ns: str | None, query: dict[str, str]) -> None:
                since = int(query.get("resourceVersion") or 0)
                timeout = float(query.get("timeoutSeconds") or 300)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for event in emulator.store.watch(
                    rtype,
                    ns,
                    since,
                    timeout,
                    query.get("labelSelector", ""),
                    query.get("fieldSelector", ""),
                ):
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler
