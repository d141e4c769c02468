"""The one NRI event table: which events knd subscribes to, how each reaches its hook, and what
a failing hook does to the runtime's call.

One row per event, three columns that used to be kept in agreement by hand:
* `method`: the wire name of the event's dedicated ttrpc method (NRI v0.12+; older runtimes send
  the pod events as `StateChange` with the `Event` number), also the hook timer's label;
* `call`: the `NriHandler` method the event reaches;
* `failure`: `FAIL_RUNTIME` (the hook's exception becomes the call's error: the sandbox or the
  container is not created) or `LOG_AND_SUCCEED` (logged and counted, answered with success:
  a stop or a removal must never be refused).

From the table come the subscription (`DEFAULT_EVENTS`, and `check_subscription`, which refuses
an event without a row, as the NRI stub refuses to subscribe to an event it has no handler for),
the method routes of `knd.nri.plugin`, and the StateChange dispatch. Synchronize is not an event
(no mask bit): its policy, log and succeed, is `SYNCHRONIZE_FAILURE`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from knd.nri.events import Event
from knd.nri.handler import NriHandler
from knd.nri.types import PodInfo


class Failure(enum.Enum):
    """What a failing hook does to the runtime's call."""

    FAIL_RUNTIME = "fail the runtime"
    LOG_AND_SUCCEED = "log and succeed"


#: A hook taking the pod only (the pod lifecycle events).
PodHook = Callable[[NriHandler, PodInfo], None]


@dataclass(frozen=True, slots=True)
class EventRoute:
    event: Event
    method: str
    failure: Failure
    #: The pod hook; None for CreateContainer, whose hook also takes the container and answers
    #: with an adjustment (the plugin calls it through its own path).
    call: PodHook | None


# The handler's own bound methods are looked up per call (a Protocol's function would be the
# Protocol's empty body, not the implementation's).
def _run(handler: NriHandler, pod: PodInfo) -> None:
    handler.run_pod_sandbox(pod)


def _stop(handler: NriHandler, pod: PodInfo) -> None:
    handler.stop_pod_sandbox(pod)


def _remove(handler: NriHandler, pod: PodInfo) -> None:
    handler.remove_pod_sandbox(pod)


EVENT_TABLE: tuple[EventRoute, ...] = (
    EventRoute(Event.RUN_POD_SANDBOX, "RunPodSandbox", Failure.FAIL_RUNTIME, _run),
    EventRoute(Event.STOP_POD_SANDBOX, "StopPodSandbox", Failure.LOG_AND_SUCCEED, _stop),
    EventRoute(Event.REMOVE_POD_SANDBOX, "RemovePodSandbox", Failure.LOG_AND_SUCCEED, _remove),
    EventRoute(Event.CREATE_CONTAINER, "CreateContainer", Failure.FAIL_RUNTIME, None),
)

SYNCHRONIZE_FAILURE = Failure.LOG_AND_SUCCEED

BY_EVENT: dict[Event, EventRoute] = {r.event: r for r in EVENT_TABLE}
BY_METHOD: dict[str, EventRoute] = {r.method: r for r in EVENT_TABLE}
#: Every event with a row: what knd subscribes to unless told otherwise.
DEFAULT_EVENTS: frozenset[Event] = frozenset(BY_EVENT)


def check_subscription(events: Iterable[Event]) -> frozenset[Event]:
    """`events` as a set; ValueError naming any event without a row (it would be subscribed to
    and then acknowledged without ever reaching a hook)."""
    chosen = frozenset(events)
    unrouted = sorted(e.name for e in chosen - DEFAULT_EVENTS)
    if unrouted:
        raise ValueError(f"NRI events without a handler cannot be subscribed: {unrouted}")
    return chosen
