"""Tier compliance (the core's one definition, `computewatch.compliance`) on hand-made
minutes in a real DuckDB store: a window's p95 is taken over every probe in it, a link is an
unordered pair, and compliance is the share of probes answered within the budget."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from link_frames import BUDGET, T0, W, minutes

from computewatch.compliance import COMPLIANCE_COLUMNS, pair_windows, window_compliance
from computewatch.findings import Period
from computewatch.policy import load_policy
from computewatch.store import Aggregate, DuckDBStore

TWO_HOURS = Period(T0, T0 + timedelta(hours=2))
POLICY = load_policy()


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "compliance.duckdb")
    yield s
    s.close()


def compliance(store, *frames):
    for f in frames:
        store.write("link_latency", f)
    return window_compliance(store, TWO_HOURS, POLICY).set_index(["src_site", "dst_site"])


def test_a_link_over_budget_in_80_percent_of_minutes_is_80_percent_non_compliant(store):
    # Four minutes of every window with no probe within the budget (p95 1.5 x budget), one
    # with all 60 within (p95 0.7 x budget). The lowest per-minute p95 of each window is
    # within budget, which the old rule took as "the window complies": 100% compliant.
    got = compliance(store, minutes("a", "b", "regional", [[0, 0, 0, 0, 60]] * 24))
    r = got.loc[("a", "b")]
    assert (r.windows, r.windows_with_data, r.windows_within_budget) == (24, 24, 0)
    assert (r.probes, r.probes_within_budget) == (24 * 300, 24 * 60)
    assert 1 - r.probes_within_budget / r.probes == pytest.approx(0.80)
    assert r.budget_s == BUDGET["regional"]


def test_exactly_95_percent_within_complies_and_one_probe_less_does_not(store):
    # 57 of 60 = 95% in every minute: the p95 is at the budget. 56 of 60 (one probe a minute
    # less): 280 of 300 per window, 93.3%, over budget.
    got = compliance(store, minutes("t1", "t2", "metro", [57] * 24),
                     minutes("u1", "u2", "metro", [56] * 24))
    assert got.loc[("t1", "t2")].windows_within_budget == 24
    assert got.loc[("u1", "u2")].windows_within_budget == 0
    assert got.loc[("t1", "t2")].probes_within_budget == 24 * 5 * 57


def test_both_directions_and_every_probe_kind_are_one_link(store):
    # a -> b (tcp) answers 54 of 60 within budget a minute: 90% alone, over budget. b -> a
    # (udp) answers all. Pooled, 570 of 600 per window: exactly 95%, within budget.
    got = compliance(store,
                     minutes("b", "a", "national", [60] * 24),
                     minutes("a", "b", "national", [54] * 24, probe="tcp"))
    assert list(got.index) == [("a", "b")]
    assert list(got.reset_index().columns) == COMPLIANCE_COLUMNS
    r = got.loc[("a", "b")]
    assert (r.windows_within_budget, r.probes, r.probes_within_budget) == (
        24, 24 * 600, 24 * 570)
    assert (r.src_hub, r.dst_hub) == ("a-hub", "b-hub")  # labels follow the sorted pair


def test_windows_counted_against_another_budget_are_not_scored(store):
    # The prober counted against 2 ms, the policy's metro budget is 1 ms: half the period.
    got = compliance(store, minutes("m1", "m2", "metro", [60] * 12),
                     minutes("m1", "m2", "metro", [None] * 12 + [60] * 12, budget=0.002))
    r = got.loc[("m1", "m2")]
    assert (r.windows_with_data, r.windows_within_budget, r.probes) == (12, 12, 12 * 300)


def test_an_unknown_tier_is_not_scored_and_an_empty_store_has_no_rows(store):
    assert window_compliance(store, TWO_HOURS, POLICY).empty
    frame = minutes("x1", "x2", "metro", [60] * 24).assign(tier="galactic")
    got = compliance(store, frame)
    assert np.isnan(got.loc[("x1", "x2")].budget_s)
    assert got.loc[("x1", "x2")].windows_with_data == 0


class LabelsOnly:
    """The store without its per-series read (`series_ids`, `series_windows`), as a server
    store is: `pair_windows` asks it grouped by the link labels. Notes which reads ran."""

    def __init__(self, store: DuckDBStore, per_series: bool) -> None:
        self._store, self.url, self.per_series, self.asked = store, store.url, per_series, []

    def __getattr__(self, name: str):
        if name in ("series_ids", "series_windows"):
            if not self.per_series:
                raise AttributeError(name)
            self.asked.append(name)
        return getattr(self._store, name)

    def query_many(self, queries):
        self.asked.append("query_many")
        return self._store.query_many(queries)


@pytest.mark.parametrize("per_series", [True, False], ids=["per-series", "by-labels"])
def test_pair_windows_pools_probe_kinds_per_direction_then_directions(store, per_series):
    # a -> b: udp every minute at loss 1%, tcp in one minute of the first window only, at
    # 3%; b -> a: udp at 5%. A direction's mean is over its minutes (the store's grouped
    # mean): (5 x 1% + 3%) / 6; the link's is the mean of its two directions'.
    tcp = minutes("a", "b", "national", [54, None], loss=0.03, rtt_min=0.001, probe="tcp")
    store.write("link_latency", minutes("a", "b", "national", [60, 60], loss=0.01))
    store.write("link_latency", tcp.iloc[:1])
    store.write("link_latency", minutes("b", "a", "national", [57, 57], loss=0.05,
                                        rtt_min=0.002))
    asked = LabelsOnly(store, per_series)
    grid = pair_windows(asked, T0, T0 + 2 * W, W, {
        Aggregate.SUM: ("samples", "replies_within_budget"),
        Aggregate.MEAN: ("loss_ratio",),
        Aggregate.MIN: ("rtt_min_seconds",),
        Aggregate.MAX: ("budget_seconds",)})
    assert list(grid.links.pair) == ["a|b"]
    assert grid.width == 2
    np.testing.assert_array_equal(grid["samples"], [[11 * 60, 10 * 60]])
    np.testing.assert_array_equal(grid["replies_within_budget"],
                                  [[5 * 60 + 54 + 5 * 57, 5 * 60 + 5 * 57]])
    np.testing.assert_allclose(grid["loss_ratio"],
                               [[((5 * 0.01 + 0.03) / 6 + 0.05) / 2, (0.01 + 0.05) / 2]],
                               rtol=1e-12)
    np.testing.assert_array_equal(grid["rtt_min_seconds"], [[0.001, 0.002]])
    np.testing.assert_array_equal(grid["budget_seconds"], [[BUDGET["national"]] * 2])
    assert asked.asked == (["series_ids", "series_windows"] if per_series else ["query_many"])


def test_pair_windows_of_an_empty_range_is_none(store):
    store.write("link_latency", minutes("a", "b", "metro", [60]))
    assert pair_windows(store, T0 + W, T0 + 3 * W, W, {Aggregate.SUM: ("samples",)}) is None
    assert pair_windows(LabelsOnly(store, False), T0 + W, T0 + 3 * W, W,
                        {Aggregate.SUM: ("samples",)}) is None
