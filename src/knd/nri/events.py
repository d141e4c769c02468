"""NRI events, the subscription mask, and which mask a given runtime accepts.

`Event` value e <-> mask bit 1 << (e - 1). A runtime rejects (and drops the plugin for) any bit
outside its valid set: 0x07FF for NRI < v0.10 (containerd 1.7/2.0/2.1, CRI-O <= 1.33), 0x3FFF
for NRI >= v0.10. A zero mask means "everything" to the runtime, so knd always sends an explicit,
non-zero mask. The runtime's NRI version comes from ConfigureRequest.NRI_version (v0.12+) or is
inferred from runtime name and version.
"""

from __future__ import annotations

import logging
import re
from enum import IntEnum

log = logging.getLogger(__name__)


class Event(IntEnum):
    RUN_POD_SANDBOX = 1
    STOP_POD_SANDBOX = 2
    REMOVE_POD_SANDBOX = 3
    CREATE_CONTAINER = 4
    POST_CREATE_CONTAINER = 5
    START_CONTAINER = 6
    POST_START_CONTAINER = 7
    UPDATE_CONTAINER = 8
    POST_UPDATE_CONTAINER = 9
    STOP_CONTAINER = 10
    REMOVE_CONTAINER = 11
    UPDATE_POD_SANDBOX = 12
    POST_UPDATE_POD_SANDBOX = 13
    VALIDATE_CONTAINER_ADJUSTMENT = 14


VALID_MASK_PRE_0_10 = 0x07FF
VALID_MASK_0_10 = 0x3FFF


def bit(event: Event) -> int:
    return 1 << (int(event) - 1)


def mask_of(events: frozenset[Event] | set[Event]) -> int:
    m = 0
    for e in events:
        m |= bit(e)
    return m


def _version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def nri_version(
    nri_version_field: str, runtime_name: str, runtime_version: str
) -> tuple[int, int, int] | None:
    """The runtime's NRI module version: explicit when sent, else inferred, None if unknown."""
    explicit = _version(nri_version_field)
    if explicit is not None:
        return explicit
    rv = _version(runtime_version)
    if rv is None:
        return None
    name = runtime_name.lower()
    if "containerd" in name:
        if rv < (2, 2, 0):
            return (0, 8, 0)
        if rv < (2, 3, 0):
            return (0, 10, 0)
        return (0, 12, 0)
    if "cri-o" in name or "crio" in name:
        if rv < (1, 34, 0):
            return (0, 9, 0)
        return (0, 10, 0)
    return None


def valid_mask(version: tuple[int, int, int] | None) -> int:
    """The runtime's valid event set; conservative (pre-0.10) when the version is unknown."""
    if version is not None and version >= (0, 10, 0):
        return VALID_MASK_0_10
    return VALID_MASK_PRE_0_10


def subscription_mask(wanted: frozenset[Event], version: tuple[int, int, int] | None) -> int:
    """Explicit mask for Configure: the wanted events the runtime knows; never 0."""
    want = mask_of(wanted)
    valid = valid_mask(version)
    if want & ~valid:
        log.warning(
            "runtime (NRI %s) does not know events mask 0x%x; not subscribing them",
            version,
            want & ~valid,
        )
    mask = want & valid
    return mask or bit(Event.RUN_POD_SANDBOX)
