"""The anomaly pipeline: lost accelerators timed to the minute, site anomalies explained by the
feature that moved, deterministic with its seed, and checked against the simulator's truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.findings import Finding, Period, Severity, findings_frame
from computewatch.pipelines import anomaly
from computewatch.policy import load_policy
from computewatch.sim.incidents import GroundTruth
from computewatch.store import DuckDBStore
from computewatch.topology import load_topology

T0 = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)  # 08:00 China time: windows align on the hour
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def topology():
    return load_topology()


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _minutes(start: datetime, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq=MIN)


# -- accelerator_lost -----------------------------------------------------------------------
def _health_frame(device: str, health: np.ndarray, keep: np.ndarray | None = None) -> pd.DataFrame:
    n = len(health)
    df = pd.DataFrame({
        "time": _minutes(T0, n), "hub": "jjj", "cluster": "zhangjiakou", "site": "zjk-b",
        "node": "zjk-b-n0000", "device": device,
        # A lost card reports health 0 and nothing else, as in the simulator.
        "utilization_ratio": np.where(health > 0, 0.8, np.nan),
        "health": health.astype(float)})
    return df if keep is None else df[keep]


@pytest.fixture()
def health_store(tmp_path):
    n = 120
    back = np.ones(n)
    back[37:82] = 0.0  # lost at minute 37, healthy again at minute 82
    gone = np.ones(n)
    gone[100:] = 0.0  # lost at minute 100, never back
    gap = np.ones(n)
    gap[10:41] = 0.0  # unhealthy 10-40, but no data at all for minutes 21-30
    keep = np.ones(n, dtype=bool)
    keep[21:31] = False
    with DuckDBStore(tmp_path / "health.duckdb") as store:
        for frame in (_health_frame("zjk-b-n0000-gpu0", np.ones(n)),
                      _health_frame("zjk-b-n0000-gpu1", back),
                      _health_frame("zjk-b-n0000-gpu2", gone),
                      _health_frame("zjk-b-n0000-gpu3", gap, keep)):
            store.write("accelerator", frame)
        yield store


def _lost(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        if f.rule == "accelerator_lost":
            out.setdefault(f.subject, []).append(f)
    return out


def test_a_lost_device_is_timed_to_the_minute(health_store, policy, topology):
    period = Period(T0, T0 + 2 * HOUR)
    lost = _lost(anomaly.run(health_store, period, policy, topology))
    assert "zjk-b-n0000-gpu0" not in lost
    (back,) = lost["zjk-b-n0000-gpu1"]
    assert back.start == T0 + 37 * MIN and back.end == T0 + 82 * MIN
    assert back.severity == Severity.CRITICAL and back.subject_type == "accelerator"
    assert (back.observed, back.threshold) == (0.0, 1.0)
    assert (back.hub, back.cluster, back.site) == ("jjj", "zhangjiakou", "zjk-b")
    assert back.detail["recovered"] is True and back.detail["node"] == "zjk-b-n0000"
    assert back.completeness == 1.0
    (gone,) = lost["zjk-b-n0000-gpu2"]
    assert gone.start == T0 + 100 * MIN and gone.end == period.end
    assert gone.detail["recovered"] is False and "not back" in gone.message


def test_missing_minutes_do_not_end_an_episode(health_store, policy, topology):
    period = Period(T0, T0 + 2 * HOUR)
    (gap,) = _lost(anomaly.run(health_store, period, policy, topology))["zjk-b-n0000-gpu3"]
    assert gap.start == T0 + 10 * MIN and gap.end == T0 + 41 * MIN
    assert gap.completeness == pytest.approx(21 / 31)


def test_the_episode_is_clipped_to_the_period(health_store, policy, topology):
    period = Period(T0 + 50 * MIN, T0 + 110 * MIN)
    lost = _lost(anomaly.run(health_store, period, policy, topology))
    (back,) = lost["zjk-b-n0000-gpu1"]
    assert back.start == T0 + 50 * MIN and back.end == T0 + 82 * MIN
    (gone,) = lost["zjk-b-n0000-gpu2"]
    assert gone.start == T0 + 100 * MIN and gone.end == T0 + 110 * MIN


# -- site_anomaly on hand-made sites --------------------------------------------------------
SITES = {"zjk-a": 1.20, "zjk-b": 1.25, "zjk-c": 1.30, "zjk-d": 1.22, "bj-ai": 1.35,
         "tj-binhai": 1.45}  # site -> PUE
FAULTY, FAULT = "zjk-c", (T0 + 8 * HOUR, T0 + 10 * HOUR)
HOURS = 12


def _site_frames(site: str, pue: float, rng: np.random.Generator, hub_rtt: float):
    """Twelve hours of 8 cards, the site's two meters and its link to the hub site zjk-a."""
    n_t, n_d = HOURS * 60, 8
    times = _minutes(T0, n_t)
    allocated = np.repeat(rng.random((HOURS, n_d)) < 0.7, 60, axis=0)
    util = np.where(allocated, np.clip(rng.normal(0.85, 0.03, (n_t, n_d)), 0, 1), 0.01)
    power = (80.0 + 620.0 * util ** 0.85) * rng.normal(1.0, 0.01, (n_t, n_d))
    place = dict(hub="jjj", cluster="" if site.startswith(("bj", "tj")) else "zhangjiakou",
                 site=site)
    acc = pd.DataFrame({
        "time": np.repeat(times, n_d), **place,
        "node": f"{site}-n0000", "device": np.tile([f"{site}-gpu{k}" for k in range(n_d)], n_t),
        "utilization_ratio": util.ravel(), "power_watts": power.ravel(),
        "health": 1.0})
    it_w = power.sum(axis=1) * 1.6
    factor = pue + rng.normal(0.0, 0.005, n_t)
    if site == FAULTY:
        factor[(times >= FAULT[0]) & (times < FAULT[1])] += 0.4
    meters = []
    for scope, watts in (("it", it_w), ("facility", it_w * factor)):
        joules = 1e9 + np.concatenate([[0.0], np.cumsum(watts * 60.0)])[:-1]
        meters.append(pd.DataFrame({"time": times, **place, "meter": f"{site}-{scope}",
                                    "scope": scope, "joules_total": joules,
                                    "watts": watts}))
    links = None
    if site != "zjk-a":
        links = pd.DataFrame({
            "time": times, "src_site": site, "dst_site": "zjk-a", "src_hub": "jjj",
            "dst_hub": "jjj", "tier": "regional", "probe": "udp",
            "rtt_p50_seconds": hub_rtt * rng.lognormal(0.0, 0.02, n_t)})
    return acc, pd.concat(meters, ignore_index=True), links


@pytest.fixture(scope="module")
def sites_store(tmp_path_factory):
    rng = np.random.default_rng(7)
    with DuckDBStore(tmp_path_factory.mktemp("sites") / "sites.duckdb") as store:
        for k, (site, pue) in enumerate(SITES.items()):
            acc, meters, links = _site_frames(site, pue, rng, hub_rtt=0.8e-3 + 0.4e-3 * k)
            store.write("accelerator", acc)
            store.write("facility_power", meters)
            if links is not None:
                store.write("link_latency", links)
        yield store


def test_a_pue_jump_is_the_site_anomaly_and_pue_explains_it(sites_store, policy, topology):
    period = Period(T0, T0 + HOURS * HOUR)  # baseline: the first six hours
    found = [f for f in anomaly.run(sites_store, period, policy, topology)
             if f.rule == "site_anomaly"]
    assert [f.subject for f in found] == [FAULTY]
    (f,) = found
    assert (f.start, f.end) == FAULT
    assert f.subject_type == "site" and (f.hub, f.cluster, f.site) == ("jjj", "zhangjiakou",
                                                                      FAULTY)
    assert f.severity == Severity.CRITICAL  # 0.4 of PUE is 20 times the 0.02 floor
    top = f.detail["features"]
    assert len(top) == 2 and top[0]["feature"] == "pue"
    assert top[0]["value"] == pytest.approx(SITES[FAULTY] + 0.4, abs=0.02)
    assert top[0]["baseline_median"] == pytest.approx(SITES[FAULTY], abs=0.02)
    assert top[0]["z"] > anomaly.Z_CRITICAL
    assert f.message.startswith(f"{FAULTY}: unusual from 2026-10-01 08:00 to 2026-10-01 10:00")
    assert f"pue {top[0]['value']:.4g} vs baseline {top[0]['baseline_median']:.4g}" in f.message
    assert f.observed >= f.threshold == anomaly.Z_FLAG
    assert f.completeness == 1.0  # zjk-c has its hub link; every feature had data


def test_a_hub_site_without_a_link_to_itself_is_scored(sites_store, policy, topology):
    # zjk-a is the jjj hub's role-'hub' site: its rtt_to_hub is imputed, not a reason to skip.
    period = Period(T0, T0 + HOURS * HOUR)
    base = Period(T0, T0 + 6 * HOUR)
    feats = anomaly._site_features(sites_store, base, HOUR, topology, 0.9, 0.1)
    hub = feats[feats.site == "zjk-a"]
    assert len(hub) == 6 and hub.rtt_to_hub.isna().all() and hub.pue.notna().all()
    assert feats[feats.site == "zjk-b"].rtt_to_hub.notna().all()
    assert not [f for f in anomaly.run(sites_store, period, policy, topology, baseline=base)
                if f.site == "zjk-a"]


def test_same_inputs_same_findings(sites_store, policy, topology):
    period = Period(T0, T0 + HOURS * HOUR)
    runs = [findings_frame(anomaly.run(sites_store, period, policy, topology))
            for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert len(runs[0]) == 1


def test_no_baseline_data_means_no_site_findings(sites_store, policy, topology):
    before = Period(T0 - 6 * HOUR, T0)
    period = Period(T0, T0 + HOURS * HOUR)
    assert anomaly.run(sites_store, period, policy, topology, baseline=before) == []


# -- the simulator's ground truth -----------------------------------------------------------
@pytest.fixture(scope="module")
def simulated(simulated_day, simulated_store):
    """The session's simulated day (conftest.py): 24 h, 1,500 accelerators, seed 3."""
    return simulated_store, simulated_day.history.truth, simulated_day.fleet.topology


def _true(f: Finding, truth: GroundTruth) -> bool:
    """A site anomaly names an incident's site while it lasts, or a site made underused."""
    if f.site in truth.underused_sites:
        return True
    for inc in truth.incidents:
        if not (f.start < inc.end and f.end > inc.start):
            continue
        sites = {inc.subject, inc.detail.get("site", ""), *inc.detail.get("sites", ()),
                 *(inc.subject.split("|") if inc.kind == "link_degraded" else ())}
        if f.site in sites:
            return True
    return False


def _runs(simulated, policy):
    """The default run (first half as baseline), and one whose baseline precedes the faults."""
    store, truth, topo = simulated
    period = Period(truth.start, truth.end)
    first = min(i.start for i in truth.incidents)
    clean = Period(truth.start, truth.start + (first - truth.start) // HOUR * HOUR)
    return {"first_half": anomaly.run(store, period, policy, topo),
            "before_faults": anomaly.run(store, period, policy, topo, baseline=clean)}


def test_the_simulated_lost_gpu_is_found_to_the_minute(simulated, policy):
    store, truth, topo = simulated
    lost = truth.incident("device_lost")
    findings = anomaly.run(store, Period(truth.start, truth.end), policy, topo)
    hits = _lost(findings)
    assert list(hits) == [lost.subject]
    (f,) = hits[lost.subject]
    assert abs(f.start - lost.start) <= MIN and f.end == truth.end
    assert f.site == lost.detail["site"]


def test_the_cooling_fault_is_a_site_anomaly_explained_by_pue(simulated, policy):
    store, truth, topo = simulated
    cool = truth.incident("cooling_fault")
    period = Period(truth.start, truth.end)
    assert cool.start < truth.start + (truth.end - truth.start) / 2, \
        "the fault falls in the default baseline: the baseline below is built to precede it"
    baseline = Period(truth.start, truth.start + (cool.start - truth.start) // HOUR * HOUR)
    found = [f for f in anomaly.run(store, period, policy, topo, baseline=baseline)
             if f.rule == "site_anomaly" and f.site == cool.subject
             and f.start < cool.end and f.end > cool.start]
    assert found
    assert found[0].detail["features"][0]["feature"] == "pue"
    assert found[0].detail["features"][0]["value"] > \
        found[0].detail["features"][0]["baseline_median"] + 0.25


def test_site_anomaly_precision_against_the_truth(simulated, policy, record_property):
    _, truth, _ = simulated
    runs = _runs(simulated, policy)
    judged = [(name, f, _true(f, truth)) for name, fs in runs.items() for f in fs
              if f.rule == "site_anomaly"]
    for name, f, ok in judged:
        print(f"{name:14s} {'TP' if ok else 'FP'} {f.severity.name:8s} {f.message}")
    precision = sum(ok for *_, ok in judged) / len(judged) if judged else 1.0
    print(f"site_anomaly precision {precision:.2f} over {len(judged)} findings")
    record_property("site_anomaly_precision", precision)
    record_property("site_anomaly_findings", len(judged))
    assert judged  # the run before the faults finds the cooling fault at least
    assert precision >= 0.9


def test_column_quartiles_by_hand_and_as_numpy_gives_them():
    # Column 0: 1, 3, 2, 10 -> sorted 1 2 3 10: median (2 + 3) / 2; the 75th percentile at
    # 3 x 0.75 = 2.25, between 3 and 10: 3 + 7 x 0.25; the 25th at 0.75, between 1 and 2.
    # Column 1 has no value; column 2 one.
    nan = np.nan
    base = np.array([[1.0, nan, 5.0], [3.0, nan, nan], [2.0, nan, nan], [10.0, nan, nan]])
    median, q75, q25 = anomaly._column_quartiles(base)
    np.testing.assert_array_equal(median, [2.5, nan, 5.0])
    np.testing.assert_array_equal(q75, [4.75, nan, 5.0])
    np.testing.assert_array_equal(q25, [1.75, nan, 5.0])
    # Bitwise what np.median and np.percentile give each column's values, ties included.
    rng = np.random.default_rng(7)
    for _ in range(300):
        base = np.round(rng.normal(size=(int(rng.integers(1, 30)), 6)), 1)
        base[rng.random(base.shape) < 0.4] = nan
        got = anomaly._column_quartiles(base)
        for c in range(base.shape[1]):
            values = base[:, c][~np.isnan(base[:, c])]
            want = ([np.median(values), *np.percentile(values, [75, 25])] if values.size
                    else [nan] * 3)
            np.testing.assert_array_equal([g[c] for g in got], want)
