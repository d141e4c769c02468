"""Bounded reads of files named by an operator (config files, kubeconfigs, pci.ids, tokens).

Unlike `knd.host.confined` these paths are not confined to a root (the operator chose them), but
the same rules hold: only a regular file is read (checked on the open descriptor, opened
non-blocking, so a FIFO or device named by mistake or malice neither hangs nor floods the
process), and at most `limit` bytes: a larger file is an error, not a truncated read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileReadError(OSError):
    """The file is missing, not a regular file, unreadable or over the limit; says which."""


def read_bounded(path: str | Path, limit: int) -> bytes:
    """All bytes of the regular file `path`, which must be at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise FileReadError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileReadError(f"{path}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except FileReadError:
        raise
    except OSError as exc:
        raise FileReadError(f"{path}: cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise FileReadError(f"{path}: larger than the {limit}-byte limit")
    return b"".join(chunks)
