"""Allocated-idle versus free (issue 17): the core's split of idle accelerator-hours and the
held-idle card-hours, by hand on a tiny store and against the simulator's ground truth.

By hand (DuckDB), 2 hours from T0, one site bj-ai, every sample standing for 30 minutes
(4 samples per card):

- g0: held by pod train-0 of namespace team-a, utilization 0.9 throughout;
- g1: held by pod nb-0 of namespace team-b, utilization 0.0 in the first hour, then free
  (no pod) at 0.0 in the second;
- g2: free, at 0.2 throughout.

Idle accelerator-hours (sum of (1 - u) x 0.5 h): g0 4 x 0.1 x 0.5 = 0.2; g1 2 x 1.0 x 0.5 =
1.0 allocated + 1.0 free; g2 4 x 0.8 x 0.5 = 1.6 free. Allocated 1.2 (team-a 0.2, team-b
1.0), free 2.6, total 3.8. Held-idle card-hours: team-b's g1 in the first hour (mean 0.0 at
most the busy level 0.10): 1.0; team-a's g0 (0.9) is busy, g2 is free.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from computewatch.findings import Period
from computewatch.pipelines import run_pipelines
from computewatch.pipelines.surplus import run as surplus_run
from computewatch.pipelines.surplus import surplus
from computewatch.policy import load_policy
from computewatch.reports import build_report, parse_period, render_html
from computewatch.sim import build_fleet, simulate
from computewatch.sim.node import mixed_node
from computewatch.sim.scoring import score
from computewatch.sim.tenants import NAMESPACES
from computewatch.store import DuckDBStore
from computewatch.topology import load_topology
from computewatch.utilization import (
    FREE,
    held_idle_windows,
    idle_split,
    utilization_totals,
)

T0 = datetime(2026, 10, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
BUSY = 0.10


def _rows() -> pd.DataFrame:
    rows = []
    for k in range(4):
        t = T0 + k * timedelta(minutes=30)
        first = k < 2
        rows += [
            {"time": t, "site": "bj-ai", "device": "g0", "namespace": "team-a",
             "pod": "train-0", "container": "main", "utilization_ratio": 0.9, "allocated": 1.0},
            {"time": t, "site": "bj-ai", "device": "g1",
             "namespace": "team-b" if first else "", "pod": "nb-0" if first else "",
             "container": "main" if first else "", "utilization_ratio": 0.0,
             "allocated": 1.0 if first else 0.0},
            {"time": t, "site": "bj-ai", "device": "g2", "namespace": "", "pod": "",
             "container": "", "utilization_ratio": 0.2, "allocated": 0.0},
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    store = DuckDBStore(tmp_path_factory.mktemp("alloc") / "tiny.duckdb")
    store.write("accelerator", _rows())
    yield store
    store.close()


def test_idle_split_by_hand(tiny: DuckDBStore) -> None:
    split = idle_split(tiny, T0, T0 + 2 * HOUR, by=("site",)).set_index("site")
    assert split.loc["bj-ai", "allocated_idle_hours"] == pytest.approx(1.2)
    assert split.loc["bj-ai", "free_idle_hours"] == pytest.approx(2.6)
    assert split.loc["bj-ai", "idle_accelerator_hours"] == pytest.approx(3.8)
    by_ns = idle_split(tiny, T0, T0 + 2 * HOUR, by=("site",), where={"namespace": "team-b"})
    assert by_ns.allocated_idle_hours.tolist() == pytest.approx([1.0])
    total = utilization_totals(tiny, T0, T0 + 2 * HOUR, by=("site",))
    assert total.idle_accelerator_hours.tolist() == pytest.approx([3.8])


def test_held_idle_windows_by_hand(tiny: DuckDBStore) -> None:
    held = held_idle_windows(tiny, Period(T0, T0 + 2 * HOUR), busy_level=BUSY)
    assert held[["time", "namespace", "pod", "device"]].values.tolist() == [
        [pd.Timestamp(T0), "team-b", "nb-0", "g1"]]
    assert held.hours.tolist() == pytest.approx([1.0])
    assert held.samples.tolist() == [2.0]


# --- the simulated fleet -------------------------------------------------------------------

END = datetime(2026, 10, 2, tzinfo=UTC)
HOURS = 12


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory):
    fleet = build_fleet(load_topology(), sites=8, accelerators=400, seed=5)
    history = simulate(fleet, hours=HOURS, end=END)
    store = DuckDBStore(tmp_path_factory.mktemp("alloc") / "fleet.duckdb")
    for measurement, frame in history.chunks():
        store.write(measurement, frame)
    yield history, store
    store.close()


def test_split_matches_the_simulators_truth_per_site_and_namespace(fleet_store) -> None:
    history, store = fleet_store
    truth = history.truth.allocation_hours()
    per = idle_split(store, history.start, history.end, by=("site", "namespace"))
    got = {(r.site, r.namespace): r for r in per.itertuples()}
    assert set(got) == set(truth)
    for key, want in truth.items():
        row = got[key]
        part = row.free_idle_hours if key[1] == FREE else row.allocated_idle_hours
        assert part == pytest.approx(want["idle_accelerator_hours"], rel=1e-9, abs=1e-9), key
        other = row.allocated_idle_hours if key[1] == FREE else row.free_idle_hours
        assert other == 0.0
    sites = idle_split(store, history.start, history.end, by=("site",)).set_index("site")
    for site in sites.index:
        free = sum(v["idle_accelerator_hours"] for (s, ns), v in truth.items()
                   if s == site and ns == FREE)
        held = sum(v["idle_accelerator_hours"] for (s, ns), v in truth.items()
                   if s == site and ns != FREE)
        assert sites.loc[site, "free_idle_hours"] == pytest.approx(free, rel=1e-9)
        assert sites.loc[site, "allocated_idle_hours"] == pytest.approx(held, rel=1e-9)
        assert sites.loc[site, "idle_accelerator_hours"] == pytest.approx(free + held, rel=1e-9)
    assert sites.free_idle_hours.sum() > 0 and sites.allocated_idle_hours.sum() > 0


def test_held_idle_card_hours_match_the_truth(fleet_store) -> None:
    history, store = fleet_store
    truth = history.truth.allocation_hours()
    policy = load_policy()
    held = held_idle_windows(store, Period(history.start, history.end),
                             busy_level=policy.utilization.busy_level.value)
    got = held.groupby(["site", "namespace"]).hours.sum()
    want = {k: v["idle_card_hours"] for k, v in truth.items() if v["idle_card_hours"] > 0}
    assert set(got.index) == set(want)
    for key, hours in want.items():
        assert got[key] == pytest.approx(hours, rel=1e-9), key
    # The tenant's reserved cards are among them, every hour of the incident.
    inc = history.truth.incident("tenant_idle")
    mine = held[(held.site == inc.detail["site"]) & (held.namespace == inc.subject)
                & (held.pod == inc.detail["pod"])]
    assert set(mine.device) == set(inc.detail["devices"])


def test_surplus_offers_only_free_capacity(fleet_store) -> None:
    """Per site, surplus' idle accelerator-hours are exactly the free cards' (the truth's
    namespace ""), its idle cards are free, and what pods hold idle is stated apart."""
    history, store = fleet_store
    policy = load_policy()
    topo = history.fleet.topology
    period = Period(history.start, history.end)
    table = surplus(store, period, policy, topo, near="Shanghai", within_s=0.2)
    assert set(table.site) == set(history.fleet.site_ids)
    truth = history.truth.allocation_hours()
    per_site = table.groupby("site")[["idle_accelerator_hours",
                                      "reclaimable_accelerator_hours", "idle_cards",
                                      "reclaimable_cards"]].sum()
    last = history.hours - 1
    for site, row in per_site.iterrows():
        assert row.idle_accelerator_hours == pytest.approx(
            truth[(site, FREE)]["idle_accelerator_hours"], rel=1e-9), site
        held = sum(v["idle_card_hours"] for (s, ns), v in truth.items() if s == site and ns)
        # A held idle card's hours count by their unused share (its utilization is 0-5%).
        assert held * 0.95 <= row.reclaimable_accelerator_hours <= held + 1e-9, site
        held_now = sum(a.idle_samples[last] for a in history.truth.allocation
                       if a.site == site and a.namespace) / history.steps_per_hour
        assert row.reclaimable_cards == held_now, site
    assert per_site.reclaimable_cards.sum() > 0
    # The findings offer the same free hours and state the reclaimable apart.
    (found,) = [f for f in surplus_run(store, period, policy, topo, cities=["Shanghai"],
                                       circles=[0.2])]
    assert found.detail["idle_accelerator_hours"] == pytest.approx(
        per_site.idle_accelerator_hours.sum())
    assert found.detail["reclaimable_cards"] == per_site.reclaimable_cards.sum()
    assert "reclaiming" in found.message


def test_underuse_and_the_report_state_both_parts(fleet_store) -> None:
    """The underuse pipeline finds the tenant holding cards idle (and nothing else of the
    rule); the report's site and hub rows split idle hours as the truth does, and its
    namespace table names who held idle cards, for how long."""
    history, store = fleet_store
    policy = load_policy()
    topo = history.fleet.topology
    period = Period(history.start, history.end)
    analysis = run_pipelines(store, period, policy, topo, only=["underuse"], write=False)
    held = [f for f in analysis.findings if f.rule == "allocated_idle"]
    inc = history.truth.incident("tenant_idle")
    assert [f.subject for f in held] == [f"{inc.detail['site']}/{inc.subject}"]
    assert held[0].detail["devices"] == inc.detail["devices"]
    card = score(analysis.findings, history.truth, period)
    assert (card.rule("allocated_idle").recall, card.rule("allocated_idle").precision) == (1, 1)
    for f in analysis.findings:
        if f.rule.endswith("_below_minimum"):
            assert f.detail["allocated_idle_hours"] + f.detail["free_idle_hours"] \
                == pytest.approx(f.detail["idle_accelerator_hours"], rel=1e-9)

    label = "2026-10-01T20:00/2026-10-02T08:00"  # the 12 simulated hours, China time
    report = build_report(store, topo, policy, parse_period(label), analysis)
    truth = history.truth.allocation_hours()
    for r in report.sites.itertuples():
        free = truth.get((r.id, FREE), {}).get("idle_accelerator_hours", 0.0)
        held_h = sum(v["idle_accelerator_hours"] for (s, ns), v in truth.items()
                     if s == r.id and ns)
        assert r.free_idle_hours == pytest.approx(free, rel=1e-9, abs=1e-9), r.id
        assert r.allocated_idle_hours == pytest.approx(held_h, rel=1e-9, abs=1e-9), r.id
        assert r.allocated_idle_hours + r.free_idle_hours == pytest.approx(
            r.idle_accelerator_hours, rel=1e-9, abs=1e-9)
    for h in report.hubs.itertuples():
        sites = report.sites[report.sites.hub == h.id]
        assert h.free_idle_hours == pytest.approx(sites.free_idle_hours.sum(), abs=1e-9)
    ns = report.namespaces.set_index(["site", "namespace"])
    for key, want in truth.items():
        if key[1]:
            assert ns.loc[key, "allocated_idle_hours"] == pytest.approx(
                want["idle_accelerator_hours"], rel=1e-9)
            assert ns.loc[key, "held_idle_card_hours"] == pytest.approx(
                want["idle_card_hours"], rel=1e-9)
    # The tenant held its reserved cards idle through the incident: at least those cards,
    # for at least the incident's whole hours.
    mine = ns.loc[(inc.detail["site"], inc.subject)]
    assert mine.cards_held_idle >= inc.detail["cards"]
    assert mine.hours_holding_idle >= len(history.truth.whole_hours(inc.start, inc.end))
    html = render_html(report)
    assert 'id="namespace-table"' in html and inc.subject in html
    assert 'data-col="free_idle_hours"' in html


def test_the_fake_drivers_node_lists_who_holds_each_device() -> None:
    """A simulated node (what the fake NVML and npu-smi read) says which pod holds each
    device, under the tenants model: every card running a job is held, about 20% of the idle
    ones are, by namespaces of the node's site; ids are the device plugins' (GPU UUIDs)."""
    fleet = build_fleet(load_topology(), seed=0)
    node = mixed_node(fleet)
    site = node.site
    tenants = set(node.tenants)
    assert tenants and tenants <= set(NAMESPACES)
    busy = idle = held_idle = 0
    for h in range(48):
        t = END + h * HOUR + timedelta(minutes=7)
        readings = {(r.vendor, r.index): r for r in node.readings(t)}
        held = {(a.vendor, a.index): a for a in node.allocations(t)}
        for key, r in readings.items():
            if r.utilization > 0.2:
                busy += 1
                assert key in held, (t, key)
            else:
                idle += 1
                held_idle += key in held
        for a in held.values():
            assert a.namespace in tenants and a.pod.startswith(a.namespace)
            if a.vendor == "nvidia":
                assert (a.resource, a.device_id) == ("nvidia.com/gpu",
                                                     readings[("nvidia", a.index)].uuid)
            else:
                assert a.resource == "huawei.com/Ascend910" and a.device_id.startswith(
                    "Ascend910-")
    assert busy > 0 and 0.1 < held_idle / idle < 0.3, (site, held_idle, idle)
    node.lose(0, "nvidia")
    assert ("nvidia", 0) not in {(a.vendor, a.index) for a in node.allocations(END)}
