"""Rollups for VictoriaMetrics and Prometheus: recording rules generated from the catalogue.

Why: those stores keep raw samples for their retention period (VictoriaMetrics'
``-retentionPeriod``, Prometheus' ``--storage.tsdb.retention.time``); a year is read from
hourly and daily series that recording rules write back (vmalert with ``-remoteWrite.url``
pointing at the store, or Prometheus' own rule evaluation). Each rule keeps every label of
the raw series, so the rollups are per series like the embedded store's and merge exactly:

- gauges: ``sum_over_time``, ``count_over_time``, ``min_over_time``, ``max_over_time`` and
  ``last_over_time`` (a mean over any span is the sum of sums over the sum of counts);
- counters: ``increase`` (resets undone on the raw samples), and the number of readings, the
  highest and the last reading (what `computewatch.pue` reads per hour to undo resets, as it
  does from the embedded store's rollups);
- the probers' RTT histogram (``link_latency_rtt_seconds_bucket``, label ``le``, with its
  ``_count`` and ``_sum``): its ``increase`` per bucket, so a month's percentile is
  ``histogram_quantile`` over the month's summed buckets, within one bucket's width (the
  buckets are smokeping_prober's).

A rule evaluated at ``t`` covers ``(t - 1h, t]`` (or a day), PromQL's range convention, and
is stamped at ``t``: the hourly group runs every hour and the daily group every day; run
vmalert with ``-rule=deploy/rollups/computewatch-rollups.yml`` and the evaluation aligned to
the interval (vmalert's default ``-eval.alignTime``). Record names follow the
``level:metric:operation`` convention (level ``series``: all labels kept).

The rolled-up fields are those the pipelines, summary, dashboards and report read. The file
is generated (`render_rollup_rules`) and a test checks the committed one is current.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from computewatch import catalog

__all__ = ["GRAINS", "ROLLED_UP", "ROLLUP_RULES_FILE", "RollupRule", "record_name",
           "render_rollup_rules", "rolled_ops", "rollup_rules"]

ROLLUP_RULES_FILE = Path("deploy/rollups/computewatch-rollups.yml")
"""Where the rendered rules live, relative to the repository root."""

GRAINS = {"1h": "1h", "1d": "24h"}
"""Each rollup group: its name suffix and its evaluation interval (= the range it covers)."""

ROLLED_UP: dict[str, tuple[str, ...]] = {
    "accelerator": ("utilization_ratio", "power_watts", "health", "memory_used_bytes",
                    "temperature_celsius", "energy_joules_total"),
    "facility_power": ("watts", "joules_total"),
    "link_latency": ("samples", "replies_within_budget", "budget_seconds", "loss_ratio",
                     "rtt_min_seconds", "rtt_p50_seconds", "rtt_p95_seconds",
                     "rtt_seconds_bucket", "rtt_seconds_count", "rtt_seconds_sum"),
}
"""The catalogue fields rolled up: what the pipelines, summary, dashboards and report read
(fields missing from the catalogue are skipped, so the table may name a future one)."""

_GAUGE_OPS = ("sum_over_time", "count_over_time", "min_over_time", "max_over_time",
              "last_over_time")
_COUNTER_OPS = ("increase", "count_over_time", "max_over_time", "last_over_time")
_HISTOGRAM_OPS = ("increase",)


@dataclass(frozen=True)
class RollupRule:
    record: str
    expr: str


def _ops(metric: catalog.Metric) -> tuple[str, ...]:
    if metric.histogram is not None:
        return _HISTOGRAM_OPS
    return _COUNTER_OPS if metric.kind == catalog.Kind.COUNTER else _GAUGE_OPS


def rolled_ops(metric: catalog.Metric) -> tuple[str, ...]:
    """The operations a metric's rollups keep (``sum``, ``count``, ``min``, ``max``, ``last``,
    ``increase``), as its record names spell them; none for a field not rolled up."""
    if metric.field not in ROLLED_UP.get(metric.measurement, ()):
        return ()
    return tuple(op.removesuffix("_over_time") for op in _ops(metric))


def record_name(metric: catalog.Metric, op: str, grain: str) -> str:
    """The series a rule records: ``series:<metric>:<op>_<grain>``."""
    return f"series:{metric.prometheus}:{op}_{grain}"


def _metrics() -> list[catalog.Metric]:
    out = []
    for name, fields in ROLLED_UP.items():
        meas = catalog.measurement(name)
        out += [m for m in meas.metrics if m.field in fields]
    return out


def rollup_rules(grain: str) -> list[RollupRule]:
    """The rules of one grain (``1h`` or ``1d``), in catalogue order."""
    window = GRAINS[grain]
    rules = []
    for m in _metrics():
        for op in _ops(m):
            rules.append(RollupRule(record_name(m, op.removesuffix("_over_time"), grain),
                                    f"{op}({m.prometheus}[{window}])"))
    return rules


_HEADER = (
    "# Hourly and daily rollups of the raw series, per series (every label kept). GENERATED\n"
    "# by computewatch.rollup_rules from the metric catalogue; edit that, not this file.\n"
    "# Load into vmalert (-rule=, -remoteWrite.url= the store) or Prometheus (rule_files).\n"
)


def render_rollup_rules() -> str:
    """The rules file: one group per grain, evaluated once per the range it covers."""
    lines = [_HEADER.rstrip("\n"), "groups:"]
    for grain, interval in GRAINS.items():
        lines += [f"  - name: computewatch-rollups-{grain}", f"    interval: {interval}",
                  "    rules:"]
        for rule in rollup_rules(grain):
            lines += [f"      - record: {rule.record}", f"        expr: '{rule.expr}'"]
    return "\n".join(lines) + "\n"
