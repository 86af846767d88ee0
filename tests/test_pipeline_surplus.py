"""Surplus pipeline: RTT from a city (observed vs estimated), circles, idle cards and hours
on hand-computable data, then "which idle NPUs can serve Shanghai within 5 ms?" on the
simulator, checked against independent grouped queries on the same store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from computewatch.findings import Period, Severity
from computewatch.pipelines.surplus import SURPLUS_COLUMNS, run, surplus
from computewatch.policy import load_policy
from computewatch.store import Aggregate, DuckDBStore, Query
from computewatch.topology import Site, Topology, great_circle_km, load_topology

T0 = datetime(2026, 10, 1, tzinfo=UTC)
MIN = timedelta(minutes=1)
PERIOD = Period(T0, T0 + timedelta(hours=2))
SHANGHAI = (31.22, 121.48)
# A ~4 km from Shanghai's centre, B ~150 km due west, C in Guiyang ~1,526 km away.
A_LL, B_LL, C_LL = (31.25, 121.45), (31.22, 119.90), (26.57, 106.71)
OBSERVED_AB = 0.003  # median of the A->B window p50s; B->A runs slower (3.4 ms)


def _site(id_: str, city: str, hub: str, ll: tuple[float, float], inv: list[dict],
          cluster: str | None = None) -> Site:
    return Site(id=id_, name=id_, province="x", city=city, hub=hub, cluster=cluster, lat=ll[0],
                lon=ll[1], role="regional", accelerators=inv, it_capacity_kw=100)


def _topology(a_city: str = "Shanghai", a_ll: tuple[float, float] = A_LL) -> Topology:
    base = load_topology()
    sites = [
        _site("sh-a", a_city, "yrd", a_ll, [
            {"vendor": "huawei", "model": "Ascend 910B", "count": 2},
            {"vendor": "nvidia", "model": "H100", "count": 1}]),
        _site("b-150", "Liyang", "yrd", B_LL, [
            {"vendor": "huawei", "model": "Ascend 910B", "count": 1},
            {"vendor": "huawei", "model": "Ascend 310P", "count": 1},
            {"vendor": "nvidia", "model": "A100", "count": 1}]),
        _site("gy-c", "Guiyang", "guizhou", C_LL, [
            {"vendor": "nvidia", "model": "A100", "count": 1},
            {"vendor": "huawei", "model": "Ascend 910B", "count": 1}], cluster="guian"),
    ]
    return Topology(hubs=base.hubs, clusters=base.clusters, demand_cities=base.demand_cities,
                    sites=sites)


# device: (site, hub, cluster, vendor, model, utilization in hour 1, in hour 2); None = no data
DEVICES = {
    "a1": ("sh-a", "yrd", "", "huawei", "Ascend 910B", 0.05, 0.05),
    "a2": ("sh-a", "yrd", "", "huawei", "Ascend 910B", 0.80, 0.02),
    "a3": ("sh-a", "yrd", "", "nvidia", "H100", 0.50, 0.50),
    "b1": ("b-150", "yrd", "", "huawei", "Ascend 910B", 0.00, 0.00),
    "b2": ("b-150", "yrd", "", "huawei", "Ascend 310P", None, 0.00),  # joined in hour 2
    "b3": ("b-150", "yrd", "", "nvidia", "A100", 0.00, 0.60),
    "c1": ("gy-c", "guizhou", "guian", "nvidia", "A100", 0.05, 0.05),
    "c2": ("gy-c", "guizhou", "guian", "huawei", "Ascend 910B", 0.09, 0.09),
}


def _accelerator_rows(times: list[datetime], override: float | None = None) -> pd.DataFrame:
    rows = []
    for t in times:
        for dev, (site, hub, cluster, vendor, model, h1, h2) in DEVICES.items():
            u = h1 if t < T0 + timedelta(hours=1) else h2
            if u is None:
                continue
            rows.append({"time": t, "hub": hub, "cluster": cluster, "site": site, "device": dev,
                         "node": f"{site}-n0", "vendor": vendor, "model": model,
                         "ecosystem": "cuda" if vendor == "nvidia" else "cann",
                         "utilization_ratio": u if override is None else override})
    return pd.DataFrame(rows)


def _link_rows(src: str, dst: str, times: list[datetime], p50: list[float]) -> list[dict]:
    hubs = {"sh-a": "yrd", "b-150": "yrd", "gy-c": "guizhou"}
    return [{"time": t, "src_site": src, "dst_site": dst, "src_hub": hubs[src],
             "dst_hub": hubs[dst], "tier": "regional", "probe": "udp", "rtt_p50_seconds": v}
            for t, v in zip(times, p50, strict=True)]


@pytest.fixture
def store(tmp_path):
    s = DuckDBStore(tmp_path / "s.duckdb")
    times = [T0 + k * MIN for k in range(120)]
    s.write("accelerator", _accelerator_rows(times))
    links = (
        # A->B: 100 windows at 3 ms, 20 at 9 ms -> median 3 ms; B->A median 3.4 ms.
        _link_rows("sh-a", "b-150", times, [0.009 if k % 6 == 0 else OBSERVED_AB
                                            for k in range(120)])
        + _link_rows("b-150", "sh-a", times, [0.0034] * 120)
        # B->C is not a city link: C stays estimated.
        + _link_rows("b-150", "gy-c", times, [0.012] * 120)
        # A->C outside the period: ignored.
        + _link_rows("sh-a", "gy-c", [T0 - 10 * MIN], [0.0001])
    )
    s.write("link_latency", pd.DataFrame(links))
    yield s
    s.close()


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _estimate(ll: tuple[float, float]) -> float:
    return great_circle_km(*ll, *SHANGHAI) * 10e-6 * 1.5


def _rows(df: pd.DataFrame) -> dict[tuple[str, str, str], pd.Series]:
    return {(r.site, r.ecosystem, r.model): r for r in df.itertuples()}


def test_observed_and_estimated_rtt(store, policy):
    assert 149 < great_circle_km(*B_LL, *SHANGHAI) < 151
    assert 1450 < great_circle_km(*C_LL, *SHANGHAI) < 1550
    df = surplus(store, PERIOD, policy, _topology(), near="Shanghai", within_s=0.030)
    assert list(df.columns) == SURPLUS_COLUMNS
    rtt = df.groupby("site").agg(rtt=("city_rtt_s", "first"), src=("rtt_source", "first"),
                                 tier=("tier_circle", "first"))
    # B is probed from the Shanghai site: the lower of the two directions' medians, even
    # though the estimate (150 km x 15 us = 2.25 ms) would be lower.
    assert rtt.loc["b-150"].src == "observed"
    assert rtt.loc["b-150"].rtt == pytest.approx(OBSERVED_AB)
    assert _estimate(B_LL) == pytest.approx(0.00225, rel=2e-3)
    # A (no other Shanghai site probes it) and C (only probed from B) are estimated.
    assert rtt.loc["sh-a"].src == "estimated"
    assert rtt.loc["sh-a"].rtt == pytest.approx(_estimate(A_LL))
    assert rtt.loc["gy-c"].src == "estimated"
    assert rtt.loc["gy-c"].rtt == pytest.approx(_estimate(C_LL))
    assert rtt.tier.to_dict() == {"sh-a": "metro", "b-150": "regional", "gy-c": "beyond"}
    assert df.city_rtt_s.is_monotonic_increasing
    places = df.drop_duplicates("site").set_index("site")[["hub", "cluster"]]
    assert places.to_dict("index") == {"sh-a": {"hub": "yrd", "cluster": ""},
                                       "b-150": {"hub": "yrd", "cluster": ""},
                                       "gy-c": {"hub": "guizhou", "cluster": "guian"}}


@pytest.mark.parametrize(("within_s", "sites"), [
    (0.001, {"sh-a"}),
    (0.0025, {"sh-a"}),  # B's estimate fits, its observed 3 ms does not
    (0.005, {"sh-a", "b-150"}),
    (0.020, {"sh-a", "b-150"}),  # C: 1,526 km x 15 us = 22.9 ms
    (0.025, {"sh-a", "b-150", "gy-c"}),
])
def test_circles(store, policy, within_s, sites):
    df = surplus(store, PERIOD, policy, _topology(), near="Shanghai", within_s=within_s)
    assert set(df.site) == sites
    assert (df.city_rtt_s <= within_s).all()


def test_idle_cards_and_hours_by_hand(store, policy):
    df = surplus(store, PERIOD, policy, _topology(), near="shanghai", within_s=0.030)
    r = _rows(df)
    assert len(r) == 7
    a_cann = r[("sh-a", "cann", "Ascend 910B")]
    # a1: 0.05 for 2 h -> 1.9 h idle; a2: 0.80 then 0.02 -> mean 0.41 -> 1.18 h idle.
    assert a_cann.accelerators == 2 and a_cann.idle_cards == 2
    assert a_cann.idle_accelerator_hours == pytest.approx(3.08)
    assert a_cann.mean_utilization == pytest.approx(0.23)
    a_cuda = r[("sh-a", "cuda", "H100")]
    assert (a_cuda.accelerators, a_cuda.idle_cards) == (1, 0)
    assert a_cuda.idle_accelerator_hours == pytest.approx(1.0)
    # b2 only reported in hour 2: one hour with data, all idle.
    b_310 = r[("b-150", "cann", "Ascend 310P")]
    assert (b_310.idle_cards, b_310.idle_accelerator_hours) == (1, pytest.approx(1.0))
    assert r[("b-150", "cann", "Ascend 910B")].idle_accelerator_hours == pytest.approx(2.0)
    b_cuda = r[("b-150", "cuda", "A100")]  # idle in hour 1, busy (0.6) now
    assert b_cuda.idle_cards == 0 and b_cuda.idle_accelerator_hours == pytest.approx(1.4)
    assert b_cuda.mean_utilization == pytest.approx(0.3)
    # 0.09 is below the 0.10 busy level: idle.
    assert r[("gy-c", "cann", "Ascend 910B")].idle_cards == 1
    assert r[("gy-c", "cann", "Ascend 910B")].idle_accelerator_hours == pytest.approx(1.82)
    # Within an RTT, most idle cards first.
    assert df[df.site == "sh-a"].ecosystem.tolist() == ["cann", "cuda"]


def test_samples_outside_the_period_do_not_count(store, policy):
    before = [T0 - timedelta(hours=1) + k * MIN for k in range(60)]
    after = [PERIOD.end + k * MIN for k in range(60)]
    store.write("accelerator", _accelerator_rows(before + after, override=1.0))
    df = surplus(store, PERIOD, policy, _topology(), near="Shanghai", within_s=0.005)
    a_cann = _rows(df)[("sh-a", "cann", "Ascend 910B")]
    assert a_cann.idle_accelerator_hours == pytest.approx(3.08)  # step still exactly 1 min
    assert a_cann.idle_cards == 2


def test_filters(store, policy):
    topo = _topology()
    cann = surplus(store, PERIOD, policy, topo, near="Shanghai", within_s=0.005, ecosystem="CANN")
    assert set(cann.ecosystem) == {"cann"} and set(cann.site) == {"sh-a", "b-150"}
    assert cann.idle_cards.sum() == 4
    m = surplus(store, PERIOD, policy, topo, near="上海", within_s=0.030, model="ascend 910b")
    assert set(m.model) == {"Ascend 910B"} and set(m.site) == {"sh-a", "b-150", "gy-c"}
    none = surplus(store, PERIOD, policy, topo, near="Shanghai", within_s=0.005, model="H100",
                   ecosystem="cann")
    assert none.empty and list(none.columns) == SURPLUS_COLUMNS
    with pytest.raises(ValueError, match=r"unknown accelerator model 'B200'.*Ascend 910B"):
        surplus(store, PERIOD, policy, topo, near="Shanghai", within_s=0.005, model="B200")
    with pytest.raises(ValueError, match="unknown ecosystem 'rocm'"):
        surplus(store, PERIOD, policy, topo, near="Shanghai", within_s=0.005, ecosystem="rocm")


def test_unknown_city_lists_the_known_ones(store, policy):
    with pytest.raises(ValueError, match="unknown demand city 'Atlantis'") as err:
        surplus(store, PERIOD, policy, _topology(), near="Atlantis", within_s=0.005)
    assert "Shanghai" in str(err.value) and "Beijing" in str(err.value)
    with pytest.raises(ValueError, match="within_s"):
        surplus(store, PERIOD, policy, _topology(), near="Shanghai", within_s=0)


def test_city_site_by_distance(store, policy):
    # Named after another town but within 50 km of Shanghai: still the city's probe point.
    near = surplus(store, PERIOD, policy, _topology(a_city="Kunshan"), near="Shanghai",
                   within_s=0.005)
    assert set(near[near.site == "b-150"].rtt_source) == {"observed"}
    # Moved 80 km away and named otherwise: its probes no longer speak for Shanghai.
    far_ll = (31.22, 120.64)
    assert great_circle_km(*far_ll, *SHANGHAI) > 50
    far = surplus(store, PERIOD, policy, _topology(a_city="Kunshan", a_ll=far_ll),
                  near="Shanghai", within_s=0.030)
    assert set(far.rtt_source) == {"estimated"}


def test_run_findings(store, policy):
    findings = run(store, PERIOD, policy, _topology(), cities=["Shanghai"],
                   circles=(0.001, 0.005, 0.025))
    assert [f.detail["circle_s"] for f in findings] == [0.001, 0.005, 0.025]
    assert {(f.pipeline, f.rule, f.subject_type, f.subject, f.severity, f.unit, f.threshold)
            for f in findings} == {("surplus", "idle_capacity_within_circle", "city", "shanghai",
                                    Severity.INFO, "accelerators", 0.0)}
    metro, regional, wide = findings
    assert metro.observed == 2 and metro.message.startswith(
        "2 idle CANN cards (Ascend 910B) within 1 ms of Shanghai")
    assert metro.detail["tier"] == "metro" and regional.detail["tier"] == "regional"
    assert regional.observed == 4
    assert regional.message.startswith(
        "4 idle CANN cards (Ascend 910B, Ascend 310P) within 5 ms of Shanghai")
    assert regional.detail["idle_accelerator_hours"] == pytest.approx(3.08 + 1.0 + 2.0 + 1.0
                                                                      + 1.4)
    assert regional.detail["by_ecosystem"]["cuda"]["idle_cards"] == 0
    # 660 of 720 expected samples (b2 joined an hour late).
    assert regional.completeness == pytest.approx(660 / 720)
    assert wide.observed == 6 and wide.message.startswith(
        "5 idle CANN cards (Ascend 910B, Ascend 310P) and 1 idle CUDA card (A100) "
        "within 25 ms of Shanghai")
    assert wide.start == PERIOD.start and wide.end == PERIOD.end and wide.hub == "yrd"


def test_run_defaults_to_every_city(store, policy):
    topo = _topology()
    findings = run(store, PERIOD, policy, topo)
    assert len(findings) == 3 * len(topo.demand_cities)
    beijing = [f for f in findings if f.subject == "beijing"]
    assert beijing[0].observed == 0 and beijing[0].message.startswith("No idle cards within")


# --- the simulator ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(simulated_day, simulated_store):
    """The session's simulated day (conftest.py): 24 h, 1,500 accelerators, seed 3."""
    return simulated_store, simulated_day.fleet.topology, simulated_day.history


def test_idle_npus_for_shanghai_within_5ms(sim, policy):
    store, topo, history = sim
    period = Period(history.start, history.end)
    df = surplus(store, period, policy, topo, near="Shanghai", within_s=0.005, ecosystem="cann")
    assert not df.empty and set(df.ecosystem) == {"cann"}
    assert (df.city_rtt_s <= 0.005).all()

    # Independently: each site's RTT from Shanghai sites' link medians (full mesh: all probed).
    city = topo.city("Shanghai")
    anchors = {s.id for s in topo.sites if s.city == "Shanghai"
               or great_circle_km(s.lat, s.lon, city.lat, city.lon) <= 50}
    med = store.query(Query("link_latency", ("rtt_p50_seconds",), period.start, period.end,
                            group_by=("src_site", "dst_site"), agg=Aggregate.QUANTILE))
    rtt: dict[str, float] = {}
    for a, b, v in zip(med.src_site, med.dst_site, med.rtt_p50_seconds, strict=True):
        for anchor, other in ((a, b), (b, a)):
            if anchor in anchors:
                rtt[other] = min(v, rtt.get(other, np.inf))
    cann_sites = set(store.series("accelerator", {"ecosystem": "cann"}).site)
    assert set(df.site) == {s for s in cann_sites if rtt.get(s, np.inf) <= 0.005}
    assert set(df.rtt_source) == {"observed"}
    for r in df.drop_duplicates("site").itertuples():
        assert r.city_rtt_s == pytest.approx(rtt[r.site])

    # Idle accelerator-hours: (samples - utilization sum) x the simulator's 1-minute step, of
    # the free cards only (issue 17: no pod holds them; namespace label empty).
    where = {"ecosystem": "cann", "site": sorted(set(df.site)), "namespace": ""}
    by = ("site", "model")
    total = store.query(Query("accelerator", ("utilization_ratio",), period.start, period.end,
                              where=where, group_by=by, agg=Aggregate.SUM))
    count = store.query(Query("accelerator", ("utilization_ratio",), period.start, period.end,
                              where=where, group_by=by, agg=Aggregate.COUNT))
    ind = total.merge(count, on=["site", "model"], suffixes=("_sum", "_n"))
    ind["idle_h"] = ((ind.utilization_ratio_n - ind.utilization_ratio_sum)
                     * (history.step / timedelta(hours=1)))
    got = df.set_index(["site", "model"]).idle_accelerator_hours.sort_index()
    want = ind.set_index(["site", "model"]).idle_h.sort_index()
    pd.testing.assert_series_equal(got, want, check_names=False, rtol=1e-9)

    # Idle cards: per-device mean over the last hour below the busy level.
    dev = store.query(Query("accelerator", ("utilization_ratio",),
                            period.end - timedelta(hours=1), period.end, where=where,
                            group_by=("site", "model", "device")))
    busy = policy.utilization.busy_level.value
    idle = dev[dev.utilization_ratio < busy].groupby(["site", "model"]).size()
    got_cards = df.set_index(["site", "model"]).idle_cards
    assert got_cards.sum() > 0
    assert got_cards.to_dict() == {k: int(idle.get(k, 0)) for k in got_cards.index}

    # Free only, against the simulator's truth: per site, the free cards' idle hours as the
    # history counted them (sample counts replayed from its draws; free cards run at the
    # truth's free_utilization on average, and their noise is far below 0.1% of a site's sum).
    truth = history.truth
    step_h = history.step / timedelta(hours=1)
    counted = truth.allocation_hours()
    for site, hours in df.groupby("site").idle_accelerator_hours.sum().items():
        free_samples = counted[(site, "")]["samples"]
        cann = free_samples * step_h * (1 - truth.free_utilization)
        assert hours <= cann * 1.001, site  # the cann cards are the site's or some of them
    assert (df.reclaimable_cards >= 0).all() and df.reclaimable_accelerator_hours.sum() > 0


def test_sim_findings_match_the_table(sim, policy):
    store, topo, history = sim
    period = Period(history.start, history.end)
    findings = run(store, period, policy, topo, cities=["Shanghai", "Chengdu"])
    assert len(findings) == 6 and {f.severity for f in findings} == {Severity.INFO}
    sh5 = next(f for f in findings if f.subject == "shanghai" and f.detail["circle_s"] == 0.005)
    table = surplus(store, period, policy, topo, near="Shanghai", within_s=0.005)
    assert sh5.observed == table.idle_cards.sum()
    assert sh5.detail["idle_accelerator_hours"] == pytest.approx(
        table.idle_accelerator_hours.sum())
    assert "within 5 ms of Shanghai" in sh5.message
    assert 0.9 < sh5.completeness <= 1.0
