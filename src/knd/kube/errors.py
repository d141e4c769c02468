"""Errors of the API-server transport, classified once by what the caller must do.

Every failed call raises an `ApiError` (HTTP status kept; 0 when the server was unreachable).
`message` is the server's own (the `Status.message`), `request` the call ("GET /path") it
answered; the underlying transport exception is chained as the cause.

`ApiError.action` says what the caller must do, decided here and nowhere else:

* `PERMANENT`: retrying the same request cannot help: a 4xx other than 409, 408 and 429 (a 422
  on a bad entry, a 404 for a deleted object, a 403 for a denied write), or a 409 from a failed
  `metadata.uid` precondition (the object was deleted and re-created under the same name).
  Writers drop the request at once, logged and counted.
* `CONFLICT`: a 409 from a stale resourceVersion: re-read the object, then retry.
* `RETRY`: the server or the path to it failed (unreachable, 408, 429, 5xx, a non-JSON answer):
  retry later, after `retry_after_s` when the server named a delay (`Retry-After`), else after
  the caller's backoff (`knd.driver.retry.Backoff`).

Subclasses by status, for callers that care which: `ConflictError` (409), `NotFoundError` (404),
`InvalidError` (422), `ThrottledError` (429).
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """What the caller of a failed API call must do."""

    PERMANENT = "permanent"
    CONFLICT = "conflict"
    RETRY = "retry"


#: A 409 whose message says this is a failed uid precondition, not a stale resourceVersion.
UID_PRECONDITION = "Precondition failed: UID"
_RETRIED_4XX = frozenset({408, 429})


def classify(status: int, message: str = "") -> Action:
    """The action for an answer with HTTP `status` (0: no answer) and the server's message."""
    if status == 409:
        return Action.PERMANENT if UID_PRECONDITION in message else Action.CONFLICT
    if 400 <= status < 500 and status not in _RETRIED_4XX:
        return Action.PERMANENT
    return Action.RETRY


class ApiError(RuntimeError):
    def __init__(
        self, status: int, message: str, request: str = "", retry_after_s: float | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.request = request
        self.retry_after_s = retry_after_s
        self.action = classify(status, message)
        where = f" ({request})" if request else ""
        super().__init__(f"API error {status}{where}: {message}")

    @property
    def permanent(self) -> bool:
        return self.action is Action.PERMANENT


class ConflictError(ApiError):
    """HTTP 409: the object changed since it was read (re-read and retry), or a failed uid
    precondition (`action` PERMANENT)."""


class NotFoundError(ApiError):
    """HTTP 404 (permanent for the request that got it)."""


class InvalidError(ApiError):
    """HTTP 422: the server's validation refused the object (permanent)."""


class ThrottledError(ApiError):
    """HTTP 429: too many requests; retry after `retry_after_s` or the backoff."""


_BY_STATUS: dict[int, type[ApiError]] = {
    404: NotFoundError,
    409: ConflictError,
    422: InvalidError,
    429: ThrottledError,
}


def for_status(
    status: int, message: str, request: str = "", retry_after_s: float | None = None
) -> ApiError:
    """The error for a non-2xx answer."""
    return _BY_STATUS.get(status, ApiError)(status, message, request, retry_after_s)
