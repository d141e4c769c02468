"""Errors of the API-server transport: `ApiError` (any failed call, HTTP status kept) with
`ConflictError` (409: stale resourceVersion or failed precondition, retry after re-reading) and
`NotFoundError` (404). `message` is the server's own (the `Status.message`), `request` the call
("GET /path") it answered; the underlying transport exception is chained as the cause."""

from __future__ import annotations


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, request: str = "") -> None:
        self.status = status
        self.message = message
        self.request = request
        where = f" ({request})" if request else ""
        super().__init__(f"API error {status}{where}: {message}")


class ConflictError(ApiError):
    """HTTP 409: the object changed since it was read (transient; re-read and retry)."""


class NotFoundError(ApiError):
    """HTTP 404."""


def for_status(status: int, message: str, request: str = "") -> ApiError:
    if status == 409:
        return ConflictError(status, message, request)
    if status == 404:
        return NotFoundError(status, message, request)
    return ApiError(status, message, request)
