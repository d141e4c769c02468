"""Errors of the API-server transport: `ApiError` (any failed call, HTTP status kept) with
`ConflictError` (409: stale resourceVersion or failed precondition, retry after re-reading) and
`NotFoundError` (404). The underlying client exception is chained as the cause."""

from __future__ import annotations


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"API error {status}: {message}")


class ConflictError(ApiError):
    """HTTP 409: the object changed since it was read (transient; re-read and retry)."""


class NotFoundError(ApiError):
    """HTTP 404."""


def for_status(status: int, message: str) -> ApiError:
    if status == 409:
        return ConflictError(status, message)
    if status == 404:
        return NotFoundError(status, message)
    return ApiError(status, message)
