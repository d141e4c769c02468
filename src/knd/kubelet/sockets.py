"""Unix socket paths of the plugin: layout under the kubelet root, stale removal, permissions.

* registration: `<kubelet-root>/plugins_registry/<driver>-reg.sock` (kubelet's plugin watcher)
* DRA service:  `<kubelet-root>/plugins/<driver>/dra.sock` (the endpoint GetInfo returns)

Before bind a leftover socket file (a crashed instance) is removed, but never anything that is
not a socket. After bind the file is made root-only (0600); the plugin directory is 0700.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DEFAULT_KUBELET_ROOT: Final = Path("/var/lib/kubelet")
#: AF_UNIX sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH: Final = 107


class SocketPathError(RuntimeError):
    """A socket path is unusable (too long, or occupied by something that is not a socket)."""


@dataclass(frozen=True, slots=True)
class PluginPaths:
    """Where the plugin's sockets live for one driver name under one kubelet root."""

    registration: Path
    dra: Path

    @classmethod
    def for_driver(cls, driver: str, kubelet_root: Path = DEFAULT_KUBELET_ROOT) -> PluginPaths:
        if "/" in driver or driver in ("", ".", ".."):
            raise SocketPathError(f"driver name {driver!r} cannot be part of a socket path")
        return cls(
            registration=kubelet_root / "plugins_registry" / f"{driver}-reg.sock",
            dra=kubelet_root / "plugins" / driver / "dra.sock",
        )


def prepare_socket_path(path: Path) -> str:
    """Make `path` ready for bind(): parent exists, stale socket removed; return `unix://` URI."""
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise SocketPathError(f"socket path longer than {MAX_SOCKET_PATH} bytes: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketPathError(f"{path} exists and is not a socket; refusing to remove it")
        path.unlink()
    return f"unix://{path}"


def restrict(path: Path) -> None:
    """Make a bound socket file root-only (0600)."""
    os.chmod(path, 0o600)


def remove_socket(path: Path) -> None:
    """Remove our socket file if it is still a socket (clean exit; idempotent)."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
