"""Every rule's findings scored against the simulator's ground truth: recall and precision.

A matcher is ``match(findings, truth, period) -> RuleScore`` (`Matcher`), registered by rule
name in `MATCHERS`; `score` runs every matcher over an analysis and returns a `Scorecard`.
Findings of a rule that no matcher scores are counted as unscored, never left out in silence.

Each matcher module states its matching in its docstring (what a truth item is, when a
finding finds it, when a finding is false); they live beside this one, one per pipeline:
``_underuse`` (site, cluster, hub and province minimums), ``_anomaly`` (lost accelerators,
site anomalies), ``_pue`` (targets, excursions, metering), ``_surplus`` (idle capacity within
a latency circle), and the latency rules' module. Everything a matcher judges by is in the
`GroundTruth` the simulator wrote, so a score can be recomputed from the truth file and the
findings alone.
"""

from computewatch.sim.scoring._registry import MATCHERS, SCORE_COLUMNS, Scorecard, score
from computewatch.sim.scoring._rules import (
    Matcher,
    RuleScore,
    covered_share,
    overlap,
    overlaps,
)

__all__ = ["MATCHERS", "SCORE_COLUMNS", "Matcher", "RuleScore", "Scorecard", "covered_share",
           "overlap", "overlaps", "score"]
