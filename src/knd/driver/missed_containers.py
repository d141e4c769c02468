"""Containers that never reached knd's CreateContainer, caught up at NRI Synchronize.

When a hook outlives the runtime's request timeout (2 s by default), NRI's adaptation takes
the missing answer as a yes, closes knd's connection and goes on. Containers created before
knd reconnects get none of knd's CreateContainer adjustments; so do the containers of a pod
that started while knd was down. The reconnect's Synchronize lists every container with the
cpuset and device nodes it really has; `catch_up` compares them with the pod's plans:

1. CPUs (`numa.alignCpus`): the CreateContainer rules (knd.driver.numa_cpus) applied to the
   cpuset the container has now, answered as a ContainerUpdate with the cpuset and memory
   nodes (the runtime rewrites the live cgroup). Idempotent: a container knd narrowed already
   has a cpuset that is not every online CPU, which rule 2 leaves alone; an update is returned
   only when its cpuset is strictly narrower than the container's.
   No overlap cannot fail a container that exists: it is reported and left as it is.
2. RDMA char devices cannot be added to an existing container (NRI updates only resources):
   each container missing one is reported, so the operator (or the pod's owner) restarts it;
   its next CreateContainer adds them.

Only containers that exist (created, paused or running) are looked at. Pure; microseconds per
container.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from knd.driver.numa_cpus import NoOverlapError, narrow
from knd.host.numa import parse_cpulist
from knd.netns.plan import AttachPlan
from knd.nri.types import ContainerInfo, ContainerUpdate, PodInfo

#: nri ContainerState values of a container that exists: CREATED, PAUSED, RUNNING.
LIVE_STATES = frozenset({1, 2, 3})


@dataclass(frozen=True)
class Finding:
    """One container that missed knd's CreateContainer: the update to send (None: nothing
    the runtime can change), the device nodes it lacks, and a sentence for the log."""

    container: ContainerInfo
    update: ContainerUpdate | None
    missing_devices: tuple[str, ...]
    message: str


def catch_up(
    pod: PodInfo, plans: Sequence[AttachPlan], containers: Sequence[ContainerInfo]
) -> list[Finding]:
    """The findings for the live containers of `pod` (see the module docstring)."""
    placements = [p.placement for p in plans if p.placement is not None]
    rdma = sorted({d.path for p in plans if p.rdma is not None for d in p.rdma.char_devices})
    out: list[Finding] = []
    for c in containers:
        if c.pod_sandbox_id != pod.id or c.state not in LIVE_STATES:
            continue
        who = f"container {c.name} of pod {pod.namespace}/{pod.name}"
        notes: list[str] = []
        update: ContainerUpdate | None = None
        if placements:
            try:
                decision = narrow(c.cpus, c.mems, placements)
            except NoOverlapError as exc:
                notes.append(f"{exc}; left as it is")
            else:
                online = set().union(*(p.online_cpus for p in placements))
                if _narrows(c.cpus, decision.cpus, online):
                    update = ContainerUpdate(c.id, decision.cpus, decision.mems)
                    notes.append(
                        f"cpuset {c.cpus or 'unset'} -> {decision.cpus or 'unchanged'}, "
                        f"mems {c.mems or 'unset'} -> {decision.mems or 'unchanged'} "
                        f"({decision.reason})"
                    )
        have = set(c.devices)
        missing = tuple(path for path in rdma if path not in have)
        if missing:
            notes.append(
                f"RDMA device(s) {', '.join(missing)} missing: a running container cannot "
                "get device nodes; restart it to get them"
            )
        if notes:
            out.append(Finding(c, update, missing, f"{who}: " + "; ".join(notes)))
    return out


def _narrows(given: str, wanted: str | None, online: set[int]) -> bool:
    """Whether cpuset `wanted` is narrower than the container's `given` ("" = every online
    CPU). Memory nodes follow the CPUs: they change only with a cpuset that narrows."""
    if wanted is None:
        return False
    have = set(parse_cpulist(given) or ()) or online
    return set(parse_cpulist(wanted) or ()) < have
