"""Anomalies: accelerators that fell off the bus, and sites that leave their own normal.

Two rules, both reading windowed aggregates from the store, never raw samples:

``accelerator_lost`` (critical). A device whose ``health`` minimum over the period is below 1
(one grouped query over the whole fleet) is looked at again minute by minute (a second query
restricted to those few devices). Each run of unhealthy minutes, ended by a healthy reading,
is one episode: it starts at the first unhealthy minute and ends one minute after the last
(or at the period end). Minutes without data neither end nor extend an episode; they lower
its completeness.

``site_anomaly`` (warning; critical for the most extreme). Each site is described per window
(default 1 h, aligned in China time like every PUE report; only whole windows count) by four
features:

- ``utilization``: mean accelerator utilization (ratio), compared on a log scale (from 1% up:
  a card at 1% and one at 0% are both idle), since what matters is the share of the load that
  went away: an underused site at 20% that stops is as unusual as a busy one that stops;
- ``watts_per_utilization``: site accelerator power / (utilization x accelerators), i.e. the
  mean power over the mean utilization of the same samples (the accelerator count cancels):
  the watts a fully busy accelerator costs. Utilization is floored at the policy's busy level
  (0.10) in the ratio, because below it a card is idle and idle watts over a near-zero
  utilization would only restate the utilization feature, 50 times louder; compared on a log
  scale, since it is a ratio;
- ``pue``: energy-based PUE of the window (`computewatch.pue.window_pue` on each meter's last
  counter reading per 5-minute bucket, stamped at the bucket's end: at most one reading
  interval late, for IT and facility meters alike);
- ``rtt_to_hub``: the median over the window of the median RTT (p50) to the role-'hub'
  site(s) of the site's own hub (median over them when there are several); log scale.

**A trailing baseline that never holds the judged window.** Each window is judged against
the same site's earlier windows within ``LOOKBACK`` (7 days, read from before the analysed
period as far as the store holds them), leaving out windows that were themselves out of line
(some feature ``Z_MOVED`` or more from their own baseline), so a fault that lasts hours
never becomes its own baseline and a window is never judged by itself or by what follows
it. With days of history the baseline holds every hour of the
day, so the day's swing is part of the spread; on a first day it is the hours before the
window (a robust rolling baseline). A window needs ``MIN_BASELINE_WINDOWS`` (3) such earlier
windows to be judged: the first hours of a site's history are not judged, and say so by their
absence. (The previous default, the first half of the analysed period, put a fault in that
half into its own baseline: the injected cooling faults were never found.)

Each feature is standardized against that baseline: robust z = (x - baseline median) /
scale. The location is per site because sites differ by design (a western hub's PUE of 1.15
would be an eastern edge site's fault). The scale is the baseline's IQR / 1.349 but never
below (a) the job-churn noise of a site of n accelerators at utilization u, sqrt((1-u)/(u n))
in log units (u at most 0.5: a small busy site falls further in log units than the formula
says) for utilization and watts per utilization, because a 3-card site swings by a third of
its capacity when one job ends; and (b) a floor per feature (`FLOORS`):
the smallest change worth a page; for utilization a wider one (``UNSEEN_HOUR_FLOOR``) while
the baseline holds no window within two hours of the judged window's time of day, since a
first day's baseline cannot tell the night's usual dip from a fault. A missing value (a hub
site has no link to its own hub site; an incomplete PUE window; no probe) gives z = 0 and
lowers the finding's completeness.

A window is anomalous when some feature is at least ``Z_FLAG`` from its baseline median. One
finding per run of anomalous windows of a site, if the run lasts ``MIN_RUN`` (2) windows or
reaches ``Z_CRITICAL`` (a single hour a little out of line is job churn: a small edge site's
load can halve from one hour to the next by chance and by the day's swing); it names every
feature that moved (median |z| over the run at least ``Z_MOVED``; at least the most deviant
one) with its value, the baseline median, the change and the z, in the message and in
``detail["features"]`` (most deviant first; there at least the two most deviant, each with
``moved`` true or false), and the baseline it was judged against;
critical when a feature reaches ``Z_CRITICAL``. Passing a ``baseline`` period replaces the
trailing baseline with that one (normal operation by the caller's word; its windows are not
judged).

**Over rollups** (history before the raw data, `computewatch.store.resolution`) both rules
run at the rollups' grain (an hour): a lost device is screened by its hourly minimum health
and its episodes are timed to the hour (from the first hour with an unhealthy reading to
the end of the last one: the minute it was lost and came back is not kept); the site
features are hourly means, PUE from the meters' hourly readings, and the median RTT to the
hub from the hours' latency sketches (within their 1%), so site anomalies of an hour or more
are judged as on raw data. What hourly rollups cannot show: a device lost for minutes
inside an hour that also ended healthy still shows (its hour's minimum is 0), but not when;
site windows shorter than an hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines._episodes import episodes
from computewatch.policy import Policy
from computewatch.pue import CHINA_TZ, meter_readings, window_edges, window_pue
from computewatch.rule_definitions import ANOMALY_HEALTH, ANOMALY_SITE
from computewatch.store import Aggregate, Query, Store, resolution
from computewatch.topology import Site, Topology

__all__ = ["FEATURES", "FLOORS", "HEALTH_STEP", "LOOKBACK", "MIN_BASELINE_WINDOWS", "MIN_RUN",
           "UNSEEN_HOUR_FLOOR", "Z_CRITICAL", "Z_FLAG", "Z_MOVED", "run"]

log = logging.getLogger(__name__)

PIPELINE = "anomaly"
HEALTH_STEP = timedelta(minutes=1)
"""Resolution at which a lost device's episodes are timed."""

FEATURES = ("utilization", "watts_per_utilization", "pue", "rtt_to_hub")
_UTIL, _WPU = FEATURES.index("utilization"), FEATURES.index("watts_per_utilization")
_LOG_FEATURES = frozenset({"utilization", "watts_per_utilization", "rtt_to_hub"})
_IDLE_UTILIZATION = 0.01
"""Utilization is compared on a log scale from here up: a card at 1% and one at 0% are both
idle (the log of 0 would make any idle hour infinitely unusual)."""
_UNITS = {"utilization": "ratio", "watts_per_utilization": "W", "pue": "factor",
          "rtt_to_hub": "s"}

FLOORS = {"utilization": 0.20, "watts_per_utilization": 0.05, "pue": 0.02, "rtt_to_hub": 0.05}
"""Smallest scale per feature, in its unit (log units, i.e. relative, for log features).
Utilization 20%: it follows demand, and eastern and edge sites swing by up to +-30% of their
load between day and night (a factor 1.86 from trough to peak, 0.62 in log units), which a
first day's baseline of a few hours has not seen; a collapse to idle is a factor of 20 or
more (a lasting shortfall is the underuse pipeline's job). Watts per utilization 5%, PUE
0.02 (its daily swing is +-0.03), RTT 5%."""

LOOKBACK = timedelta(days=7)
"""How far back the trailing baseline reaches."""

MIN_BASELINE_WINDOWS = 3
"""A window with fewer earlier (normal) windows of its site is not judged."""

Z_FLAG = 5.0
"""A window is anomalous when some feature is this many robust SDs from its baseline."""

UNSEEN_HOUR_FLOOR = 0.35
"""Utilization's floor (log units) while the baseline has not seen the judged window's time
of day (within ``_SAME_HOURS`` hours): the first day of a site's history does not know how far
its load swings between day and night (up to a factor 1.86 in the simulated fleet, 0.62 in
log units), so a night judged against an afternoon needs a wider margin."""
_SAME_HOURS = 2

MIN_RUN = 2
"""A run of anomalous windows shorter than this is a finding only if it reaches Z_CRITICAL."""

Z_MOVED = 3.0
"""A feature whose median |z| over a run reaches this is named as having moved."""

Z_CRITICAL = 10.0
"""A run whose most deviant feature reaches this robust z is critical."""

_READING_BUCKET = timedelta(minutes=5)
_IQR_TO_SD = 1.349

HEALTH_DEFINITION = ANOMALY_HEALTH
SITE_DEFINITION = ANOMALY_SITE


# -- accelerator_lost ----------------------------------------------------------------------
def _lost_accelerators(store: Store, period: Period) -> list[Finding]:
    """Episodes of health 0, found with one fleet-wide query and one for the few suspects."""
    screen = store.query(Query("accelerator", ("health",), period.start, period.end,
                               group_by=("hub", "cluster", "site", "node", "device"),
                               agg=Aggregate.MIN))
    suspects = screen[screen.health < 1]
    if suspects.empty:
        return []
    places = suspects.drop_duplicates("device").set_index("device")
    # Over rollups the finest step is their grain (an hour): episodes are timed to it.
    health_step = max(HEALTH_STEP, resolution(store, "accelerator", period.start))
    fine = store.query(Query("accelerator", ("health",), period.start, period.end,
                             where={"device": sorted(places.index)}, group_by=("device",),
                             window=health_step, agg=Aggregate.MIN))
    step = pd.Timedelta(health_step)
    end_of_period = pd.Timestamp(period.end)
    findings = []
    for device, g in fine.dropna(subset=["health"]).groupby("device", sort=True):
        g = g.sort_values("time")
        times = pd.DatetimeIndex(g.time)
        bad = (g.health < 1).to_numpy()
        place = places.loc[device]
        for ep in episodes(bad):
            start = times[ep.first]
            end = min(times[ep.last] + step, end_of_period)
            recovered = ep.last + 1 < len(times)
            expected = max(int(np.ceil((end - start) / step)), 1)
            message = (f"accelerator {device} at {place.site} (node {place.node}) reported "
                       f"unhealthy or lost from {start:%Y-%m-%d %H:%M} UTC")
            message += (f" until {end:%Y-%m-%d %H:%M} UTC" if recovered
                        else "; not back by the end of the period")
            findings.append(Finding(
                PIPELINE, "accelerator_lost", "accelerator", str(device), Severity.CRITICAL,
                0.0, 1.0, "state", start.to_pydatetime(), end.to_pydatetime(),
                completeness=min(ep.length / expected, 1.0), hub=place.hub,
                cluster=place.cluster, site=place.site, definition=HEALTH_DEFINITION,
                message=message,
                detail={"node": place.node, "recovered": bool(recovered), "chronic": False,
                        "minutes": float((end - start) / pd.Timedelta(minutes=1)),
                        "lowest_health": float(g.health.iloc[ep.first:ep.last + 1].min())}))
    return findings


# -- site features -------------------------------------------------------------------------
def _grid(span: Period, window: timedelta) -> pd.DatetimeIndex:
    """Edges of the whole windows (China-time aligned) that lie inside ``span``."""
    edges = window_edges(span.start, span.end, window)
    inside = (edges >= pd.Timestamp(span.start)) & (edges <= pd.Timestamp(span.end))
    return edges[inside]


def _hub_sites(topology: Topology) -> dict[str, list[str]]:
    """Role-'hub' sites per hub id."""
    out: dict[str, list[str]] = {}
    for s in topology.sites:
        if s.role == "hub" and s.hub is not None:
            out.setdefault(s.hub, []).append(s.id)
    return out


def _rtt_to_hub(store: Store, edges: pd.DatetimeIndex, window: timedelta,
                topology: Topology) -> pd.DataFrame:
    """Per site and window: median RTT (p50) to its hub's role-'hub' site(s)."""
    cores = _hub_sites(topology)
    core_ids = sorted({c for cs in cores.values() for c in cs})
    if not core_ids:
        return pd.DataFrame(columns=["time", "site", "rtt_to_hub"])
    t0, t1 = edges[0].to_pydatetime(), edges[-1].to_pydatetime()
    parts = []
    for side, other in (("src_site", "dst_site"), ("dst_site", "src_site")):
        df = store.query(Query("link_latency", ("rtt_p50_seconds",), t0, t1,
                               where={side: core_ids}, group_by=("src_site", "dst_site"),
                               window=window, agg=Aggregate.QUANTILE, quantile=0.5))
        parts.append(df.rename(columns={other: "site", side: "core"}))
    links = pd.concat(parts, ignore_index=True)[["time", "site", "core", "rtt_p50_seconds"]]
    hub_of = {s.id: s.hub for s in topology.sites}
    same_hub = [hub_of.get(site) is not None and core in cores.get(hub_of[site], ())
                for site, core in zip(links.site, links.core, strict=True)]
    links = links[np.asarray(same_hub, dtype=bool) & (links.site != links.core)]
    out = links.groupby(["time", "site"], as_index=False).rtt_p50_seconds.median()
    return out.rename(columns={"rtt_p50_seconds": "rtt_to_hub"})


def _pue(store: Store, edges: pd.DatetimeIndex, window: timedelta,
         min_completeness: float) -> pd.DataFrame:
    """Per site and window: energy-based PUE from store-side last counter readings."""
    t0, t1 = edges[0].to_pydatetime(), edges[-1].to_pydatetime()
    # Over rollups the meters are read once per rollup bucket (an hour), not every 5 min.
    bucket = max(min(_READING_BUCKET, window / 2),
                 resolution(store, "facility_power", t0 - _READING_BUCKET))
    readings = meter_readings(store, Period(t0, t1), bucket)
    if readings.empty:
        return pd.DataFrame(columns=["time", "site", "pue"])
    got = window_pue(readings, t0, t1, window, slot=min(timedelta(minutes=1), bucket),
                     max_gap=2 * bucket, min_completeness=min_completeness)
    got = got[got.window_start.isin(edges[:-1])]
    return got.rename(columns={"window_start": "time"})[["time", "site", "pue"]]


def _site_features(store: Store, span: Period, window: timedelta, topology: Topology,
                   min_completeness: float, busy_level: float) -> pd.DataFrame:
    """One row per site and whole window of ``span``: the features in their own units."""
    cols = ["time", "site", *FEATURES]
    edges = _grid(span, window)
    if len(edges) < 2:
        return pd.DataFrame(columns=cols)
    t0, t1 = edges[0].to_pydatetime(), edges[-1].to_pydatetime()
    acc = store.query(Query("accelerator", ("utilization_ratio", "power_watts"), t0, t1,
                            group_by=("site",), window=window, agg=Aggregate.MEAN))
    acc = acc.dropna(subset=["utilization_ratio"])
    if acc.empty:
        return pd.DataFrame(columns=cols)
    feats = pd.DataFrame({
        "time": acc.time, "site": acc.site, "utilization": acc.utilization_ratio,
        "watts_per_utilization": acc.power_watts / acc.utilization_ratio.clip(lower=busy_level),
    })
    feats = feats.merge(_pue(store, edges, window, min_completeness), on=["time", "site"],
                        how="left")
    feats = feats.merge(_rtt_to_hub(store, edges, window, topology), on=["time", "site"],
                        how="left")
    return feats[cols].sort_values(["site", "time"]).reset_index(drop=True)


# -- baselines and scoring ----------------------------------------------------------------
def _transform(feats: pd.DataFrame) -> pd.DataFrame:
    """Features on the scale they are compared on: log for ratios of positive quantities."""
    out = feats[list(FEATURES)].astype(float).copy()
    out["utilization"] = out["utilization"].clip(lower=_IDLE_UTILIZATION)
    for f in _LOG_FEATURES:
        out[f] = np.log(out[f].where(out[f] > 0))
    return out


def _accelerators(store: Store, span: Period) -> pd.Series:
    """Accelerators reporting utilization per site over ``span`` (one row per device)."""
    df = store.query(Query("accelerator", ("utilization_ratio",), span.start, span.end,
                           group_by=("site", "device"), agg=Aggregate.COUNT))
    return df[df.utilization_ratio > 0].groupby("site").size()


def _column_quartiles(base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, 75th and 25th percentile of each column's non-NaN values (NaN for a column
    without any: no link, no PUE). The same numbers as ``np.median`` and ``np.percentile``
    (linear) of each column's values, by their formulas (the middle value, or the two
    middle ones added and halved; ``(n - 1) q`` between two neighbours, interpolated from
    the nearer one), on all columns at once: one sort instead of three calls a column,
    which cost most of the anomaly pipeline's time, as this runs for every judged window
    of every site."""
    ordered = np.sort(base, axis=0)  # NaN last
    n = np.maximum((~np.isnan(base)).sum(axis=0), 1)
    cols = np.arange(base.shape[1])
    hi = n // 2
    middle = ordered[hi, cols]
    median = np.where(n % 2 == 1, middle, (ordered[np.maximum(hi - 1, 0), cols] + middle) / 2)

    def percentile(q: float) -> np.ndarray:
        at = (n - 1) * q
        below = np.floor(at)
        top = at >= n - 1
        i = np.where(top, n - 1, below.astype(np.intp))
        a, b = ordered[i, cols], ordered[np.where(top, n - 1, i + 1), cols]
        t = at - below
        step = b - a
        return np.where(t >= 0.5, b - step * (1 - t), a + step * t)

    return median, percentile(0.75), percentile(0.25)


def _scale(base: np.ndarray, cards: float, hour_seen: bool) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust scale per feature of one site's baseline rows (transformed);
    ``hour_seen``: whether the baseline holds the judged window's time of day."""
    median, q75, q25 = _column_quartiles(base)
    spread = (q75 - q25) / _IQR_TO_SD
    floor = np.array([FLOORS[f] for f in FEATURES])
    if not hour_seen:
        floor[_UTIL] = UNSEEN_HOUR_FLOOR
    # Job churn: the mean of n cards that each hold a job or not moves by sqrt(u(1-u)/n)
    # from one window to the next as jobs come and go, i.e. by sqrt((1-u)/(u n)) in log
    # units, so a 3-card site is never as steady as a 200-card one, however flat its few
    # baseline windows happened to be. A busy site falls further in log units than that
    # says (4 cards at 88% fall to 22% when three jobs end), so u is taken at most 0.5.
    # Watts per utilization (idle/u + k per card) moves by at most d ln u, the same.
    u = float(np.clip(np.exp(median[_UTIL]), 0.05, 0.5)) \
        if not np.isnan(median[_UTIL]) else 0.5
    churn = np.sqrt((1 - u) / (u * max(cards, 1.0)))
    floor[_UTIL] = max(floor[_UTIL], churn)
    floor[_WPU] = max(floor[_WPU], churn)
    return median, np.where(spread > floor, spread, floor)


@dataclass(frozen=True)
class _Judged:
    """One site's judged windows: z-scores, flags and the baseline each was judged against."""

    times: pd.DatetimeIndex
    values: pd.DataFrame  # features in their own units
    z: np.ndarray  # (windows, features); 0 where the value is missing
    missing: np.ndarray  # (windows, features) bool
    flagged: np.ndarray  # (windows,) bool
    medians: np.ndarray  # (windows, features): the baseline medians (transformed)
    baselines: list[tuple[pd.Timestamp, pd.Timestamp, int]]  # first, last window, count


def _hour_seen(hours: np.ndarray, baseline: np.ndarray, j: int) -> bool:
    """True when a baseline window lies within ``_SAME_HOURS`` of window j's time of day."""
    apart = np.abs(hours[baseline] - hours[j]) % 24
    return bool((np.minimum(apart, 24 - apart) <= _SAME_HOURS).any())


def _judge_trailing(times: pd.DatetimeIndex, x: np.ndarray, judged: np.ndarray, cards: float,
                    lookback: pd.Timedelta) -> tuple[np.ndarray, ...]:
    """Each judged window against the site's own earlier windows within ``lookback`` that
    were not themselves out of line (no feature ``Z_MOVED`` from their own baseline), so a
    fault never becomes its own baseline, not even while it is still building up."""
    n, k = x.shape
    z, medians = np.zeros((n, k)), np.full((n, k), np.nan)
    flagged, scored = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    suspect = np.zeros(n, dtype=bool)
    spans: list[tuple[pd.Timestamp, pd.Timestamp, int]] = [(times[0], times[0], 0)] * n
    hours = _local_hours(times)
    ns, back = times.as_unit("ns").asi8, pd.Timedelta(lookback).value  # integers: no boxing
    for j in np.flatnonzero(judged):
        ok = (ns < ns[j]) & (ns >= ns[j] - back) & ~suspect
        rows = np.flatnonzero(ok)
        if len(rows) < MIN_BASELINE_WINDOWS:
            continue
        median, scale = _scale(x[ok], cards, _hour_seen(hours, ok, j))
        z[j] = np.nan_to_num((x[j] - median) / scale, nan=0.0)
        medians[j], scored[j] = median, True
        flagged[j] = np.abs(z[j]).max() >= Z_FLAG
        suspect[j] = np.abs(z[j]).max() >= Z_MOVED
        spans[j] = (times[rows[0]], times[rows[-1]], len(rows))
    return z, medians, flagged, scored, spans


def _judge_fixed(times: pd.DatetimeIndex, x: np.ndarray, judged: np.ndarray, cards: float,
                 base: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each judged window against one given baseline (``base``: a mask of the rows)."""
    n, k = x.shape
    z, medians = np.zeros((n, k)), np.full((n, k), np.nan)
    flagged, scored = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    spans: list[tuple[pd.Timestamp, pd.Timestamp, int]] = [(times[0], times[0], 0)] * n
    if base.sum() < MIN_BASELINE_WINDOWS:
        return z, medians, flagged, scored, spans
    hours = _local_hours(times)
    for j in np.flatnonzero(judged):
        median, scale = _scale(x[base], cards, _hour_seen(hours, base, j))
        z[j] = np.nan_to_num((x[j] - median) / scale, nan=0.0)
        medians[j], scored[j] = median, True
        flagged[j] = np.abs(z[j]).max() >= Z_FLAG
    return z, medians, flagged, scored, spans


def _local_hours(times: pd.DatetimeIndex) -> np.ndarray:
    """Hour of day in China time, where the day's load swing is set."""
    return np.asarray(times.tz_convert(CHINA_TZ).hour, dtype=float)


def _natural(feature: str, value: float) -> float:
    return float(np.exp(value)) if feature in _LOG_FEATURES else float(value)


def _site_anomalies(store: Store, period: Period, policy: Policy, topology: Topology, *,
                    baseline: Period | None, window: timedelta,
                    lookback: timedelta) -> list[Finding]:
    """Robust z-scores of per-site window features against a baseline; one finding per run."""
    floor = float(policy.pue.min_completeness.value)
    busy = float(policy.utilization.busy_level.value)
    history = baseline if baseline is not None else Period(period.start - lookback,
                                                          period.start)
    span = Period(min(history.start, period.start), max(history.end, period.end))
    feats = _site_features(store, span, window, topology, floor, busy)
    if feats.empty:
        log.info("anomaly: no windows with data; site_anomaly not evaluated")
        return []
    step = pd.Timedelta(window)
    inside = (feats.time >= pd.Timestamp(period.start)) & \
        (feats.time + step <= pd.Timestamp(period.end))
    if baseline is not None:
        # A given baseline is normal operation by the caller's word: its windows are not
        # judged again (the period's other windows are).
        in_base = (feats.time >= pd.Timestamp(baseline.start)) & \
            (feats.time + step <= pd.Timestamp(baseline.end))
        judged_mask = inside & ~in_base
    else:
        in_base, judged_mask = None, inside
    cards = _accelerators(store, Period(span.start, period.end))
    transformed = _transform(feats)
    places = {s.id: s for s in topology.sites}
    findings = []
    for site, rows in feats.groupby("site", sort=True):
        idx = rows.index
        times = pd.DatetimeIndex(rows.time)
        x = transformed.loc[idx].to_numpy()
        judged = judged_mask.loc[idx].to_numpy()
        if not judged.any():
            continue
        n_cards = float(cards.get(site, 1))
        if baseline is None:
            z, medians, flagged, scored, spans = _judge_trailing(
                times, x, judged, n_cards, pd.Timedelta(lookback))
        else:
            z, medians, flagged, scored, spans = _judge_fixed(
                times, x, judged, n_cards, in_base.loc[idx].to_numpy())
        if not scored.any():
            continue
        judged_site = _Judged(times, rows[list(FEATURES)].reset_index(drop=True), z,
                              np.isnan(x), flagged, medians, spans)
        grid = pd.date_range(times.min(), times.max(), freq=step)
        where = pd.Series(np.arange(len(times)), index=times)
        flags = pd.Series(flagged, index=times).reindex(grid, fill_value=False)
        for ep in episodes(flags.to_numpy(dtype=bool)):
            members = where[(where.index >= grid[ep.first]) & (where.index <= grid[ep.last])]
            if len(members) < MIN_RUN and np.abs(z[members.to_numpy()]).max() < Z_CRITICAL:
                continue  # one window a little out of line: job churn, not a fault
            findings.append(_site_finding(str(site), judged_site, members.to_numpy(),
                                          places.get(str(site)), step, period, baseline))
    return findings


def _site_finding(site: str, judged: _Judged, rows: np.ndarray, place: Site | None,
                  step: pd.Timedelta, period: Period, baseline: Period | None) -> Finding:
    """One run of anomalous windows, explained by the features that moved."""
    z = pd.DataFrame(judged.z[rows], columns=list(FEATURES))
    run_z = z.median()
    order = run_z.abs().sort_values(ascending=False, kind="stable")
    moved = {f for f in order.index if abs(run_z[f]) >= Z_MOVED} | {order.index[0]}
    shown = [f for f in order.index if f in moved or (len(moved) < 2 and f == order.index[1])]
    first = int(rows[0])
    explained = []
    for f in shown:
        value = judged.values[f].iloc[rows].median()
        base = judged.medians[first, FEATURES.index(f)]
        natural = _natural(f, base) if not np.isnan(base) else float("nan")
        value = float(value) if pd.notna(value) else float("nan")
        explained.append({
            "feature": f, "value": value, "baseline_median": natural,
            "change": value - natural, "z": round(float(run_z[f]), 2), "unit": _UNITS[f],
            "moved": f in moved})
    peak = float(np.abs(judged.z[rows]).max())
    # A feature the site never has (a hub site's link to itself) is not missing data.
    applicable = [k for k, f in enumerate(FEATURES) if not np.isnan(judged.medians[first, k])]
    completeness = float(1.0 - judged.missing[np.ix_(rows, applicable)].mean()) \
        if applicable else 0.0
    start = judged.times[rows].min()
    end = min(judged.times[rows].max() + step, pd.Timestamp(period.end))
    words = ", ".join(
        f"{e['feature']} {e['value']:.4g} vs baseline {e['baseline_median']:.4g} "
        f"({_change(e)}, z {e['z']:+.1f})" for e in explained if e["moved"])
    hub = place.hub if place else ""
    cluster = (place.cluster or "") if place else ""
    if baseline is None:
        b_first, b_last, b_n = judged.baselines[first]
        base_span = [b_first.isoformat(), (b_last + step).isoformat()]
    else:
        base_span, b_n = [baseline.start.isoformat(), baseline.end.isoformat()], None
    return Finding(
        PIPELINE, "site_anomaly", "site", site,
        Severity.CRITICAL if peak >= Z_CRITICAL else Severity.WARNING,
        round(peak, 3), Z_FLAG, "robust_z", start.to_pydatetime(), end.to_pydatetime(),
        completeness=completeness, hub=hub, cluster=cluster,
        site=site, definition=SITE_DEFINITION.format(z=Z_FLAG),
        message=f"{site}: unusual from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: "
                f"{words}",
        detail={"features": explained, "windows": len(rows),
                "imputed": [f for k, f in enumerate(FEATURES)
                            if judged.missing[rows, k].any()],
                "window_s": step.total_seconds(), "baseline": base_span,
                "baseline_windows": b_n,
                "baseline_kind": "trailing" if baseline is None else "given",
                "chronic": False})


def _change(e: dict) -> str:
    """A feature's change in words: points of utilization, percent of a ratio, PUE units."""
    if e["feature"] == "utilization":
        return f"{e['change'] * 100:+.0f} points"
    if e["feature"] == "pue":
        return f"{e['change']:+.3f}"
    base = e["baseline_median"]
    return f"{e['change'] / base:+.0%}" if base else "new"


# -- entry point ---------------------------------------------------------------------------
def run(store: Store, period: Period, policy: Policy, topology: Topology, *,
        baseline: Period | None = None, window: timedelta = timedelta(hours=1),
        lookback: timedelta = LOOKBACK) -> list[Finding]:
    """Lost accelerators over ``period``, and site windows unlike the site's own baseline.

    Each window is judged against the site's earlier windows within ``lookback`` (read from
    before the period too) that were not anomalous themselves; a ``baseline`` period, when
    given, replaces that with one fixed baseline the caller vouches for, whose windows are
    not judged. The same inputs always give the same findings.
    """
    findings = _lost_accelerators(store, period)
    findings += _site_anomalies(store, period, policy, topology, baseline=baseline,
                                window=window, lookback=lookback)
    return findings
