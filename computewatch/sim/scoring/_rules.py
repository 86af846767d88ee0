"""What every matcher shares: the score of one rule, the matcher's signature, and the
comparisons of a finding's window with the truth's intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth

__all__ = ["Matcher", "RuleScore", "covered_share", "overlap", "overlaps"]


@dataclass(frozen=True, slots=True)
class RuleScore:
    """How one rule's findings compare with what the simulator made so.

    ``true_positives``: truth items the rule found; ``false_negatives``: truth items it
    missed; ``false_positives``: findings that name nothing the truth states. A finding that
    matches an item already found is neither (a second finding of one fact is no new claim,
    and no false one). ``missed`` and ``wrong`` describe the misses and the false findings,
    one line each, for a person reading the score.
    """

    rule: str
    true_positives: int
    false_positives: int
    false_negatives: int
    missed: tuple[str, ...] = ()
    wrong: tuple[str, ...] = ()

    @property
    def expected(self) -> int:
        """Truth items the rule had to find."""
        return self.true_positives + self.false_negatives

    @property
    def recall(self) -> float:
        """Share of the truth items found; NaN when the truth states nothing for the rule."""
        return self.true_positives / self.expected if self.expected else math.nan

    @property
    def precision(self) -> float:
        """Share of the claims that were true; NaN when the rule claimed nothing."""
        claims = self.true_positives + self.false_positives
        return self.true_positives / claims if claims else math.nan


Matcher = Callable[[Sequence[Finding], GroundTruth, Period], RuleScore]
"""``match(findings, truth, period) -> RuleScore``: scores the findings of the one rule it
is registered under (the scorer hands it only those) over the analysed ``period``."""


def overlap(start: datetime, end: datetime, lo: datetime, hi: datetime) -> timedelta:
    """Length of [start, end) ∩ [lo, hi); zero when they do not meet."""
    return max(min(end, hi) - max(start, lo), timedelta(0))


def overlaps(f: Finding, lo: datetime, hi: datetime) -> bool:
    """True when the finding's window shares some time with [lo, hi)."""
    return overlap(f.start, f.end, lo, hi) > timedelta(0)


def covered_share(f: Finding, lo: datetime, hi: datetime) -> float:
    """Share of [lo, hi) that the finding's window covers (0 when [lo, hi) is empty)."""
    span = hi - lo
    return overlap(f.start, f.end, lo, hi) / span if span > timedelta(0) else 0.0
