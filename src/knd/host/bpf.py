"""bpf(2) by hand (ctypes), read side: which TCX programs are attached to a link, and their names.

Command numbers are positions in `enum bpf_cmd`, attach types in `enum bpf_attach_type`, and the
offsets those of `union bpf_attr` and `struct bpf_prog_info` (include/uapi/linux/bpf.h).
Everything here takes an ifindex, so it answers for the network namespace of the calling thread.

`tcx_programs(indexes)` is what discovery publishes as `dra.net/tcxProgramNames` and
`dra.net/ebpf`; it never raises: a kernel without TCX (< 6.6), a process without CAP_BPF, or
a program that went away between query and lookup simply yield no names. Budget: two
BPF_PROG_QUERY calls per link (~5 µs each) plus two calls per attached program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import platform
import struct

BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_LINK_GET_FD_BY_ID = 30
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
ATTR_SIZE = 128
MAX_PROGS = 64
PROG_INFO_SIZE = 232  # struct bpf_prog_info up to and past `name` (the kernel fills what fits)
PROG_INFO_NAME = 64  # offsetof(struct bpf_prog_info, name); BPF_OBJ_NAME_LEN = 16
TCX_HOOKS = (("ingress", BPF_TCX_INGRESS), ("egress", BPF_TCX_EGRESS))
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
#: errnos meaning "no TCX here" (old kernel, no such device, no permission): report nothing.
_ABSENT = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENODEV, errno.EPERM})


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """Raw bpf(2); OSError on failure."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf(2) number unknown for {platform.machine()}")
    ret = int(_libc().syscall(nr, cmd, attr, ctypes.c_uint(ctypes.sizeof(attr))))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def tcx_query(ifindex: int, attach_type: int) -> list[tuple[int, int]]:
    """(program id, link id) pairs attached to a TCX hook (link id 0: attached without link)."""
    prog_ids = (ctypes.c_uint32 * MAX_PROGS)()
    link_ids = (ctypes.c_uint32 * MAX_PROGS)()
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=IIII", attr, 0, ifindex, attach_type, 0, 0)
    struct.pack_into("=QI", attr, 16, ctypes.addressof(prog_ids), MAX_PROGS)
    struct.pack_into("=Q", attr, 40, ctypes.addressof(link_ids))
    bpf(BPF_PROG_QUERY, attr)
    (count,) = struct.unpack_from("=I", attr, 24)
    return [(prog_ids[i], link_ids[i]) for i in range(min(count, MAX_PROGS))]


def fd_by_id(cmd: int, ident: int) -> int:
    """BPF_PROG_GET_FD_BY_ID / BPF_LINK_GET_FD_BY_ID → a new fd (the caller closes it)."""
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=I", attr, 0, ident)
    return bpf(cmd, attr)


def prog_name(prog_id: int) -> str:
    """The name a program was loaded with (may be empty); OSError if it is gone."""
    fd = fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)
    try:
        info = ctypes.create_string_buffer(PROG_INFO_SIZE)
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("=IIQ", attr, 0, fd, PROG_INFO_SIZE, ctypes.addressof(info))
        bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
        raw = info.raw[PROG_INFO_NAME : PROG_INFO_NAME + 16]
        return raw.split(b"\0", 1)[0].decode("ascii", "replace")
    finally:
        os.close(fd)


def tcx_programs(indexes: list[int]) -> dict[int, tuple[str, ...]]:
    """For each link with TCX programs on ingress/egress: their sorted names (empty names are
    left out, so the tuple may be empty while programs are attached)."""
    out: dict[int, tuple[str, ...]] = {}
    for index in indexes:
        names: set[str] = set()
        attached = False
        for _hook, attach_type in TCX_HOOKS:
            try:
                entries = tcx_query(index, attach_type)
            except OSError as exc:
                if exc.errno in _ABSENT and exc.errno != errno.ENODEV:
                    return out  # no TCX on this kernel, or no permission: stop asking
                continue  # the link went away meanwhile
            for prog_id, _link_id in entries:
                attached = True
                try:
                    name = prog_name(prog_id)
                except OSError:
                    continue  # detached meanwhile
                if name:  # an unnamed program still makes `dra.net/ebpf` true
                    names.add(name)
        if attached:
            out[index] = tuple(sorted(names))
    return out
