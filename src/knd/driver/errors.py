"""The engine's error tree.

* `ClaimError`: this claim cannot be prepared as it is; the message says which field or device
  and is returned to kubelet per claim and shown as a Warning Event on the claim.
* `TransientError`: the API server or a dependency failed; the claim fails this time, kubelet
  retries. (Also a ClaimError, so it is reported the same way.)
* `PermanentError`: the API server refused for good (`knd.kube.errors.Action.PERMANENT`: a 4xx
  other than 408/409/429, a failed uid precondition); writers drop the request instead of
  retrying it.
Fatal start-up errors are `knd.driver.store.StoreError` and socket errors.
"""


class ClaimError(Exception):
    """A per-claim failure with a message a user can act on."""


class TransientError(ClaimError):
    """A failure that may go away on retry (API server unreachable, timeouts, conflicts).
    `retry_after_s`: the delay the server asked for (Retry-After), when it named one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(ClaimError):
    """The API server refused the request for good (a 4xx other than 408, 409 and 429, or a
    failed `metadata.uid` precondition: the claim was deleted and re-created): never retried."""


class ClaimNotFoundError(ClaimError):
    """The claim does not exist in the API server."""
