"""Errors of the NRI transport and plugin.

Tree:
    NriError
    ├── ProtocolError      malformed / truncated / oversized / out-of-order input from the peer;
    │                      the connection that carried it is closed (logged), the daemon goes on
    ├── ConnectionClosedError   the trunk closed; every outstanding call fails with it
    ├── CallError          a ttrpc call we made was answered with a non-OK status (code, message)
    └── HookError          a hook refuses the event; its message is returned to the runtime as a
                           ttrpc status (RunPodSandbox: the runtime fails the sandbox)
"""

from __future__ import annotations


class NriError(Exception):
    """Base of every knd.nri error."""


class ProtocolError(NriError):
    """The peer sent bytes that violate the mux/ttrpc/protobuf wire format."""


class ConnectionClosedError(NriError):
    """The NRI connection is gone (peer closed, protocol error, or local close)."""


class CallError(NriError):
    """A ttrpc call returned a non-OK status."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"ttrpc status {code}: {message}")


class HookError(NriError):
    """Raised by a hook handler to fail the runtime operation with `code` (default UNKNOWN)."""

    def __init__(self, message: str, code: int = 2) -> None:
        self.code = code
        super().__init__(message)
