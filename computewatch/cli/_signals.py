"""Run a long-lived command until SIGINT or SIGTERM: one place for the signal handling of
the agent, the responder, `analyze --every` and the alert bridge (dcgm-exporter keeps it in
one file too, pkg/cmd/signals.go)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["run_until_signalled"]

T = TypeVar("T")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_until_signalled(body: Callable[[threading.Event], T], *,
                        duration_s: float | None = None) -> T:
    """Call ``body(stop)``; ``stop`` is set by SIGINT or SIGTERM, or after ``duration_s``.

    The body returns once it sees ``stop``; the previous signal handlers are restored after.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _SIGNALS}
    timer = None
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()
    try:
        return body(stop)
    finally:
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
