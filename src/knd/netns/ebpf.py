"""Detach eBPF programs from an interface in the pod netns (`disableEbpfPrograms`).

TC: every `bpf` classifier on the clsact ingress and egress hooks is deleted (netlink, through
the pod-side handle). TCX (kernel ≥ 6.6): every program on the TCX ingress/egress hooks is
detached, through its bpf link when it has one (BPF_LINK_DETACH) or directly
(BPF_PROG_DETACH); this uses bpf(2) with an ifindex, so it runs on the pod's NetnsWorker.
Both return descriptions of what was detached, e.g. `tc/ingress/bpf prio 1`,
`tcx/egress/link 12 prog 40`. Note that TC qdiscs (and their filters) do not survive a netns
move, so in practice TC state found in the pod was added there after the move.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from knd.host.bpf import (
    ATTR_SIZE,
    BPF_LINK_GET_FD_BY_ID,
    BPF_PROG_DETACH,
    BPF_PROG_GET_FD_BY_ID,
    TCX_HOOKS,
    bpf,
    fd_by_id,
    tcx_query,
)
from knd.netns.rtnl import is_missing

TC_H_INGRESS = 0xFFFFFFF2  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
TC_H_EGRESS = 0xFFFFFFF3
HOOKS = (("ingress", TC_H_INGRESS), ("egress", TC_H_EGRESS))


def detach_tc_programs(ipr: Any, index: int) -> tuple[str, ...]:
    """Delete TC bpf filters on ingress/egress of `index`; return what was removed."""
    removed: list[str] = []
    for hook, parent in HOOKS:
        try:
            filters = list(ipr.get_filters(index=index, parent=parent))
        except NetlinkError as exc:
            if is_missing(exc) or exc.code == 22:
                continue
            raise
        infos: set[int] = set()
        for f in filters:
            if f.get_attr("TCA_KIND") == "bpf":
                infos.add(int(f["info"]))  # priority << 16 | protocol: one filter chain
        for info in sorted(infos):
            prio = info >> 16
            try:
                ipr.tc("del-filter", index=index, parent=parent, info=info)
            except NetlinkError as exc:
                if not is_missing(exc):
                    raise
            removed.append(f"tc/{hook}/bpf prio {prio}")
    return tuple(removed)


# ------------------------------------------------------------------------------------ TCX
# The bpf(2) primitives live in knd.host.bpf (discovery reads TCX programs too).

BPF_PROG_LOAD = 5
BPF_LINK_CREATE = 28
BPF_LINK_DETACH = 34
BPF_PROG_TYPE_SCHED_CLS = 3


def detach_tcx_programs(ifindex: int) -> tuple[str, ...]:
    """Detach every TCX program on ingress/egress of `ifindex`; must run inside the netns of
    the interface (a NetnsWorker). A kernel without TCX reports nothing."""
    removed: list[str] = []
    for hook, attach_type in TCX_HOOKS:
        try:
            entries = tcx_query(ifindex, attach_type)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENODEV):
                continue
            raise
        for prog_id, link_id in entries:
            if link_id:
                fd = fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id)
                try:
                    attr = ctypes.create_string_buffer(ATTR_SIZE)
                    struct.pack_into("=I", attr, 0, fd)
                    bpf(BPF_LINK_DETACH, attr)
                finally:
                    os.close(fd)
                removed.append(f"tcx/{hook}/link {link_id} prog {prog_id}")
            else:
                fd = fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)
                try:
                    attr = ctypes.create_string_buffer(ATTR_SIZE)
                    struct.pack_into("=III", attr, 0, ifindex, fd, attach_type)
                    bpf(BPF_PROG_DETACH, attr)
                finally:
                    os.close(fd)
                removed.append(f"tcx/{hook}/prog {prog_id}")
    return tuple(removed)


def load_accept_all_sched_cls(name: str = "") -> int:
    """Load a two-instruction SCHED_CLS program (`r0 = 0; exit`) named `name` (at most 15
    ASCII characters) → prog fd (for tests)."""
    insns = ctypes.create_string_buffer(bytes.fromhex("b7000000000000009500000000000000"), 16)
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=II", attr, 0, BPF_PROG_TYPE_SCHED_CLS, 2)
    struct.pack_into("=QQ", attr, 8, ctypes.addressof(insns), ctypes.addressof(license_))
    struct.pack_into("=16s", attr, 48, name.encode("ascii")[:15])  # prog_name
    return bpf(BPF_PROG_LOAD, attr)


def tcx_link_create(prog_fd: int, ifindex: int, attach_type: int) -> int:
    """BPF_LINK_CREATE for a TCX hook → link fd (for tests)."""
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into("=IIII", attr, 0, prog_fd, ifindex, attach_type, 0)
    return bpf(BPF_LINK_CREATE, attr)
