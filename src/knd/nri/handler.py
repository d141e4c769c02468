"""The contract between the NRI transport and whoever implements knd's hooks (knd.driver).

Time budget: the runtime bounds every call with its request timeout (default 2 s, sent in
ConfigureRequest.request_timeout) and processes one pod/container event at a time for all
plugins. A hook that misses the deadline does not fail the pod: the runtime silently closes
the plugin connection and continues without it (knd then reconnects, but the pod was started
without its NIC). So hooks only execute persisted plans: no API server call, no discovery scan,
no DHCP inside a hook.

Semantics the transport applies (the failure policies are data: `knd.nri.routes.EVENT_TABLE`):
* run_pod_sandbox: raising fails the sandbox (HookError's message and code reach the runtime;
  any other exception becomes code UNKNOWN).
* create_container: the returned ContainerAdjust (device nodes, de-duplicated by path) is sent
  back; raising fails the container creation.
* stop_pod_sandbox / remove_pod_sandbox: must not fail the runtime: exceptions are logged,
  counted (timing error), and the call is answered with success.
* synchronize: called once per connection with every pod and container the runtime has
  (chunked requests already joined); the returned ContainerUpdates (CPU and memory nodes of
  existing containers) are sent back in the response; exceptions are logged and answered with
  success and no update. A hook that missed the runtime's deadline cost knd its connection,
  and containers created before the reconnect never reached create_container: this is where
  they are caught up.
All hooks may repeat (same pod id) or arrive after a restart: they must be idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from knd.nri.types import ContainerAdjust, ContainerInfo, ContainerUpdate, PodInfo


class NriHandler(Protocol):
    def run_pod_sandbox(self, pod: PodInfo) -> None: ...

    def stop_pod_sandbox(self, pod: PodInfo) -> None: ...

    def remove_pod_sandbox(self, pod: PodInfo) -> None: ...

    def create_container(
        self, pod: PodInfo, container: ContainerInfo
    ) -> ContainerAdjust | None: ...

    def synchronize(
        self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]
    ) -> Sequence[ContainerUpdate]: ...


class NullHandler:
    """Does nothing; answers every hook with success (an idle plugin)."""

    def run_pod_sandbox(self, pod: PodInfo) -> None:
        return None

    def stop_pod_sandbox(self, pod: PodInfo) -> None:
        return None

    def remove_pod_sandbox(self, pod: PodInfo) -> None:
        return None

    def create_container(self, pod: PodInfo, container: ContainerInfo) -> ContainerAdjust | None:
        return None

    def synchronize(
        self, pods: Sequence[PodInfo], containers: Sequence[ContainerInfo]
    ) -> Sequence[ContainerUpdate]:
        return ()
