"""Anomalies: accelerators that fell off the bus, and sites that leave their own normal.

Two rules, both reading windowed aggregates from the store, never raw samples:

``accelerator_lost`` (critical). A device whose ``health`` minimum over the period is below 1
(one grouped query over the whole fleet) is looked at again minute by minute (a second query
restricted to those few devices). Each run of unhealthy minutes, ended by a healthy reading,
is one episode: it starts at the first unhealthy minute and ends one minute after the last
(or at the period end). Minutes without data neither end nor extend an episode; they lower
its completeness.

``site_anomaly`` (warning; critical for the most extreme). Each site is described per window
(default 1 h, aligned in China time like every PUE report; only whole windows inside the
period count) by four features:

- ``utilization``: mean accelerator utilization (ratio);
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

Each feature is standardized against the site's own baseline: robust z = (x - site median)
/ scale. The location is per site because sites differ by design (a western hub's PUE of
1.15 would be an eastern edge site's fault). The scale is the site's IQR / 1.349 but never
below (a) the median of that scale over all sites, because a site's handful of baseline
windows can be flat by chance; (b) the job-churn noise of a site of n accelerators at
utilization u, sqrt(u(1-u)/n) for utilization and sqrt((1-u)/(u n)) for log watts per
utilization, because a 3-card site swings by a third of its capacity when one job ends; and
(c) a floor per feature (`FLOORS`): the smallest change worth a page. A missing value (a hub
site has no link to its own hub site; an incomplete PUE window; no probe) is imputed with the
site's baseline median, i.e. z = 0, and lowers the finding's completeness.

An IsolationForest (``seed``, ``contamination``) is trained on the baseline windows' z-scores
of all sites and scores the current windows. The decision threshold is conservative, since a
false page costs more than a missed wobble: a window is anomalous when the forest predicts an
outlier (its ``contamination`` threshold) *and* some feature is at least ``Z_MIN`` from the
site median, or when a feature is at least ``Z_ALONE`` away whatever the forest says. Why,
as measured on 15 simulated runs (1,500 and 20,000 accelerators, 12 to 72 h, 73,000 normal
site-windows): with its 'auto' threshold the forest calls 61% of normal windows outliers
(alone, its site findings were 37% true), and its scores saturate at the edge of the data it
was trained on, so a cooling fault's PUE at z 17 can score like the baseline's own extremes.
The largest |z| of any normal window was 6.1 (utilization following the day at a small edge
site); the injected faults' windows reached 14-19. One finding per contiguous run of anomalous
windows of a site, explained by its two most deviant features (median z over the run) with
their values and the site's baseline medians; critical when a feature reaches ``Z_CRITICAL``.

The baseline defaults to the first half of the period and must hold normal operation; the
windows scored are the period's windows outside the baseline.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Literal

import numpy as np
import pandas as pd

from computewatch.findings import Finding, Period, Severity
from computewatch.pipelines._episodes import episodes
from computewatch.policy import Policy
from computewatch.pue import meter_readings, window_edges, window_pue
from computewatch.store import Aggregate, Query, Store
from computewatch.topology import Site, Topology

__all__ = ["FEATURES", "FLOORS", "HEALTH_STEP", "Z_ALONE", "Z_CRITICAL", "Z_MIN", "run"]

log = logging.getLogger(__name__)

PIPELINE = "anomaly"
HEALTH_STEP = timedelta(minutes=1)
"""Resolution at which a lost device's episodes are timed."""

FEATURES = ("utilization", "watts_per_utilization", "pue", "rtt_to_hub")
_LOG_FEATURES = frozenset({"watts_per_utilization", "rtt_to_hub"})
_UNITS = {"utilization": "ratio", "watts_per_utilization": "W", "pue": "factor",
          "rtt_to_hub": "s"}

FLOORS = {"utilization": 0.10, "watts_per_utilization": 0.05, "pue": 0.02, "rtt_to_hub": 0.05}
"""Smallest scale per feature, in its unit (log units, i.e. relative, for log features).
Utilization: 0.10, as it follows demand and eastern and edge sites swing by up to +-30% of
their load between day and night, which a baseline of a few hours does not see; only a
collapse or surge of most of a site's capacity is an anomaly (a lasting shortfall is the
underuse pipeline's job). Watts per utilization 5%, PUE 0.02 (its daily swing is +-0.03),
RTT 5%."""

Z_MIN = 8.0
"""A window is anomalous only if some feature is this many robust SDs from the site median."""

Z_ALONE = 10.0
"""A window this far from the site median on one feature is anomalous even when the forest,
whose scores saturate at the edge of the baseline it saw, does not isolate it."""

Z_CRITICAL = 12.0
"""A run whose most deviant feature reaches this robust z is critical."""

_MIN_BASELINE_WINDOWS = 2
"""A site with fewer baseline windows is not scored: one window says nothing of its spread."""
_READING_BUCKET = timedelta(minutes=5)
_TREES = 200
_IQR_TO_SD = 1.349

HEALTH_DEFINITION = (
    "accelerator health (1 healthy, 0 unhealthy or lost) as the minimum per 1-minute bucket; "
    "an episode is a run of unhealthy minutes ended by a healthy reading; it starts at the "
    "first unhealthy minute and ends one minute after the last (or at the period end)")
SITE_DEFINITION = (
    "IsolationForest over per-site window features (mean utilization, log watts per unit of "
    "utilization, energy-based PUE, log median RTT to the hub site), each as a robust z-score "
    "against the site's baseline (median; scale IQR/1.349, at least the fleet median scale, "
    "the job-churn noise and a per-feature floor); a window is anomalous when the forest "
    "flags it and a feature's |z| >= {z_min:g}, or when a feature's |z| >= {z_alone:g}")


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
    fine = store.query(Query("accelerator", ("health",), period.start, period.end,
                             where={"device": sorted(places.index)}, group_by=("device",),
                             window=HEALTH_STEP, agg=Aggregate.MIN))
    step = pd.Timedelta(HEALTH_STEP)
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
                detail={"node": place.node, "recovered": bool(recovered),
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
    bucket = min(_READING_BUCKET, window / 2)
    t0, t1 = edges[0].to_pydatetime(), edges[-1].to_pydatetime()
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


# -- standardization and scoring -----------------------------------------------------------
def _transform(feats: pd.DataFrame) -> pd.DataFrame:
    """Features on the scale they are compared on: log for ratios of positive quantities."""
    out = feats[list(FEATURES)].astype(float).copy()
    for f in _LOG_FEATURES:
        out[f] = np.log(out[f].where(out[f] > 0))
    return out


def _accelerators(store: Store, span: Period) -> pd.Series:
    """Accelerators reporting utilization per site over ``span`` (one row per device)."""
    df = store.query(Query("accelerator", ("utilization_ratio",), span.start, span.end,
                           group_by=("site", "device"), agg=Aggregate.COUNT))
    return df[df.utilization_ratio > 0].groupby("site").size()


def _baseline_stats(base: pd.DataFrame,
                    accelerators: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-site median and robust scale (see the module docstring) of the baseline."""
    t = _transform(base).assign(site=base.site.to_numpy())
    grouped = t.groupby("site")
    median = grouped.median()[list(FEATURES)]
    iqr = grouped.quantile(0.75) - grouped.quantile(0.25)
    site_scale = (iqr / _IQR_TO_SD)[list(FEATURES)]
    fleet = site_scale.median(skipna=True)
    lower = pd.DataFrame({f: np.maximum(fleet[f], FLOORS[f]) if pd.notna(fleet[f])
                          else FLOORS[f] for f in FEATURES}, index=median.index)
    # Job churn: the mean of n cards that each hold a job or not moves by sqrt(u(1-u)/n)
    # from one window to the next as jobs come and go, so a 3-card site is never as steady
    # as a 200-card one, however flat its few baseline windows happened to be. Watts per
    # utilization (idle/u + k per card) moves by at most d ln u, i.e. sqrt((1-u)/(u n)).
    u = median["utilization"].clip(0.05, 0.95)
    n = accelerators.reindex(median.index).fillna(1).clip(lower=1)
    churn = np.sqrt(u * (1 - u) / n)
    lower["utilization"] = np.maximum(lower["utilization"], churn)
    lower["watts_per_utilization"] = np.maximum(lower["watts_per_utilization"], churn / u)
    scale = site_scale.where(site_scale > lower, lower)
    return median, scale


def _zscores(feats: pd.DataFrame, median: pd.DataFrame, scale: pd.DataFrame) -> pd.DataFrame:
    """Robust z per feature; missing values (and features without a baseline) give 0."""
    t = _transform(feats)
    med = median.reindex(feats.site).to_numpy()
    sc = scale.reindex(feats.site).to_numpy()
    z = (t.to_numpy() - med) / sc
    return pd.DataFrame(np.nan_to_num(z, nan=0.0), columns=list(FEATURES), index=feats.index)


def _natural(feature: str, value: float) -> float:
    return float(np.exp(value)) if feature in _LOG_FEATURES else float(value)


def _site_anomalies(store: Store, period: Period, policy: Policy, topology: Topology, *,
                    baseline: Period, window: timedelta, seed: int,
                    contamination: float | Literal["auto"]) -> list[Finding]:
    """IsolationForest on robust z-scores of per-site window features; one finding per run."""
    floor = float(policy.pue.min_completeness.value)
    busy = float(policy.utilization.busy_level.value)
    base = _site_features(store, baseline, window, topology, floor, busy)
    cur = _site_features(store, period, window, topology, floor, busy)
    if base.empty or cur.empty:
        log.info("anomaly: no baseline or no current windows; site_anomaly not evaluated")
        return []
    seen = base.groupby("site").size()
    known = seen.index[seen >= _MIN_BASELINE_WINDOWS]
    in_baseline = (cur.time >= pd.Timestamp(baseline.start)) & \
        (cur.time + pd.Timedelta(window) <= pd.Timestamp(baseline.end))
    cur = cur[~in_baseline & cur.site.isin(known)].reset_index(drop=True)
    if cur.empty:
        log.info("anomaly: no site has %d baseline windows and windows to score",
                 _MIN_BASELINE_WINDOWS)
        return []
    base = base[base.site.isin(known)].reset_index(drop=True)
    median, scale = _baseline_stats(base, _accelerators(store, baseline))
    zb, zc = _zscores(base, median, scale), _zscores(cur, median, scale)
    # Imported here, not at the top: the pipelines' registry imports every pipeline, and
    # scikit-learn (~90 MB) would otherwise sit in memory through the others' peaks.
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=_TREES, contamination=contamination,
                             random_state=seed).fit(zb.to_numpy())
    scores = forest.score_samples(zc.to_numpy())
    outlier = forest.predict(zc.to_numpy()) == -1
    threshold = float(forest.offset_)
    peak = zc.abs().max(axis=1).to_numpy()
    flagged = (outlier & (peak >= Z_MIN)) | (peak >= Z_ALONE)
    cur = cur.assign(_score=scores, _flag=flagged, _peak=peak)
    missing = _transform(cur).isna()
    places = {s.id: s for s in topology.sites}
    step = pd.Timedelta(window)
    findings = []
    for site, g in cur.groupby("site", sort=True):
        # Lay the site's windows on the full grid so a missing window breaks a run.
        times = pd.DatetimeIndex(g.time)
        grid = pd.date_range(times.min(), times.max(), freq=step)
        flags = g.set_index("time")._flag.reindex(grid, fill_value=False).to_numpy(dtype=bool)
        for ep in episodes(flags):
            idx = g.index[(g.time >= grid[ep.first]) & (g.time <= grid[ep.last])]
            findings.append(_site_finding(
                str(site), cur.loc[idx], zc.loc[idx], missing.loc[idx], median.loc[site],
                places.get(str(site)), step, threshold, baseline, period))
    return findings


def _site_finding(site: str, rows: pd.DataFrame, z: pd.DataFrame, missing: pd.DataFrame,
                  median: pd.Series, place: Site | None, step: pd.Timedelta, threshold: float,
                  baseline: Period, period: Period) -> Finding:
    """One run of anomalous windows, explained by its two most deviant features."""
    run_z = z.median()
    top = run_z.abs().sort_values(ascending=False, kind="stable").index[:2]
    explained = []
    for f in top:
        value = rows[f].median()
        explained.append({
            "feature": f, "value": float(value) if pd.notna(value) else float("nan"),
            "baseline_median": _natural(f, median[f]) if pd.notna(median[f]) else float("nan"),
            "z": round(float(run_z[f]), 2), "unit": _UNITS[f]})
    peak = float(rows._peak.max())
    # A feature the site never has (a hub site's link to itself) is not missing data.
    applicable = [f for f in FEATURES if pd.notna(median[f])]
    completeness = float(1.0 - missing[applicable].to_numpy().mean()) if applicable else 0.0
    start = rows.time.min()
    end = min(rows.time.max() + step, pd.Timestamp(period.end))
    words = ", ".join(
        f"{e['feature']} {e['value']:.4g} vs baseline {e['baseline_median']:.4g} "
        f"(z {e['z']:+.1f})" for e in explained)
    hub = place.hub if place else ""
    cluster = (place.cluster or "") if place else ""
    return Finding(
        PIPELINE, "site_anomaly", "site", site,
        Severity.CRITICAL if peak >= Z_CRITICAL else Severity.WARNING,
        round(peak, 3), Z_MIN, "robust_z", start.to_pydatetime(), end.to_pydatetime(),
        completeness=completeness, hub=hub, cluster=cluster,
        site=site, definition=SITE_DEFINITION.format(z_min=Z_MIN, z_alone=Z_ALONE),
        message=f"{site}: unusual from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: "
                f"{words}",
        detail={"features": explained, "windows": len(rows),
                "imputed": [f for f in FEATURES if missing[f].any()],
                "window_s": step.total_seconds(),
                "lowest_score": round(float(rows._score.min()), 4),
                "score_threshold": round(threshold, 4),
                "baseline": [baseline.start.isoformat(), baseline.end.isoformat()]})


# -- entry point ---------------------------------------------------------------------------
def run(store: Store, period: Period, policy: Policy, topology: Topology, *,
        baseline: Period | None = None, window: timedelta = timedelta(hours=1), seed: int = 0,
        contamination: float | Literal["auto"] = "auto") -> list[Finding]:
    """Lost accelerators over ``period``, and site windows unlike the ``baseline``.

    ``baseline`` defaults to the first half of ``period``; it should hold normal operation.
    The same inputs and ``seed`` always give the same findings.
    """
    if baseline is None:
        baseline = Period(period.start, period.start + (period.end - period.start) / 2)
    findings = _lost_accelerators(store, period)
    findings += _site_anomalies(store, period, policy, topology, baseline=baseline,
                                window=window, seed=seed, contamination=contamination)
    return findings
