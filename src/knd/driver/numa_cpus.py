"""`numa.alignCpus` at CreateContainer: narrow a container's cpuset (and memory nodes) to the
NUMA nodes of its pod's claimed NICs. Pure; the hook calls it with what the runtime sent.

Rules (docs/nri.md, "NUMA-aligned CPUs"):
1. Only narrow: the result is always a subset of what the container was given; never widened.
2. Never fight the static CPU manager: the kubelet pins cpusets (exclusive CPUs, and the shared
   pool under the static policy, which it re-applies on its own schedule). A container whose
   cpuset is set and is not every online CPU is left as it is, and the hook says so in the log.
   An empty cpuset or one equal to all online CPUs (CPU manager policy `none`) is narrowed.
3. The target CPUs are the union of the placements' CPUs (several NICs on several nodes widen
   the target, never the container), intersected with what the container was given.
4. Empty intersection: `onNoOverlap: error` (default) fails CreateContainer with a message
   naming the NUMA nodes and both CPU sets; `keep` leaves cpuset and mems as they are. A
   container never gets an empty cpuset.
5. Memory nodes: the placements' nodes intersected with the container's `mems` (empty = any);
   when that intersection is empty the mems are left as they are (CPUs still narrowed).
Cost: set arithmetic on at most a few thousand CPU numbers, microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from knd.host.numa import format_cpulist, parse_cpulist
from knd.netns.plan import CpuPlacement


class NoOverlapError(Exception):
    """The container's CPUs and the NICs' NUMA CPUs do not overlap (`onNoOverlap: error`)."""


@dataclass(frozen=True)
class Narrowed:
    """The decision for one container: `cpus`/`mems` to set (None: leave), and why."""

    cpus: str | None
    mems: str | None
    reason: str


def narrow(given_cpus: str, given_mems: str, placements: Sequence[CpuPlacement]) -> Narrowed:
    """Apply the module's rules. Raises NoOverlapError (rule 4, `error`)."""
    if not placements:
        return Narrowed(None, None, "no device with a NUMA node asked for alignment")
    online = set().union(*(p.online_cpus for p in placements))
    target = set().union(*(p.cpus for p in placements))
    nodes = set().union(*(p.nodes for p in placements))
    given = parse_cpulist(given_cpus)
    if given is None:
        return Narrowed(None, None, f"cpuset {given_cpus!r} is not a CPU list: left as it is")
    if given and set(given) != online:
        return Narrowed(
            None,
            None,
            f"cpuset {given_cpus} was set by the kubelet (CPU manager): left as it is",
        )
    base = set(given) or online
    cpus = base & target
    if not cpus:
        message = (
            f"numa.alignCpus: the CPUs of NUMA node(s) {format_cpulist(nodes)} "
            f"({format_cpulist(target)}) and the container's CPUs ({format_cpulist(base)}) "
            "do not overlap"
        )
        if any(p.on_no_overlap == "error" for p in placements):
            raise NoOverlapError(message)
        return Narrowed(None, None, message + "; onNoOverlap is keep: left as it is")
    mems: str | None = None
    given_nodes = parse_cpulist(given_mems)
    if given_nodes is not None:
        keep = (set(given_nodes) & nodes) if given_nodes else nodes
        mems = format_cpulist(keep) if keep else None
    return Narrowed(
        format_cpulist(cpus), mems, f"NUMA node(s) {format_cpulist(nodes)} of the claimed NICs"
    )
