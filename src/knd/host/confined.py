"""Confined, bounded reads below one root directory: the only way knd reads sysfs and procfs.

knd runs as root, and `--sysfs-root` (or a hostile fixture tree) is input: a link may point at
`/etc/passwd`, a file may be a FIFO, `/dev/zero` or a gigabyte. The contract of `ConfinedTree`:

* **Confined.** Every path is resolved by the kernel and then checked where it really landed
  (`/proc/self/fd/N` of an `O_PATH` handle): a file or directory outside the (real) root is
  treated as absent. The live system (`/sys`, `/proc`) is read through the same code.
* **Only what it claims to be.** A read opens nothing until an `O_PATH|O_NOFOLLOW` handle showed
  a regular file (a FIFO, device, socket or link is never opened, so no driver `open` runs); the
  file is then reopened through that same handle with `O_NONBLOCK`, so no swap in between helps.
* **Bounded.** A file is read up to `MAX_FILE_BYTES` (a sysfs attribute is at most one page); a
  larger one is refused. A directory lists at most `MAX_DIR_ENTRIES` names.
* **Strict numbers.** `parse_int` takes ASCII digits only (no `_`, `+`, spaces or other
  scripts' digits) and a range, which callers take from the kernel type (`S32`, `U16`, ...).
* Path components are single names: empty, `.`, `..`, or anything with `/` or NUL is refused.

Nothing raises for a missing, odd or unreadable entry: readers return None or `[]`.
Cost: 4-6 syscalls per file read (about 10-20 µs); a directory listing is one more reopen.
Needs procfs at `/proc` (every Linux host and container has it).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

#: Largest file read (bytes). Sysfs attributes are at most one page; procfs files we read are
#: one line.
MAX_FILE_BYTES: Final = 4096
#: Most names one directory listing returns (a host with more netdevs than this is not one knd
#: can publish anyway: 128 devices per ResourceSlice).
MAX_DIR_ENTRIES: Final = 16384
#: Longest path component (NAME_MAX).
NAME_MAX: Final = 255

#: Inclusive ranges of the kernel types sysfs/procfs numbers come from.
S32: Final = (-(2**31), 2**31 - 1)
U32: Final = (0, 2**32 - 1)
U16: Final = (0, 2**16 - 1)
U8: Final = (0, 2**8 - 1)
S64: Final = (-(2**63), 2**63 - 1)

_DEC = re.compile(r"-?[0-9]{1,20}")
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,16})")
_SELF_FD = "/proc/self/fd/"


def parse_int(text: str, lo: int, hi: int, base: int = 10) -> int | None:
    """`text` as an integer in [lo, hi]: ASCII digits only (hex: optional `0x`), else None."""
    if base == 16:
        m = _HEX.fullmatch(text)
        if m is None:
            return None
        value = int(m.group(1), 16)
    elif base == 10:
        if _DEC.fullmatch(text) is None:
            return None
        value = int(text, 10)
    else:
        raise ValueError(f"unsupported base {base}")
    return value if lo <= value <= hi else None


def component_ok(part: str) -> bool:
    """True for one plain path component (no separators, NUL, `.` or `..`; ≤ NAME_MAX bytes)."""
    if not part or part in (".", "..") or "/" in part or "\0" in part:
        return False
    return len(os.fsencode(part)) <= NAME_MAX


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


def _inside(where: str, real_root: str) -> bool:
    if real_root == "/":
        return where.startswith("/")
    return where == real_root or where.startswith(real_root + "/")


@dataclass(frozen=True, slots=True)
class ConfinedTree:
    """Read-only, confined and bounded access below `root` (see the module docstring)."""

    root: Path

    def path(self, *parts: str) -> Path:
        """The lexical path below the root (for messages and tests; never read directly)."""
        return Path(self.root).joinpath(*parts)

    @property
    def real_root(self) -> Path:
        return Path(_real_root(os.fspath(self.root)))

    # ----------------------------------------------------------------------------- handles

    def _handle(self, parts: tuple[str, ...], *, follow: bool) -> tuple[int, str] | None:
        """An O_PATH fd for `parts` and the real path it landed on, when inside the root."""
        if not all(component_ok(p) for p in parts):
            return None
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        try:
            fd = os.open(os.path.join(os.fspath(self.root), *parts), flags)
        except (OSError, ValueError):
            return None
        try:
            where = os.readlink(f"{_SELF_FD}{fd}")
        except OSError:
            os.close(fd)
            return None
        if not _inside(where, _real_root(os.fspath(self.root))):
            os.close(fd)
            log.debug("%s: resolves outside %s (%s); ignored", self.path(*parts), self.root, where)
            return None
        return fd, where

    def realpath(self, *parts: str) -> Path | None:
        """Where `parts` really is (links resolved), or None when missing or outside the root."""
        h = self._handle(parts, follow=True)
        if h is None:
            return None
        os.close(h[0])
        return Path(h[1])

    def exists(self, *parts: str) -> bool:
        return self.realpath(*parts) is not None

    def relative(self, real: Path) -> tuple[str, ...] | None:
        """Components of `real` below the (real) root, or None when outside it."""
        try:
            return real.relative_to(self.real_root).parts
        except ValueError:
            return None

    # ------------------------------------------------------------------------------- reads

    def read_bytes(self, *parts: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
        """Contents of a regular file of at most `limit` bytes, else None."""
        h = self._handle(parts, follow=False) if parts else None
        if h is None:
            return None
        pfd = h[0]
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode):
                return None
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
            fd = os.open(f"{_SELF_FD}{pfd}", flags)
        except OSError:
            return None
        finally:
            os.close(pfd)
        try:
            st2 = os.fstat(fd)
            if not stat.S_ISREG(st2.st_mode) or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
                return None
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, limit + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError:
            return None
        finally:
            os.close(fd)
        if size > limit:
            log.warning("%s: larger than %d bytes; ignored", self.path(*parts), limit)
            return None
        return b"".join(chunks)

    def read(self, *parts: str, limit: int = MAX_FILE_BYTES) -> str | None:
        """Stripped text of a file (UTF-8, undecodable bytes replaced), or None."""
        data = self.read_bytes(*parts, limit=limit)
        return None if data is None else data.decode("utf-8", errors="replace").strip()

    def read_int(self, *parts: str, base: int = 10, bounds: tuple[int, int] = S64) -> int | None:
        """A file holding one integer within `bounds` (strict: see `parse_int`), else None."""
        text = self.read(*parts, limit=64)
        return None if text is None else parse_int(text, bounds[0], bounds[1], base)

    def listdir(self, *parts: str, limit: int = MAX_DIR_ENTRIES) -> list[str]:
        """Sorted names in a directory inside the root; [] when missing, outside or too big."""
        h = self._handle(parts, follow=True)
        if h is None:
            return []
        pfd = h[0]
        try:
            if not stat.S_ISDIR(os.fstat(pfd).st_mode):
                return []
            fd = os.open(f"{_SELF_FD}{pfd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return []
        finally:
            os.close(pfd)
        names: list[str] = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if len(names) >= limit:
                        log.warning("%s: more than %d entries; ignored", self.path(*parts), limit)
                        return []
                    names.append(entry.name)
        except OSError:
            return []
        finally:
            os.close(fd)
        return sorted(names)

    def link_name(self, *parts: str) -> str | None:
        """Basename of a symlink's target (e.g. a `driver` link), or None."""
        if not parts or not component_ok(parts[-1]):
            return None
        h = self._handle(parts[:-1], follow=True)
        if h is None:
            return None
        try:
            target = os.readlink(parts[-1], dir_fd=h[0])
        except OSError:
            return None
        finally:
            os.close(h[0])
        name = os.path.basename(target)
        return name if component_ok(name) else None

    def is_dir(self, *parts: str) -> bool:
        h = self._handle(parts, follow=True)
        if h is None:
            return False
        try:
            return stat.S_ISDIR(os.fstat(h[0]).st_mode)
        except OSError:
            return False
        finally:
            os.close(h[0])
