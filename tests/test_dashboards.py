"""Dashboards as code: the committed files are what a build makes, the query model refuses
what the catalogue does not declare, and policy thresholds render per place."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from computewatch.cli import app
from computewatch.dashboards import (
    DASHBOARDS_DIR,
    DashboardError,
    MapTiles,
    build_dashboards,
    build_files,
    stale_files,
)
from computewatch.dashboards.basemap import BASE_LAYER_FILE
from computewatch.dashboards.build import _check_records
from computewatch.dashboards.places import PlacesError, gazetteer
from computewatch.dashboards.query import (
    RANGE,
    Agg,
    OverTime,
    QueryError,
    Var,
    by_place,
    recorded,
    series,
)
from computewatch.dashboards.rules import RULES_FILE
from computewatch.policy import load_policy
from computewatch.status import ExitStatus
from computewatch.thresholds import pue_target_rules, tier_budget_rules
from computewatch.topology import load_topology


@pytest.fixture(scope="module")
def shipped():
    topology = load_topology()
    return topology, load_policy(topology=topology)


@pytest.fixture(scope="module")
def files(shipped):
    return build_files(*shipped)


def test_committed_files_are_what_a_build_makes(files):
    stale = stale_files(files, DASHBOARDS_DIR)
    assert not stale, (f"stale generated files {stale}: run `computewatch dashboards build` "
                       "and commit the result")


def test_a_stale_file_is_caught(files, tmp_path):
    from computewatch.dashboards import write_files

    write_files(files, tmp_path)
    assert stale_files(files, tmp_path) == []
    path = tmp_path / "json" / "en" / "computewatch-national.json"
    path.write_text(path.read_text().replace("National overview", "Old overview"))
    (tmp_path / "json" / "en" / "computewatch-gone.json").write_text("{}")
    (tmp_path / "json" / "computewatch-national.json").write_text("{}")  # before the sets
    assert stale_files(files, tmp_path) == ["json/en/computewatch-national.json",
                                            "json/computewatch-national.json",
                                            "json/en/computewatch-gone.json"]


def test_build_is_deterministic(shipped, files):
    assert build_files(*shipped) == files


def test_cli_build_writes_the_committed_files_and_check_reports_staleness(tmp_path, files):
    runner = CliRunner()
    result = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for rel, text in files.items():
        assert (tmp_path / rel).read_text() == (DASHBOARDS_DIR / rel).read_text() == text
    ok = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path), "--check"])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "rules" / "computewatch-dashboards.yml").write_text("groups: []\n")
    stale = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path), "--check"])
    assert stale.exit_code == ExitStatus.ERROR
    assert "computewatch-dashboards.yml" in stale.output


def test_every_panel_reads_the_datasource_variable_defaulting_to_the_provisioned_one(files):
    ds = yaml.safe_load((DASHBOARDS_DIR / "provisioning/datasources/victoriametrics.yaml")
                        .read_text())["datasources"]
    (vm,) = [d for d in ds if d["type"] == "prometheus"]
    dashboards = [rel for rel in files if rel.startswith("json/")]
    assert len(dashboards) == 10  # five dashboards in two languages
    for rel in dashboards:
        model = json.loads(files[rel])
        variable = model["templating"]["list"][0]
        assert variable["type"] == "datasource" and variable["query"] == "prometheus", rel
        assert variable["current"]["value"] == vm["uid"]
        assert variable["current"]["text"] == vm["name"]
        ref = {"type": "prometheus", "uid": "${" + variable["name"] + "}"}
        assert files[rel].count(vm["uid"]) == 1, f"{rel}: the datasource uid outside the variable"
        for panel in model["panels"]:
            if panel["type"] in ("row", "text"):
                continue
            assert panel["datasource"] == ref, rel
            for target in panel["targets"]:
                assert target["datasource"] == ref
                assert target["refId"]
        ids = [p["id"] for p in model["panels"]]
        assert ids == list(range(1, len(ids) + 1))
        for p in model["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (rel, p["title"], g)


def test_provisioning_loads_each_language_set_into_its_own_folder(files):
    """Each provider's path, through the compose file's mount of dashboards/json, is the
    directory of one set, and holds exactly that set's dashboards."""
    from test_compose import compose_config

    providers = yaml.safe_load((DASHBOARDS_DIR / "provisioning/dashboards/computewatch.yaml")
                               .read_text())["providers"]
    grafana = yaml.safe_load(compose_config().stdout)["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    json_dir = str(DASHBOARDS_DIR / "json")
    (inside,) = [path for path, source in mounts.items() if source == json_dir]
    assert [p["options"]["path"] for p in providers] == [f"{inside}/en", f"{inside}/zh-CN"]
    assert len({p["folderUid"] for p in providers}) == len({p["folder"] for p in providers}) == 2
    by_dir = {}
    for provider in providers:
        assert provider["type"] == "file" and provider["allowUiUpdates"] is False
        directory = provider["options"]["path"].removeprefix(inside + "/")
        by_dir[directory] = sorted(rel.split("/")[-1] for rel in files
                                   if rel.startswith(f"json/{directory}/"))
    assert [name.removesuffix(".json") for name in by_dir["en"]] == [
        "computewatch-energy", "computewatch-latency", "computewatch-national",
        "computewatch-regulator", "computewatch-site"]
    assert by_dir["zh-CN"] == [name.replace(".json", "-zh-cn.json") for name in by_dir["en"]]
    assert sum(len(v) for v in by_dir.values()) == sum(r.startswith("json/") for r in files)


def test_geomap_layers_look_places_up_in_the_gazetteer(files):
    model = json.loads(files["json/en/computewatch-national.json"])
    (geo,) = [p for p in model["panels"] if p["type"] == "geomap"]
    refs = {t["refId"] for t in geo["targets"]}
    lookups = {layer["location"]["lookup"] for layer in geo["options"]["layers"]}
    assert {layer["filterData"]["options"] for layer in geo["options"]["layers"]} == refs
    assert lookups == {"site", "cluster", "hub"}
    assert all(layer["location"]["mode"] == "lookup" for layer in geo["options"]["layers"])
    entries = json.loads(files["provisioning/gazetteer/computewatch-places.json"])
    keys = {e["key"] for e in entries}
    topology = load_topology()
    assert keys == ({s.id for s in topology.sites} | {c.id for c in topology.clusters}
                    | {h.id for h in topology.hubs})


def test_gazetteer_refuses_an_id_shared_by_two_kinds(shipped):
    topology, _ = shipped
    clash = topology.model_copy(update={"sites": [
        topology.sites[0].model_copy(update={"id": topology.hubs[0].id})]})
    with pytest.raises(PlacesError, match=f"hub id '{topology.hubs[0].id}' is also a site"):
        gazetteer(clash)


# --- the query model ----------------------------------------------------------------------

def test_series_renders_the_catalogue_name_and_checks_labels():
    q = series("accelerator.utilization_ratio", site=Var("site"), vendor="nvidia")
    assert q.promql() == 'accelerator_utilization_ratio{site=~"$site", vendor="nvidia"}'
    with pytest.raises(QueryError, match="unknown field 'utilisation_ratio'"):
        series("accelerator.utilisation_ratio")
    with pytest.raises(QueryError, match="no label rack"):
        series("accelerator.utilization_ratio", rack="r1")


def test_operators_render_with_explicit_grouping():
    util = series("accelerator.utilization_ratio")
    q = Agg("avg", OverTime("avg_over_time", util.lt(0.1, bool_=True), RANGE), by=("site",))
    assert q.promql() == ("avg by (site) (avg_over_time((accelerator_utilization_ratio < "
                          "bool 0.1)[$__range:]))")
    with pytest.raises(QueryError, match="needs a counter series"):
        OverTime("increase", util * 2, RANGE)
    with pytest.raises(QueryError, match="parameter"):
        Agg("topk", util)
    with pytest.raises(QueryError, match="recording-rule name"):
        recorded("no_colons_here")


def test_by_place_renders_policy_rules_most_specific_first(shipped):
    topology, policy = shipped
    pue = recorded("site:pue_energy_ratio:1h")
    text = by_place(pue, pue_target_rules(topology, policy)).promql()
    east = "|".join(h.id for h in topology.hubs if h.region == "east")
    # The east's target for the eastern site outside every hub (Wuhan, no hub label), then
    # for the eastern hubs, ..., then the default.
    assert text.startswith('(((((site:pue_energy_ratio:1h{site=~"wh')
    assert text.index('{site=~"wh') < text.index(f'{{hub=~"{east}"}} * 0) + 1.25)')
    assert text.endswith("or ((site:pue_energy_ratio:1h * 0) + 1.5)")
    budgets = dict((m["tier"], v) for m, v in tier_budget_rules(policy))
    assert budgets == {"metro": 0.001, "regional": 0.005, "national": 0.02}


def test_a_panel_reading_an_unknown_recording_rule_is_refused(shipped):
    model = {"uid": "x", "panels": [{"title": "t", "targets": [
        {"expr": "avg(site:accelerator_utilisation_ratio:avg)"}]}]}
    with pytest.raises(DashboardError, match="site:accelerator_utilisation_ratio:avg"):
        _check_records(model, {"site:accelerator_utilization_ratio:avg"})


def test_rules_already_recorded_by_alerts_are_not_repeated(shipped, tmp_path):
    topology, policy = shipped
    # The per-hub PUE is one the dashboards read from alerts/rules/recording.yml only.
    (tmp_path / "a.yml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "site:pue_energy_ratio:1h", "expr": "vector(1)"},
        {"record": "hub:pue_energy_ratio:weighted1h", "expr": "vector(1)"}]}]}))
    ours = yaml.safe_load(build_files(topology, policy, tmp_path)
                          ["rules/computewatch-dashboards.yml"])
    names = [r["record"] for r in ours["groups"][0]["rules"]]
    assert "site:pue_energy_ratio:1h" not in names
    assert "site:accelerator_utilization_ratio:avg" in names  # not in this alerts dir
    build_dashboards(topology, policy, tmp_path)  # every rule read is still known


PUE_RULE_TEST = """\
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Incomer counter at 62.5 kW; IT: a PDU counter at 25 kW that restarts from zero after
      # 80 minutes (its watts are read too, and must not count twice) and a UPS-MIB UPS that
      # reports 25 kW as watts only.
      - series: 'facility_power_joules_total{{site="s2",meter="main",scope="facility"}}'
        values: '0+3750000x120'
      - series: 'facility_power_joules_total{{site="s2",meter="pdu",scope="it"}}'
        values: '0+1500000x80 1500000+1500000x39'
      - series: 'facility_power_watts{{site="s2",meter="pdu",scope="it"}}'
        values: '25000x120'
      - series: 'facility_power_watts{{site="s2",meter="ups",scope="it"}}'
        values: '25000x120'
    promql_expr_test:
      - expr: site:pue_energy_ratio:1h
        eval_time: 2h
        exp_samples:
          - labels: 'site:pue_energy_ratio:1h{{site="s2"}}'
            value: 1.25
"""


def test_pue_recording_rule_adds_power_only_meters_and_survives_a_reset(tmp_path):
    # 62.5 kWh / (25 kWh + 25 kWh) = 1.25, evaluated by promtool over the committed rules.
    from servers import installed

    rules = DASHBOARDS_DIR / RULES_FILE
    spec = tmp_path / "pue_test.yml"
    spec.write_text(PUE_RULE_TEST.format(rules=rules), encoding="utf-8")
    done = subprocess.run([installed("promtool"), "test", "rules", str(spec)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- offline: no external URL in any dashboard; a licensed tile service only when asked -------

EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*://|^//|\bwww\.", re.I)


def _strings(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _geomap(text: str) -> dict:
    (geo,) = [p for p in json.loads(text)["panels"] if p["type"] == "geomap"]
    return geo


def test_no_dashboard_fetches_anything_from_outside_grafana(files):
    """Every string of every dashboard (both languages): no URL with a scheme or a
    protocol-relative one; links stay inside Grafana; the map's base layer is a file Grafana
    serves (the generated graticule), never a tile server."""
    from test_compose import compose_config

    dashboards = {rel: text for rel, text in files.items() if rel.startswith("json/")}
    assert len(dashboards) == 10
    for rel, text in dashboards.items():
        found = [s for s in _strings(json.loads(text)) if EXTERNAL.search(s)]
        assert not found, f"{rel}: {found[:3]}"
    grafana = yaml.safe_load(compose_config().stdout)["services"]["grafana"]
    served = {v.split(":")[1].removeprefix("/usr/share/grafana/"): Path(v.split(":")[0])
              for v in grafana["volumes"] if ":/usr/share/grafana/public/" in v}
    for rel in ("json/en/computewatch-national.json",
                "json/zh-CN/computewatch-national-zh-cn.json"):
        base = _geomap(files[rel])["options"]["basemap"]
        assert base["type"] == "geojson", rel
        source = served[base["config"]["src"]]
        assert source == DASHBOARDS_DIR / BASE_LAYER_FILE
        lines = json.loads(source.read_text())["features"]
        assert {f["geometry"]["type"] for f in lines} == {"LineString"}  # no polygons
        layers = _geomap(files[rel])["options"]["layers"]
        assert {layer["location"]["gazetteer"] for layer in layers} <= set(served)
        labelled = {layer["location"]["lookup"] for layer in layers
                    if layer["config"]["style"].get("text", {}).get("mode") == "field"}
        assert labelled == {"hub", "cluster"}, rel


def test_a_licensed_tile_service_replaces_the_graticule_when_given(shipped):
    tiles = MapTiles("https://t0.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk=KEY",
                     "天地图 GS(2024)0650号")
    built = build_files(*shipped, tiles=tiles)
    base = _geomap(built["json/zh-CN/computewatch-national-zh-cn.json"])["options"]["basemap"]
    assert base["type"] == "xyz"
    assert base["config"] == {"url": tiles.url, "attribution": tiles.attribution}
    urls = [s for rel, text in built.items() if rel.startswith("json/")
            for s in _strings(json.loads(text)) if EXTERNAL.search(s)]
    assert urls == [tiles.url, tiles.url]  # the two national maps, nothing else


@pytest.mark.parametrize(("url", "says"), [
    ("tiles.example.cn/{z}/{x}/{y}.png", "an http(s) URL"),
    ("https://tiles.example.cn/{z}/{x}.png", "no {y} placeholder"),
    ("https://tiles.example.cn/tile.png", "no {z}, {x}, {y} placeholder"),
])
def test_a_tile_url_grafana_cannot_use_is_refused_naming_the_option(tmp_path, url, says,
                                                                     monkeypatch, capsys):
    from computewatch.cli import main

    monkeypatch.setattr(sys, "argv", ["computewatch", "dashboards", "build", "--out",
                                      str(tmp_path), "--map-tiles", url])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == ExitStatus.BAD_INPUT
    err = capsys.readouterr().err
    assert "--map-tiles" in err and says in err and url in err
    assert not list(tmp_path.iterdir())


# --- the two languages: no English left in the zh-CN set, no Chinese in the English one ------

CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
ALLOWED = {  # units, ids, acronyms, product and standard names kept as written in Chinese text
    "computewatch", "PUE", "RTT", "p95", "kWh", "MWh", "GWh", "ms", "ISO", "IEC", "GB", "RM2",
    "IT", "GPU", "NPU", "ECC", "XID", "NVIDIA", "Ascend", "cuda", "cann", "Kubernetes", "Pod",
    "README", "Grafana", "facility", "it", "cooling", "other", "h",
}


def _visible(model: dict) -> list[str]:
    """What a person reads in a dashboard: its title and description, every panel's title,
    description, legends, column headings, value-mapping texts, link titles, layer names and
    text content, row titles, variable labels."""
    out = [model["title"], model.get("description", "")]
    out += [v.get("label", "") for v in model["templating"]["list"]]
    out += [v["current"].get("text", "") for v in model["templating"]["list"]
            if v["type"] == "custom" and not str(v["current"].get("text", "")).isdigit()]
    for panel in model["panels"]:
        out += [panel.get("title", ""), panel.get("description", "")]
        out += [t.get("legendFormat", "") for t in panel.get("targets", [])]
        for tr in panel.get("transformations", []):
            out += list(tr.get("options", {}).get("renameByName", {}).values())
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        out += [link["title"] for link in defaults.get("links", [])]
        for mapping in defaults.get("mappings", []):
            out += [r.get("text", "") for r in mapping.get("options", {}).values()]
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "mappings":
                    out += [r.get("text", "") for m in prop["value"]
                            for r in m["options"].values()]
        options = panel.get("options", {})
        out += [layer.get("name", "") for layer in options.get("layers", [])]
        if options.get("basemap"):
            out.append(options["basemap"].get("name", ""))
        out.append(options.get("content", ""))
    return [s for s in out if s]


def _english_words(text: str, sources: list[str]) -> list[str]:
    for quoted in sources:  # the policy's sources are quoted as policy.yaml states them
        text = text.replace(quoted, "")
    text = re.sub(r"\{\{[^}]*\}\}|`[^`]*`|\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", "", text)
    words = [w.strip(".-") for w in re.findall(r"[A-Za-z][A-Za-z0-9_.-]*", text)]
    return [w for w in words if w not in ALLOWED and not re.fullmatch(r"[A-Z0-9]\d*", w)]


def _policy_sources(policy) -> list[str]:
    """The policy's sources as written, longest first (so a longer one is removed whole)."""
    return sorted(policy.sources_in("en"), key=len, reverse=True)


def test_the_zh_cn_set_has_no_untranslated_english(files, shipped):
    sources: list[str] = []  # the policy's sources are quoted in Chinese (source_zh), as well
    zh = {rel: json.loads(text) for rel, text in files.items() if rel.startswith("json/zh-CN/")}
    assert len(zh) == 5
    for rel, model in zh.items():
        texts = _visible(model)
        assert len(texts) > 20, rel
        left = {t[:60]: words for t in texts if (words := _english_words(t, sources))}
        assert not left, f"{rel}: untranslated {left}"
        assert CJK.search(model["title"]) and all(
            CJK.search(p["title"]) for p in model["panels"] if p.get("title")), rel


def test_the_zh_cn_set_quotes_the_policys_sources_in_chinese(files, shipped):
    policy = shipped[1]
    zh = "\n".join(t for rel, text in files.items() if rel.startswith("json/zh-CN/")
                   for t in _visible(json.loads(text)))
    en = "\n".join(t for rel, text in files.items() if rel.startswith("json/en/")
                   for t in _visible(json.loads(text)))
    quoted = [policy.latency.route_inflation_limit, policy.utilization.minimums.hub.default,
              policy.pue.min_completeness]
    for entry in quoted:
        assert entry.source_zh.strip() in zh and entry.source.strip() not in zh, entry.source
        assert entry.source.strip() in en, entry.source


def test_the_english_set_has_no_chinese(files, shipped):
    sources = _policy_sources(shipped[1])  # some cite Chinese documents by their numbers
    en = {rel: json.loads(text) for rel, text in files.items() if rel.startswith("json/en/")}
    assert len(en) == 5
    for rel, model in en.items():
        texts = [t for t in _visible(model)]
        for quoted in sources:
            texts = [t.replace(quoted, "") for t in texts]
        found = [t for t in texts if CJK.search(t)]
        assert not found, f"{rel}: {found[:3]}"


def test_the_untranslated_check_catches_english(shipped):
    model = json.loads(build_files(*shipped)["json/zh-CN/computewatch-site-zh-cn.json"])
    model["panels"][0]["description"] += " Power drawn now."
    assert _english_words(model["panels"][0]["description"], []) == ["Power", "drawn", "now"]
