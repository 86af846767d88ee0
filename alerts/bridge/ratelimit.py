"""Per-target rate limits as sliding windows.

A token bucket refilled at 20 a minute still lets 39 messages through in one minute (a full
bucket, then the refill), and DingTalk mutes a robot for ten minutes past 20. A sliding
window log never allows more than ``messages`` sends in any span of ``per`` seconds, which is
how the chat tools count. Several windows can apply at once (Feishu: 5 a second and 100 a
minute).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """Blocks each send until every window has room; thread-safe."""

    def __init__(self, windows: Sequence[tuple[int, float]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.windows = [(int(n), float(per)) for n, per in windows]
        self._sent: list[deque[float]] = [deque() for _ in self.windows]
        self._clock = clock
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Seconds until a send would be allowed (0 when now)."""
        with self._lock:
            return self._delay(self._clock())

    def _delay(self, now: float) -> float:
        wait = 0.0
        for (limit, per), sent in zip(self.windows, self._sent, strict=True):
            while sent and sent[0] <= now - per:
                sent.popleft()
            if len(sent) >= limit:
                wait = max(wait, sent[0] + per - now)
        return wait

    def acquire(self, stop: threading.Event | None = None) -> tuple[bool, float]:
        """Wait for room and record a send; returns (acquired, seconds waited).

        Returns (False, waited) when ``stop`` is set while waiting."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._delay(now)
                if wait <= 0:
                    for sent in self._sent:
                        sent.append(now)
                    return True, waited
            if stop is not None:
                if stop.wait(wait):
                    return False, waited
            else:
                time.sleep(wait)
            waited += wait
