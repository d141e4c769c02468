"""Bounded reads of files named by an operator (config files, kubeconfigs, pci.ids, tokens).

Unlike `knd.host.confined` these paths are not confined to a root (the operator chose them), but
the same rules hold: only a regular file is read (checked on the open descriptor, opened
non-blocking, so a FIFO or device named by mistake or malice neither hangs nor floods the
process), and at most `limit` bytes: a larger file is an error, not a truncated read.
"""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path


class FileReadError(OSError):
    """The file is missing, not a regular file, unreadable or over the limit; says which."""


def read_bounded(path: str | Path, limit: int, *, pipe_idle_s: float | None = None) -> bytes:
    """All bytes of the regular file `path`, which must be at most `limit` bytes.

    With `pipe_idle_s`, an anonymous pipe is read too (the `<(kubectl get ...)` an operator names
    on a command line), still bounded by `limit`, and given up when no byte arrives for
    `pipe_idle_s` seconds, so a writer that never writes cannot hang the reader. A named FIFO is
    always refused: nothing guarantees a writer will ever come.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise FileReadError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        pipe = pipe_idle_s is not None and stat.S_ISFIFO(mode) and _anonymous_pipe(fd)
        if not (stat.S_ISREG(mode) or pipe):
            raise FileReadError(f"{path}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            if pipe and not select.select([fd], [], [], pipe_idle_s)[0]:
                raise FileReadError(f"{path}: no data for {pipe_idle_s:g} s")
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


def _anonymous_pipe(fd: int) -> bool:
    """True when `fd` is a pipe with no name in any filesystem (a shell's process substitution)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:[")
    except OSError:
        return False
