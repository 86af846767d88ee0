"""The Query -> PromQL/MetricsQL translation on its own: evaluation times, ranges, matchers.
(The servers' answers to it are checked in test_store_victoriametrics / _prometheus.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from computewatch import catalog
from computewatch.store import Aggregate, Query, StoreError
from computewatch.store._promql import (
    Dialect,
    evaluations,
    expression,
    matchers,
    ms,
    regex_escape,
)

T = datetime(2026, 9, 1, tzinfo=UTC)
T_MS = 1_788_220_800_000


def _q(**kw) -> Query:
    base = dict(measurement="accelerator", fields=("utilization_ratio",), start=T,
                end=T + timedelta(hours=2))
    return Query(**{**base, **kw})


def test_milliseconds_round_up():
    assert ms(T) == T_MS
    assert ms(T + timedelta(microseconds=1)) == T_MS + 1
    assert ms(T + timedelta(microseconds=1000)) == T_MS + 1
    assert ms(T - timedelta(microseconds=1)) == T_MS


@pytest.mark.parametrize(("left_open", "range_ms"), [(True, 3_600_000), (False, 3_599_999)])
def test_windows_evaluate_one_millisecond_before_their_end(left_open, range_ms):
    [ev] = evaluations(_q(window=timedelta(hours=1)), left_open=left_open)
    assert (ev.first_ms, ev.step_ms, ev.points, ev.range_ms) == (
        T_MS + 3_599_999, 3_600_000, 2, range_ms)
    assert ev.window_start(ev.first_ms + 3_600_000) == T + timedelta(hours=1)


def test_a_cut_window_gets_its_own_shorter_range():
    q = _q(end=T + timedelta(minutes=150), window=timedelta(hours=1))
    full, cut = evaluations(q, left_open=True)
    assert full.points == 2
    assert (cut.first_window, cut.first_ms, cut.points, cut.range_ms) == (
        T + timedelta(hours=2), T_MS + 9_000_000 - 1, 1, 1_800_000)


def test_long_ranges_are_split_below_the_points_limit():
    q = _q(end=T + timedelta(seconds=25_000), window=timedelta(seconds=1))
    evs = list(evaluations(q, left_open=True, max_points=10_000))
    assert [e.points for e in evs] == [10_000, 10_000, 5_000]
    assert evs[1].first_window == T + timedelta(seconds=10_000)
    assert evs[1].first_ms == evs[0].last_ms + 1000


def test_whole_range_is_one_evaluation():
    [ev] = evaluations(_q(start=T + timedelta(microseconds=500)), left_open=False)
    assert (ev.first_ms, ev.range_ms) == (T_MS + 7_200_000 - 1, 7_200_000 - 1 - 1)
    assert ev.first_window == T + timedelta(microseconds=500)


def test_windows_must_be_whole_milliseconds():
    with pytest.raises(StoreError, match="whole number of milliseconds"):
        list(evaluations(_q(window=timedelta(microseconds=2500)), left_open=True))


def test_matchers_escape_and_treat_empty_as_absent():
    meas = catalog.measurement("accelerator")
    got = matchers(meas, {"site": ['a"b', "c.d|e"], "hub": "", "model": "H100\\x"}, "s")
    assert got == ['site=~"a\\"b|c\\\\.d\\\\|e"', 'hub=""', 'model="H100\\\\x"']
    assert matchers(meas, {"site": []}, "s") is None
    assert regex_escape("a.b*(c)") == r"a\.b\*\(c\)"
    with pytest.raises(StoreError, match="no tag 'planet'"):
        matchers(meas, {"planet": "x"}, "s")


@pytest.mark.parametrize(("agg", "dialect", "want"), [
    (Aggregate.MEAN, Dialect.PROMQL,
     "sum by (site) (sum_over_time(S[60000ms])) / sum by (site) (count_over_time(S[60000ms]))"),
    (Aggregate.LAST, Dialect.METRICSQL,
     "max by (site) ((last_over_time(S[60000ms]) + 0) and (tlast_over_time(S[60000ms]) == "
     "on(site) group_left() max by (site) (tlast_over_time(S[60000ms]))))"),
    (Aggregate.LAST, Dialect.PROMQL, "max by (site) (last_over_time(S[60000ms]))"),
    (Aggregate.QUANTILE, Dialect.METRICSQL,
     "(max by (site) (quantile_over_time(0.9, S[60000ms])) and on(site) (count by (site) "
     "(count_over_time(S[60000ms])) == 1)) or (histogram_quantile(0.9, sum by (site, vmrange) "
     "(histogram_over_time(S[60000ms]))))"),
    (Aggregate.QUANTILE, Dialect.PROMQL,
     "(max by (site) (quantile_over_time(0.9, S[60000ms])) and on(site) (count by (site) "
     "(count_over_time(S[60000ms])) == 1)) or (quantile by (site) (0.9, "
     "quantile_over_time(0.9, S[60000ms])))"),
])
def test_expressions(agg, dialect, want):
    assert expression(_q(agg=agg, group_by=("site",), quantile=0.9), "S", 60_000,
                      dialect) == want


def test_no_group_aggregates_everything():
    assert expression(_q(agg=Aggregate.SUM), "S", 1000, Dialect.PROMQL) == \
        "sum (sum_over_time(S[1000ms]))"
