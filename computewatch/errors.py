"""Errors the core packages share, defined below all of them.

`StoreError` is raised by the stores (`computewatch.store`) and by what they are built on,
the line-protocol package (`computewatch.lineprotocol`: store URLs, the HTTP writer), so it
lives here and neither has to import the other to raise or catch it. Callers import it from
`computewatch.store`, as before.
"""

from __future__ import annotations

__all__ = ["StoreError"]


class StoreError(RuntimeError):
    """A store could not be opened, written or queried; the message names the URL."""
