"""Every panel query of the committed dashboards returns data from a real VictoriaMetrics.

A simulated day (10 sites, 24 h at 5-minute resolution) is written through the
``victoriametrics://`` store, plus the error counters of one node read by the real NVML
collector from the fake driver (the history generator has none). The recording rules the
panels read are evaluated over the day with vmalert's replay mode, from the same files a
deployment loads (alerts/rules/*.yml and dashboards/rules/*.yml). Then each dashboard's
variables are resolved the way Grafana does (``label_values`` through the label API), Grafana's
macros get concrete values, and every target of every panel runs through the HTTP API; an
error or an empty result fails, naming the dashboard, panel and query.

A few queries are also checked against numbers computed here from the simulated frames, so a
query that returns the wrong thing (not only nothing) fails too.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
import yaml
from servers import free_port, start_victoriametrics

from computewatch.collectors.nvml import NvmlCollector
from computewatch.dashboards import DASHBOARDS_DIR, build_dashboards
from computewatch.dashboards.build import _panels  # every panel, rows and their children included
from computewatch.dashboards.places import GAZETTEER_FILE
from computewatch.findings import Period, write_findings
from computewatch.pipelines import latency
from computewatch.policy import Policy, load_policy
from computewatch.pue import meter_readings, windowed_pue
from computewatch.samples import Sample, samples_to_frames
from computewatch.sim import build_fleet, simulate
from computewatch.sim.fake_nvml import FakeNvml
from computewatch.sim.node import node_from_fleet
from computewatch.store import open_store
from computewatch.topology import Topology, load_topology
from computewatch.utilization import idle_split, utilization_totals

pytestmark = pytest.mark.slow  # a simulated day through VictoriaMetrics and vmalert

END = datetime(2026, 1, 14, tzinfo=UTC)
HOURS = 24
STEP = timedelta(minutes=5)
START = END - timedelta(hours=HOURS)
RULE_NAME = re.compile(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b")
VMALERT = "/usr/bin/vmalert"
JSON_DIR = DASHBOARDS_DIR / "json" / "en"
"""The English set; the zh-CN set runs the same queries (test_the_sets_run_the_same_queries)."""
MACROS = {
    "__range_s": str(HOURS * 3600),
    "__range": f"{HOURS * 3600}s",
    "__interval": f"{int(STEP.total_seconds())}s",
    "__rate_interval": f"{int(4 * STEP.total_seconds())}s",
    # The regulator's expected sample interval: the simulated day's resolution.
    "sample_interval": str(int(STEP.total_seconds())),
}
ERROR_FIELDS = {"xid_errors_total", "ecc_errors_total", "throttled"}


@dataclass
class Loaded:
    url: str
    topology: Topology
    policy: Policy
    accelerator: pa.Table
    facility: pa.Table
    nvml_node: dict[str, str]
    pue: pd.DataFrame  # each site's 1 h PUE windows, as site agents export them


def _rules_by_name(paths: list[Path]) -> dict[str, list[dict[str, Any]]]:
    rules: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    rules.setdefault(rule["record"], []).append(rule)
    return rules


def _replay_files(tmp: Path) -> list[Path]:
    """The recording rules the committed dashboards read, and what those read in turn: one
    file per level of dependency (rules over raw series first, then the rules that read
    those), replayed one after another so that a rule's inputs are stored before it runs."""
    rule_files = sorted((DASHBOARDS_DIR.parent / "alerts" / "rules").glob("*.yml"))
    rule_files += sorted((DASHBOARDS_DIR / "rules").glob("*.yml"))
    defined = _rules_by_name(rule_files)
    level: dict[str, int] = {}

    def need(name: str) -> int:
        if name in level:
            return level[name]
        assert name in defined, f"dashboards read {name!r}, which no rule file defines"
        level[name] = max((need(dep) + 1 for rule in defined[name]
                           for dep in RULE_NAME.findall(rule["expr"])), default=0)
        return level[name]

    for path in sorted(JSON_DIR.glob("*.json")):
        for panel in _panels(json.loads(path.read_text(encoding="utf-8"))):
            for target in panel.get("targets", []):
                for name in RULE_NAME.findall(target.get("expr", "")):
                    need(name)
    assert level
    files = []
    for depth in range(max(level.values()) + 1):
        rules = [rule for name in sorted(level) if level[name] == depth
                 for rule in defined[name]]
        out = tmp / f"replay-{depth}.yml"
        out.write_text(yaml.safe_dump({"groups": [{"name": f"dashboards-replay-{depth}",
                                                   "interval": "1m", "rules": rules}]}),
                       encoding="utf-8")
        files.append(out)
    return files


def _replay(vm_url: str, tmp: Path) -> None:
    for rules in _replay_files(tmp):
        argv = [VMALERT, f"-rule={rules}", f"-datasource.url={vm_url}",
                f"-remoteWrite.url={vm_url}", f"-replay.timeFrom={START:%Y-%m-%dT%H:%M:%SZ}",
                f"-replay.timeTo={END:%Y-%m-%dT%H:%M:%SZ}", "-replay.disableProgressBar",
                "-loggerLevel=WARN", f"-httpListenAddr=127.0.0.1:{free_port()}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"vmalert replay failed:\n{done.stdout[-3000:]}\n" \
                                     f"{done.stderr[-3000:]}"
        requests.get(f"{vm_url}/internal/force_flush", timeout=10).raise_for_status()
        time.sleep(1)  # what was flushed becomes searchable


def _nvml_error_samples(fleet, times: list[datetime]):
    """The error counters and throttle states a real NVML collector reads from the fake
    driver of one node of the fleet, restamped onto the simulated day's grid."""
    nvidia_nodes = fleet.device_node[fleet.device_vendor == "nvidia"]
    node = node_from_fleet(fleet, str(nvidia_nodes[0]))
    node.unhealthy.add(("nvidia", 1))  # one uncorrected ECC error and a failed remapping
    fake = FakeNvml(node, xid_events=[(0, 79)])
    collector = NvmlCollector(node.labels, nvml=fake)
    samples = []
    try:
        for i, t in enumerate(times):
            if i == len(times) // 2:
                fake.xid(0, 48)
            samples += [replace(s, time=t) for s in collector.collect()
                        if s.measurement == "accelerator" and s.field in ERROR_FIELDS]
    finally:
        collector.close()
    return samples, node.labels


def _hourly_pue(store, policy: Policy, topology: Topology) -> tuple[list[Sample], pd.DataFrame]:
    """Each site's ``pue`` window samples for every full hour of the day, derived from the
    meters in the store (`computewatch.pue`), emitted as a site agent's PueCollector does:
    the last complete hour again at every run (here every step) until the next one ends."""
    period = Period(START, END)
    windows = windowed_pue(meter_readings(store, period), period, policy, "1h",
                           topology=topology)
    places = {s.id: s for s in topology.sites}
    out = []
    for r in windows.itertuples():
        site = places[r.site]
        labels = {"site": r.site, "hub": site.hub or "", "cluster": site.cluster or "",
                  "window": "1h"}
        labels = {k: v for k, v in labels.items() if v}
        for k in range(int(timedelta(hours=1) / STEP)):
            at = r.window_end.to_pydatetime() + k * STEP
            out.append(Sample.of("pue.completeness_ratio", r.completeness, labels, at))
            out.append(Sample.of("pue.facility_joules", r.facility_joules, labels, at))
            out.append(Sample.of("pue.it_joules", r.it_joules, labels, at))
    assert out
    return out, windows


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> Loaded:
    tmp = tmp_path_factory.mktemp("dashboards-vm")
    topology = load_topology()
    policy = load_policy(topology=topology)
    fleet = build_fleet(topology, sites=10, accelerators=240, seed=3)
    history = simulate(fleet, hours=HOURS, end=END, step=STEP, policy=policy)
    with start_victoriametrics(tmp) as vm:
        store = open_store(f"victoriametrics://127.0.0.1:{vm.port}")
        kept: dict[str, list[pa.Table]] = {"accelerator": [], "facility_power": []}
        try:
            for measurement, frame in history.chunks():
                result = store.write(measurement, frame)
                assert result.rejected == 0, (measurement, result)
                if measurement in kept:
                    kept[measurement].append(frame)
            times = [START + i * STEP for i in range(HOURS * 3600 // int(STEP.total_seconds()))]
            errors, node_labels = _nvml_error_samples(fleet, times)
            for measurement, frame in samples_to_frames(errors).items():
                store.write(measurement, frame)
            # What `computewatch analyze` writes back: the latency pipeline's findings (its
            # planning findings feed the latency dashboard's planning table). An analysis
            # that ended a step before the dashboard looks: findings are stamped at their
            # window's end, and an instant query hides its last 30 s.
            found = latency.run(store, Period(START, END - STEP), policy, fleet.topology)
            assert write_findings(store, found) > 0
            # What site agents with meters export: the energy-based PUE of each full hour
            # (collectors/pue.py), which the per-hub PUE recording rule reads.
            pue_samples, pue_windows = _hourly_pue(store, policy, fleet.topology)
            for measurement, frame in samples_to_frames(pue_samples).items():
                assert store.write(measurement, frame).rejected == 0
        finally:
            store.close()
        _replay(vm.url, tmp)
        yield Loaded(vm.url, fleet.topology, policy,
                     pa.concat_tables(kept["accelerator"], promote_options="permissive"),
                     pa.concat_tables(kept["facility_power"], promote_options="permissive"),
                     node_labels, pue_windows)


# --- running queries the way Grafana does --------------------------------------------------



def _substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"no value for ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def _get(url: str, path: str, **params: Any) -> Any:
    r = requests.get(url + path, params=params, timeout=60)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") \
        else {"error": r.text}
    if r.status_code != 200 or body.get("status") != "success":
        raise AssertionError(f"HTTP {r.status_code}: {body.get('error', body)}")
    return body["data"]


def _run(url: str, expr: str, *, instant: bool) -> list[dict[str, Any]]:
    if instant:
        return _get(url, "/api/v1/query", query=expr, time=END.timestamp())["result"]
    return _get(url, "/api/v1/query_range", query=expr, start=START.timestamp(),
                end=END.timestamp(), step=int(STEP.total_seconds()))["result"]


def _label_values(url: str, query: str) -> list[str]:
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert m, f"not a label_values() query: {query!r}"
    selector, label = m.groups()
    return _get(url, f"/api/v1/label/{label}/values", **{"match[]": selector},
                start=START.timestamp(), end=END.timestamp())


def _variables(model: dict[str, Any], loaded: Loaded) -> dict[str, str]:
    """Each variable's value, as Grafana would choose it: query variables from the label
    API (failing when they offer nothing), preferring the node that has error counters."""
    values = dict(MACROS)
    for var in model.get("templating", {}).get("list", []):
        name = var["name"]
        if name in MACROS:
            continue  # set by this test to match the simulated data (sample_interval)
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            offered = _label_values(loaded.url, _substitute(query, values))
            assert offered, f"{model['uid']}: variable ${name} offers no value ({query})"
            preferred = loaded.nvml_node.get(name)
            if var.get("includeAll") and preferred not in offered:
                values[name] = var.get("allValue", ".*")
            else:
                values[name] = preferred if preferred in offered else offered[0]
        elif var["type"] == "custom":
            current = var.get("current", {}).get("value")
            values[name] = var.get("allValue", ".*") if current in (None, "$__all") \
                else str(current)
    return values


def _committed() -> list[Path]:
    return sorted(JSON_DIR.glob("*.json"))


def test_the_committed_dashboards_are_there():
    assert {p.stem for p in _committed()} == {
        "computewatch-national", "computewatch-site", "computewatch-latency",
        "computewatch-energy", "computewatch-regulator"}


def _queries(model: dict[str, Any]) -> list[tuple[int, str, str, bool]]:
    return [(panel["id"], t["refId"], t["expr"], bool(t.get("instant")))
            for panel in _panels(model) for t in panel.get("targets", [])]


def test_the_sets_run_the_same_queries():
    """Only text differs between the languages: every panel of the zh-CN set runs what the
    English panel in its place runs, with the same variables, so the English run covers it."""
    for path in _committed():
        en = json.loads(path.read_text(encoding="utf-8"))
        zh = json.loads((JSON_DIR.parent / "zh-CN" / f"{path.stem}-zh-cn.json")
                        .read_text(encoding="utf-8"))
        assert _queries(zh) == _queries(en) and _queries(en), path.stem
        assert [(v["name"], v["type"], v.get("query")) for v in zh["templating"]["list"]] == \
            [(v["name"], v["type"], v.get("query")) for v in en["templating"]["list"]]


@pytest.mark.parametrize("path", _committed(), ids=lambda p: p.stem)
def test_every_panel_query_returns_data(loaded, path):
    model = json.loads(path.read_text(encoding="utf-8"))
    values = _variables(model, loaded)
    failures, ran = [], 0
    for panel in _panels(model):
        for target in panel.get("targets", []):
            expr = _substitute(target["expr"], values)
            where = f"{panel['title']!r} [{target['refId']}]"
            try:
                result = _run(loaded.url, expr, instant=bool(target.get("instant")))
            except AssertionError as exc:
                failures.append(f"{where}: {exc}\n    {expr}")
                continue
            ran += 1
            if not result:
                failures.append(f"{where}: empty result\n    {expr}")
    assert ran > 0
    assert not failures, f"{model['uid']}:\n" + "\n".join(failures)


# --- a few answers checked against the simulated frames -----------------------------------

def _panel(uid: str, title: str, model: dict[str, Any] | None = None) -> dict[str, Any]:
    model = model or json.loads((JSON_DIR / f"{uid}.json").read_text(encoding="utf-8"))
    found = [p for p in _panels(model) if p.get("title") == title]
    assert len(found) == 1, f"{uid}: no single panel {title!r}"
    return found[0]


def _target_rows(loaded: Loaded, uid: str, title: str, ref: str = "A",
                 model: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    target = next(t for t in _panel(uid, title, model)["targets"] if t["refId"] == ref)
    return _run(loaded.url, _substitute(target["expr"], dict(MACROS)),
                instant=bool(target.get("instant")))


def _window(table: pa.Table) -> pa.Table:
    """The samples a ``[$__range]`` window at END sees: (START, END]."""
    t = table.column("time").to_numpy()
    keep = (t > np.datetime64(START.replace(tzinfo=None))) & \
        (t <= np.datetime64(END.replace(tzinfo=None)))
    return table.filter(pa.array(keep))


def test_underused_sites_are_those_below_their_minimum(loaded):
    frame = _window(loaded.accelerator).select(["site", "utilization_ratio"]).to_pandas()
    means = frame.groupby("site", observed=True)["utilization_ratio"].mean()
    minimum = loaded.policy.utilization_minimum("site")
    rows = _target_rows(loaded, "computewatch-national", "Underused sites")
    listed = {r["metric"]["site"] for r in rows}
    clear = means[(means - minimum).abs() > 0.02]  # leave out sites too close to call
    assert set(clear[clear < minimum].index) <= listed
    assert not (set(clear[clear >= minimum].index) & listed)
    assert listed, "the simulated fleet has underused sites; the table must show them"


def test_energy_weighted_pue_is_total_facility_over_total_it_energy(loaded):
    frame = loaded.facility.select(["site", "scope", "time", "joules_total"]).to_pandas()
    frame = frame.sort_values("time")
    per_meter = frame.groupby(["site", "scope"], observed=True)["joules_total"]
    delta = (per_meter.last() - per_meter.first()).groupby(level="scope").sum()
    expected = delta["facility"] / delta["it"]
    (row,) = _target_rows(loaded, "computewatch-national", "Energy-weighted PUE")
    assert float(row["value"][1]) == pytest.approx(expected, rel=2e-3)


def test_energy_by_hub_is_each_hubs_meter_energy_in_kwh(loaded):
    frame = loaded.facility.select(["hub", "meter", "scope", "time", "joules_total"]) \
        .to_pandas().dropna(subset=["hub"]).sort_values("time")
    per_meter = frame.groupby(["hub", "scope", "meter"], observed=True)["joules_total"]
    kwh = ((per_meter.last() - per_meter.first()).groupby(level=["hub", "scope"]).sum()
           / 3.6e6)
    rows = _target_rows(loaded, "computewatch-energy", "Energy by hub and scope")
    got = {(r["metric"]["hub"], r["metric"]["scope"]): float(r["value"][1]) for r in rows}
    assert set(got) == set(kwh.index)
    for key, value in got.items():
        assert value == pytest.approx(kwh[key], rel=1e-2), key


def test_hub_pue_is_the_hubs_facility_over_it_energy_of_its_complete_sites(loaded):
    """The per-hub PUE panel (recording rule hub:pue_energy_ratio:weighted1h): per hub and
    full hour, the facility energy of its sites whose hour is complete enough over their IT
    energy, from the windows the site agents export, not a mean of the sites' PUEs."""
    floor = loaded.policy.pue.min_completeness.value
    windows = loaded.pue.assign(hub=loaded.pue.site.map(
        {s.id: s.hub for s in loaded.topology.sites}))
    windows = windows[(windows.completeness >= floor) & windows.hub.notna()]
    sums = windows.groupby(["window_end", "hub"])[["facility_joules", "it_joules"]].sum()
    expected = sums.facility_joules / sums.it_joules
    rows = _target_rows(loaded, "computewatch-energy",
                        "PUE by hub (energy-weighted, last full hour)")
    checked = 0
    for row in rows:
        hub = row["metric"]["hub"]
        for t, value in row["values"]:
            at = pd.Timestamp(float(t), unit="s", tz="UTC")
            stamp = at.floor("1h")  # the last full hour, which the agents report until the next
            if at.minute == 30 and (stamp, hub) in expected.index:
                assert float(value) == pytest.approx(expected[(stamp, hub)], rel=1e-6), \
                    (hub, stamp)
                checked += 1
    assert {r["metric"]["hub"] for r in rows} == set(windows.hub)
    assert checked >= 10 * len(rows)


def test_idle_accelerator_hours_are_the_cores_definition(loaded):
    """The dashboards' idle accelerator-hours (a recording rule averaged over the range) are
    the core's quantity, computed by hand from the frames and by computewatch.utilization
    from the same store: the sum over samples of (1 - utilization) x the sampling interval."""
    frame = loaded.accelerator.select(["hub", "utilization_ratio"]).to_pandas()
    by_hand = float((1.0 - frame.utilization_ratio).sum()) * STEP / timedelta(hours=1)
    store = open_store(f"victoriametrics://{loaded.url.split('://', 1)[1]}")
    try:
        core = utilization_totals(store, START, END, by=("hub",))
    finally:
        store.close()
    assert float(core.idle_accelerator_hours.sum()) == pytest.approx(by_hand, rel=1e-9)
    (row,) = _target_rows(loaded, "computewatch-national", "Idle accelerator-hours")
    # The rule is evaluated once a minute over 5-minute samples: edges of the day and the
    # lost card's last minutes are all that may differ.
    assert float(row["value"][1]) == pytest.approx(by_hand, rel=5e-3)


def test_idle_hours_free_and_held_by_pods_are_the_cores_split(loaded):
    """Issue 17: the national dashboard's free and held-by-pod idle capacity are the core's
    split (computewatch.utilization.idle_split) from the same VictoriaMetrics store, and both
    are the sums by hand over the frames' samples with and without a namespace."""
    frame = loaded.accelerator.select(["namespace", "utilization_ratio"]).to_pandas()
    idle = (1.0 - frame.utilization_ratio) * (STEP / timedelta(hours=1))
    free = frame.namespace.astype(str) == ""
    by_hand_free, by_hand_held = float(idle[free].sum()), float(idle[~free].sum())
    assert by_hand_free > 0 and by_hand_held > 0
    store = open_store(f"victoriametrics://{loaded.url.split('://', 1)[1]}")
    try:
        split = idle_split(store, START, END, by=("hub",))
    finally:
        store.close()
    assert float(split.free_idle_hours.sum()) == pytest.approx(by_hand_free, rel=1e-9)
    assert float(split.allocated_idle_hours.sum()) == pytest.approx(by_hand_held, rel=1e-9)
    rows = _target_rows(loaded, "computewatch-national", "Allocated but idle, by namespace")
    assert {r["metric"]["namespace"] for r in rows} == set(frame.namespace[~free].astype(str))
    # Recorded once a minute over 5-minute samples, as the idle accelerator-hours above.
    assert sum(float(r["value"][1]) for r in rows) == pytest.approx(by_hand_held, rel=5e-3)


def test_pue_targets_follow_the_policy_site_override_first(loaded, tmp_path):
    """by_place must resolve a target exactly as Policy does: a per-site override beats the
    region, which beats the default."""
    site = loaded.topology.sites[0]
    text = (Path(__file__).resolve().parents[1] / "computewatch" / "data" / "policy.yaml") \
        .read_text(encoding="utf-8")
    text = text.replace("  sites: {}", f"  sites:\n    {site.id}: {{value: 1.37, source: test}}")
    (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
    policy = load_policy(tmp_path / "policy.yaml", topology=loaded.topology)
    model = build_dashboards(loaded.topology, policy)["computewatch-energy"]
    rows = _target_rows(loaded, "computewatch-energy", "PUE per site against target", "B",
                        model=model)
    got = {r["metric"]["site"]: float(r["value"][1]) for r in rows}
    want = {s.id: policy.pue_target(loaded.topology.region_of(s.id), s.id)
            for s in loaded.topology.sites}
    assert got[site.id] == 1.37
    assert got == pytest.approx({k: want[k] for k in got})
    assert len(got) == len(loaded.topology.sites)


def test_every_place_on_the_map_is_in_the_gazetteer(loaded):
    keys = {e["key"] for e in json.loads((DASHBOARDS_DIR / GAZETTEER_FILE).read_text())}
    panel = _panel("computewatch-national", "Sites, clusters and hubs")
    for layer in panel["options"]["layers"]:
        ref, field = layer["filterData"]["options"], layer["location"]["lookup"]
        rows = _target_rows(loaded, "computewatch-national", panel["title"], ref)
        shown = {r["metric"][field] for r in rows}
        assert shown and shown <= keys, (layer["name"], shown - keys)


def test_completeness_is_the_share_of_expected_samples_received(loaded):
    """The lost accelerator stops reporting utilization: its site's completeness drops below
    1 by exactly the samples it missed, and every other site's stays at the full share."""
    frame = _window(loaded.accelerator).select(["site", "device", "utilization_ratio"])
    frame = frame.to_pandas()
    per_site = frame.groupby("site", observed=True).agg(
        received=("utilization_ratio", "count"), devices=("device", "nunique"))
    expected_per_device = HOURS * 3600 / STEP.total_seconds()
    want = per_site.received / (per_site.devices * expected_per_device)
    rows = _target_rows(loaded, "computewatch-regulator", "Compliance per site", "D")
    got = {r["metric"]["site"]: float(r["value"][1]) for r in rows}
    assert got == pytest.approx(want.to_dict(), rel=1e-9)
    assert min(got.values()) < max(got.values()), "the lost device must show"


@pytest.mark.parametrize("offset, verdict", [(-0.05, 1.0), (0.05, 0.0)])
def test_utilization_verdicts_apply_each_sites_own_minimum(loaded, tmp_path, offset, verdict):
    """Give every site its own minimum just below (or above) its mean: every verdict must
    then be 'meets' (or 'fails') and the underused table must list no site (or every site),
    whatever the default minimum says. A filtering comparison made inside the per-place rules
    would fall through to the default rule and list the sites below it."""
    frame = _window(loaded.accelerator).select(["site", "utilization_ratio"]).to_pandas()
    means = frame.groupby("site", observed=True)["utilization_ratio"].mean()
    subjects = "".join(f"\n        {site}: {{value: {min(max(m + offset, 0), 1):.4f}, "
                       f"source: test}}" for site, m in means.items())
    text = (Path(__file__).resolve().parents[1] / "computewatch" / "data" / "policy.yaml") \
        .read_text(encoding="utf-8")
    assert text.count("      subjects: {}") == 1
    text = text.replace("      subjects: {}", "      subjects:" + subjects)
    (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
    policy = load_policy(tmp_path / "policy.yaml", topology=loaded.topology)
    model = build_dashboards(loaded.topology, policy)["computewatch-regulator"]
    rows = _target_rows(loaded, "computewatch-regulator", "Compliance per site", "C",
                        model=model)
    got = {r["metric"]["site"]: float(r["value"][1]) for r in rows}
    assert got == {site: verdict for site in means.index}
    national = build_dashboards(loaded.topology, policy)["computewatch-national"]
    listed = {r["metric"]["site"] for r in
              _target_rows(loaded, "computewatch-national", "Underused sites", model=national)}
    assert listed == (set() if verdict else set(means.index))
    assert (means < policy.utilization_minimum("site")).any()  # the default would list some
