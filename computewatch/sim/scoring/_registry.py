"""The matchers by rule name, and the scorecard of one analysis against the ground truth."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pandas as pd

from computewatch.findings import Finding, Period
from computewatch.sim.incidents import GroundTruth
from computewatch.sim.scoring._rules import Matcher, RuleScore

__all__ = ["MATCHERS", "SCORE_COLUMNS", "Scorecard", "score"]


def _registry() -> dict[str, Matcher]:
    """Every module's ``MATCHERS``, merged; a rule claimed twice is a programming error."""
    # One module per pipeline, each exposing MATCHERS = {rule: matcher}: add a module to the
    # import and the tuple.
    from computewatch.sim.scoring import (
        _allocation,
        _anomaly,
        _latency,
        _pue,
        _surplus,
        _underuse,
    )

    merged: dict[str, Matcher] = {}
    for module in (_underuse, _allocation, _latency, _anomaly, _pue, _surplus):
        for rule, matcher in module.MATCHERS.items():
            if rule in merged:
                raise RuntimeError(f"rule {rule!r} has two matchers ({module.__name__})")
            merged[rule] = matcher
    return merged


MATCHERS: Mapping[str, Matcher] = MappingProxyType(_registry())
"""Every rule's matcher, by rule name (the ``rule`` of the findings it scores)."""

SCORE_COLUMNS = ["rule", "expected", "found", "missed", "false", "recall", "precision"]


@dataclass(frozen=True, slots=True)
class Scorecard:
    """Every registered rule's score, in registry order, and the findings of rules that no
    matcher scores (``unscored``: rule -> findings), which make the card incomplete."""

    scores: tuple[RuleScore, ...]
    unscored: Mapping[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every rule that produced a finding was scored."""
        return not self.unscored

    def rule(self, name: str) -> RuleScore:
        for s in self.scores:
            if s.rule == name:
                return s
        raise KeyError(f"no score for rule {name!r} (scored: "
                       f"{', '.join(s.rule for s in self.scores)})")

    def frame(self) -> pd.DataFrame:
        """One row per rule (`SCORE_COLUMNS`); recall and precision NaN where undefined."""
        return pd.DataFrame(
            [(s.rule, s.expected, s.true_positives, s.false_negatives, s.false_positives,
              s.recall, s.precision) for s in self.scores], columns=SCORE_COLUMNS)

    def to_dict(self) -> dict:
        """The scorecard as JSON-ready data (NaN as null), with the misses and false findings."""
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 4)

        return {
            "complete": self.complete,
            "unscored": dict(self.unscored),
            "rules": [{"rule": s.rule, "expected": s.expected, "found": s.true_positives,
                       "missed": s.false_negatives, "false": s.false_positives,
                       "recall": num(s.recall), "precision": num(s.precision),
                       "missed_items": list(s.missed), "false_findings": list(s.wrong)}
                      for s in self.scores],
        }


def score(findings: Iterable[Finding], truth: GroundTruth, period: Period, *,
          matchers: Mapping[str, Matcher] = MATCHERS) -> Scorecard:
    """Score ``findings`` of an analysis of ``period`` against ``truth``, every rule.

    Each matcher gets the findings of its own rule (none is fine: it still counts what it
    missed). Findings of a rule without a matcher are counted in ``unscored``, never dropped
    in silence.
    """
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f)
    scores = tuple(match(by_rule.get(rule, []), truth, period)
                   for rule, match in matchers.items())
    unscored = {rule: len(fs) for rule, fs in sorted(by_rule.items()) if rule not in matchers}
    return Scorecard(scores, unscored)
