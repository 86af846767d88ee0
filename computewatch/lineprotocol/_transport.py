"""The one writer interface that the stores and the agent's remote write both use.

A `Writer` posts one line-protocol body per call and makes exactly one attempt; whoever calls
it decides about retrying, from `WriteError.retryable`: the stores retry a few times with
backoff (`computewatch.store`), the agent's durable queue keeps the body on disk and tries
again later (`computewatch.collectors.export.remote`). `LineProtocolWriter` is the HTTP
implementation; tests pass their own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from computewatch.errors import StoreError

__all__ = ["WriteError", "Writer", "is_retryable_status"]


class WriteError(StoreError):
    """A write attempt failed; ``retryable`` says whether the same body may succeed later.

    Network errors, timeouts, 429 and 5xx are retryable; any other 4xx is not (the body or
    the credentials are wrong, and sending them again will not help). ``status`` is the HTTP
    status, or None when no response came back.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def is_retryable_status(status: int) -> bool:
    """429 (rate limited), 408 (request timeout) and every 5xx may succeed when sent again."""
    return status in (408, 429) or status >= 500


@runtime_checkable
class Writer(Protocol):
    """Posts line-protocol bodies somewhere, one attempt per `write`."""

    def write(self, body: bytes, precision: str = "ns") -> None:
        """Send one body; raise `WriteError` (with ``retryable``) when it was not taken."""
        ...

    def close(self) -> None: ...
