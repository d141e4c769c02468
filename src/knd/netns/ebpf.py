"""Detach eBPF programs from an interface in the pod netns (`disableEbpfPrograms`).

TC: every `bpf` classifier on the clsact ingress and egress hooks is deleted (netlink, through
the pod-side handle). Returns descriptions of what was detached, e.g. `tc/ingress/bpf prio 1`.
"""

from __future__ import annotations

from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

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
