"""Window results: what one target sent and got back in one window, and its statistics.

Windows: a probe belongs to the window its *scheduled* time falls in; windows are aligned to
UTC multiples of the window length (the first one is partial). A window is closed once its
last probe has had ``timeout`` to answer. Per target and window (`WindowResult`):

- min, p50, p95, p99, max of the replies' RTTs: exact percentiles over the window's replies,
  linear interpolation between closest ranks (numpy's default); NaN without a reply.
- loss ratio: (sent - unique sequence numbers answered within the timeout) / sent. A reply
  after the timeout is *late* and counts as lost. A probe that could not be sent (an error
  on ``sendto``, a refused connection) counts as sent and lost.
- jitter: RFC 3550's interarrival estimator ``J += (|D| - J) / 16``, D the difference of
  consecutive replies' RTTs in arrival order. It runs continuously across windows as RTP's
  does (no restart bias at each window), and the window reports its mean over the window's
  replies: its value at one instant reflects only the last ~16 replies, so one late outlier
  would swing a window's figure.
- route inflation: window minimum RTT / the link's fiber minimum. NaN where the fiber minimum
  is below `MIN_FIBER_RTT_S` (1 µs, 100 m of fiber: loopback and same-building tests), where
  the ratio would be meaningless, and in windows without a reply.
- replies within budget: replies whose RTT <= the link's tier budget (``budget_seconds``),
  the count that lets any longer window's p95 over every probe be judged against the budget
  (sums of counts merge; percentiles do not).
- duplicates (a second reply to one sequence number), reordered (a reply whose sequence
  number is below the highest already answered, RFC 4737's notion) and late replies are
  counted on the `WindowResult`, logged, and written as the window's fields of those names.

The cumulative histogram per target uses smokeping_prober's buckets (`BUCKETS`: 50 µs x 2^k,
k = 0..19, then +Inf) over the replies within the timeout, so ``requests_total -
rtt_seconds_count`` is the loss since start, as smokeping's requests minus responses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from computewatch.collectors.latency._targets import ProbeTarget
from computewatch.samples import Sample

__all__ = ["BUCKETS", "LE", "MIN_FIBER_RTT_S", "WindowResult", "percentile"]

BUCKETS: tuple[float, ...] = tuple(50e-6 * 2**k for k in range(20))
"""Histogram upper bounds in seconds, smokeping_prober's: 50 µs x 2^k up to 26.2144 s."""
LE = (*(repr(b) for b in BUCKETS), "+Inf")  # 5e-05, 0.0001, ... as Go's %g writes them

MIN_FIBER_RTT_S = 1e-6
"""Below this fiber minimum (100 m) route inflation is NaN: the ratio would only measure the
equipment, not the route."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    h = (n - 1) * q
    lo = int(h)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One target's window: what it sent, what came back, and the statistics of the RTTs."""

    target: ProbeTarget
    start: datetime
    end: datetime
    sent: int
    received: int
    late: int
    duplicates: int
    reordered: int
    rtt_min_s: float
    rtt_p50_s: float
    rtt_p95_s: float
    rtt_p99_s: float
    rtt_max_s: float
    jitter_s: float
    rtts: tuple[float, ...] = field(repr=False)
    """The replies' RTTs in seconds, sorted: the data behind the statistics."""

    @property
    def loss_ratio(self) -> float:
        return (self.sent - self.received) / self.sent if self.sent else math.nan

    @property
    def budget_s(self) -> float:
        return self.target.budget_rtt_s

    @property
    def route_inflation(self) -> float:
        fiber = self.target.fiber_min_rtt_s
        return self.rtt_min_s / fiber if fiber >= MIN_FIBER_RTT_S else math.nan

    @property
    def replies_within_budget(self) -> int:
        """Probes answered within the tier budget (RTT <= budget). With ``sent`` it gives the
        share of probes within budget, which sums over windows and directions, so a longer
        window's p95 over every probe is over budget exactly when fewer than 95% of its
        probes were answered within it (lost and late probes never are)."""
        return sum(1 for rtt in self.rtts if rtt <= self.budget_s)

    @property
    def within_budget(self) -> bool:
        """p95 RTT within the tier budget (the national summary's test); False without a
        reply. Pipelines apply their own rule to the stored percentiles."""
        return self.rtt_p95_s <= self.budget_s

    def to_samples(self) -> list[Sample]:
        """The window's ``link_latency`` samples, stamped with the window's end."""
        lab = self.target.labels
        values = (
            ("rtt_min_seconds", self.rtt_min_s), ("rtt_p50_seconds", self.rtt_p50_s),
            ("rtt_p95_seconds", self.rtt_p95_s), ("rtt_p99_seconds", self.rtt_p99_s),
            ("rtt_max_seconds", self.rtt_max_s), ("loss_ratio", self.loss_ratio),
            ("jitter_seconds", self.jitter_s), ("samples", float(self.sent)),
            ("replies_within_budget", float(self.replies_within_budget)),
            ("fiber_min_seconds", self.target.fiber_min_rtt_s),
            ("budget_seconds", self.budget_s), ("route_inflation", self.route_inflation),
            ("late", float(self.late)), ("duplicates", float(self.duplicates)),
            ("reordered", float(self.reordered)),
        )
        return [Sample.of(f"link_latency.{f}", v, lab, self.end) for f, v in values]
