"""What knd leaves on the node when it is uninstalled (`helm uninstall`, the DaemonSet deleted).

A stopping daemon cannot tell an uninstall from a restart by the signal: both are a SIGTERM.
The chart names the daemon's DaemonSet in `KND_DAEMONSET` (`namespace/name`, only when the
chart creates the RBAC that lets the daemon read it); at the end of a shutdown
`daemonset_deleted` asks the API server for it. An uninstall is an answer that it is gone (404)
or being deleted (`deletionTimestamp`), or that the release's own credentials are gone: `helm
uninstall` deletes the ServiceAccount (the pod's token then answers 401) and the Role that
allowed the read (403) along with the DaemonSet, usually before the pod has finished stopping.
Any other error, a timeout (3 s) or no variable at all (a process run outside the chart) means
"keep everything", because a restart and an upgrade must find the state again.

On an uninstall `remove_state` deletes the SQLite state (`state.db` and its `-wal`, `-shm`,
`-journal` files), the node-local IPAM database beside it (`ipam.db`, same suffixes) and the
empty restore-record directory, but only when nothing in it
is still needed: no prepared claim (no pod holds a NIC through knd) and no pending restore
record. Otherwise the state stays, so a later install finds those pods' NICs and gives them back
with their host configuration (docs/uninstall.md). The kubelet plugin and registration sockets
are removed by every clean stop (knd.kubelet.sockets), uninstall or not.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knd.kube.errors import ApiError

log = logging.getLogger(__name__)

DAEMONSET_ENV = "KND_DAEMONSET"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CHECK_TIMEOUT_S = 3.0
#: 404: the DaemonSet is gone; 401/403: the release's ServiceAccount or Role is (module docstring)
GONE = (401, 403, 404)
STATE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def daemonset_ref(env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, str] | None:
    """(namespace, name) from `KND_DAEMONSET`, or None when unset or malformed (logged)."""
    raw = env.get(DAEMONSET_ENV, "")
    if not raw:
        return None
    ns, _, name = raw.partition("/")
    if not (_NAME.match(ns) and _NAME.match(name)):
        log.warning("%s=%r is not NAMESPACE/NAME: uninstall cleanup is off", DAEMONSET_ENV, raw)
        return None
    return ns, name


def daemonset_deleted(api: Any, ref: tuple[str, str] | None) -> bool:
    """True only when the API server says the DaemonSet is gone or being deleted."""
    if ref is None:
        return False
    ns, name = ref
    try:
        obj = api.request(
            "GET", f"/apis/apps/v1/namespaces/{ns}/daemonsets/{name}", timeout_s=CHECK_TIMEOUT_S
        )
    except ApiError as exc:
        if exc.status in GONE:
            log.info("DaemonSet %s/%s: %s: uninstalled", ns, name, exc.status)
            return True
        log.info("DaemonSet %s/%s not checked (%s): state kept", ns, name, exc)
        return False
    except (OSError, ValueError) as exc:
        log.info("DaemonSet %s/%s not checked (%s): state kept", ns, name, exc)
        return False
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


@dataclass
class Removal:
    removed: list[str] = field(default_factory=list)
    kept: str = ""  # why the state stayed ("" when it was removed)


def remove_state(
    state_path: Path, records_dir: Path, prepared_claims: int, companions: Sequence[Path] = ()
) -> Removal:
    """Delete the state files (and the `companions` databases beside it, e.g. the node-local
    IPAM's) when no claim is prepared and no restore record is pending."""
    out = Removal()
    records = [p for p in records_dir.iterdir()] if records_dir.is_dir() else []
    if prepared_claims or records:
        out.kept = f"{prepared_claims} prepared claim(s), {len(records)} restore record(s)"
        return out
    for db in (state_path, *companions):
        for suffix in STATE_SUFFIXES:
            path = Path(f"{db}{suffix}")
            try:
                path.unlink()
                out.removed.append(str(path))
            except FileNotFoundError:
                pass
    try:
        records_dir.rmdir()
        out.removed.append(str(records_dir))
    except FileNotFoundError:
        pass
    return out
