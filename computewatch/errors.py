"""Errors the core packages share, defined below all of them.

`StoreError` is raised by the stores (`computewatch.store`) and by what they are built on,
the line-protocol package (`computewatch.lineprotocol`: store URLs, the HTTP writer), so it
lives here and neither has to import the other to raise or catch it. Callers import both from
`computewatch.store`, as before.

The command line maps them to exit codes: a `StoreURLError` (the store named is unusable as
written: a bad URL, a missing file) is bad input, exit code 2; any other `StoreError` (a store
that is unreachable, answers an error, refuses a write) is a failure while running, exit 1.
"""

from __future__ import annotations

__all__ = ["NotRolledUp", "StoreError", "StoreURLError"]


class StoreError(RuntimeError):
    """A store could not be opened, written or queried; the message names the URL."""


class StoreURLError(StoreError, ValueError):
    """The URL or path names no usable store (a bad scheme, host, port or parameter, a
    missing file): the input is wrong, not the store."""


class NotRolledUp(StoreError):
    """The period reaches where a store keeps rollups that hold no state for the aggregate
    asked (a server store's hourly records keep no quantile of a gauge): the caller may ask
    a mergeable stand-in instead (the RTT's histogram), or report it missing."""
