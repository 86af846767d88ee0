"""The report as one self-contained HTML file: inline CSS, plots as inline SVG, no scripts and
nothing fetched, so it can be filed, mailed and printed (the PDF is this file printed)."""

from __future__ import annotations

import math
from itertools import groupby

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from computewatch.pue import CATEGORY_POINT
from computewatch.render import format_value
from computewatch.reports._methodology import methodology
from computewatch.reports._model import COLUMNS, Report
from computewatch.reports._period import CHINA
from computewatch.reports._plots import latency_plot, pue_plot, utilization_plot
from computewatch.utilization import DEFINITIONS

__all__ = ["FINDINGS_SHOWN", "NAMESPACES_SHOWN", "render_html"]

NAMESPACES_SHOWN = 30
"""Rows of the per-namespace table shown (most held-idle card-hours first; the CSV of
``computewatch analyze`` and the report model hold every one)."""

FINDINGS_SHOWN = 25
"""Findings listed one by one per pipeline (most severe first), so a pipeline with thousands
of link findings does not crowd out the utilization and PUE ones; the counts by rule always
cover them all."""
ORDER = ("underuse", "pue", "latency", "anomaly", "surplus")

_VERDICTS = {"pass": "pass 达标", "fail": "fail 未达标", "incomplete": "incomplete 数据不足",
             "no_data": "no data 无数据", "no_it_meter": "no IT meter 无IT计量",
             "no_facility_meter": "no facility meter 无总计量"}
_SEVERITY = {2: "critical", 1: "warning", 0: "info"}


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x: float) -> str:
    return "—" if _missing(x) else f"{x * 100:.1f}%"


def pct0(x: float) -> str:
    return "—" if _missing(x) else f"{x * 100:.0f}%"


def pue3(x: float) -> str:
    return "—" if _missing(x) else f"{x:.3f}"


def pue2(x: float) -> str:
    return "—" if _missing(x) else f"{x:.2f}"


def pue_label(row: dict, floor: float = 1.0) -> str:
    """A row's PUE label: ISO/IEC 30134-2 kind and category, GB 40879 grade, the 12-month
    figure when the store holds one, and, where the row is below the completeness ``floor``,
    the meters that were silent (the CSV's ``pue_silent_meters`` names them always)."""
    if row.get("pue_verdict") == "no_data":
        return "—"
    cat = int(row.get("pue_category") or 0)
    parts = [("interim" if row.get("pue_interim", True) else "12-month")
             + (f", cat. {cat} ({CATEGORY_POINT[cat]})" if cat in CATEGORY_POINT
                else ", category not declared")]
    grade = row.get("pue_grade") or ""
    if grade:
        parts.append("above GB 40879 limit" if grade == "over_limit" else f"GB 40879 grade {grade}")
    if not _missing(row.get("pue_12m")):
        parts.append(f"12 months: {row['pue_12m']:.3f}")
    elif not _missing(row.get("pue_12m_completeness")):
        parts.append(f"12 months: {pct0(row['pue_12m_completeness'])} metered")
    if row.get("pue_silent_meters") and float(row.get("pue_completeness") or 0.0) < floor:
        parts.append(f"silent: {row['pue_silent_meters']}")
    return " · ".join(parts)


def count(x: float) -> str:
    return "—" if _missing(x) else f"{x:,.0f}"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("computewatch.reports", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(pct=pct, pct0=pct0, pue=pue3, pue2=pue2, count_=count, pue_label=pue_label,
                       verdict=lambda v: _VERDICTS.get(v, v))
    return env


def _local(t: pd.Timestamp | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "—" if t is None or pd.isna(t) else pd.Timestamp(t).tz_convert(CHINA).strftime(fmt)


def _cards(report: Report) -> list[dict[str, str]]:
    sites, f = report.sites, report.findings
    scored = sites.utilization_verdict.isin(["pass", "fail"])
    probes = float(report.links.probes.sum()) if len(report.links) else 0.0
    within = float(report.links.probes_within_budget.sum()) if len(report.links) else 0.0
    sev = f.severity.astype(int) if len(f) else pd.Series(dtype=int)
    return [
        {"n": f"{len(sites)}", "label": "sites 中心"},
        {"n": f"{(sites.utilization_verdict == 'fail').sum()} / {scored.sum()}",
         "label": "below utilization minimum / scored 利用率未达标"},
        {"n": f"{(sites.pue_verdict == 'fail').sum()} / "
              f"{sites.pue_verdict.isin(['pass', 'fail']).sum()}",
         "label": "over PUE target / scored PUE超标"},
        {"n": f"{(~scored).sum()}", "label": "sites not scored (incomplete data) 数据不足"},
        {"n": pct(within / probes) if probes else "—",
         "label": f"link probes within tier budget ({within:,.0f} of {probes:,.0f}) 时延达标"},
        {"n": pct(report.coverage.get("period_completeness", 0.0)),
         "label": "of the period's site-windows hold data 数据覆盖"},
        {"n": f"{(sev == 2).sum()} / {(sev == 1).sum()} / {(sev == 0).sum()}",
         "label": "findings critical / warning / info 发现"},
    ]


def _banner(report: Report) -> str:
    c = report.coverage
    share = float(c.get("period_completeness", 0.0))
    if share >= report.floor:
        return ""
    return (f"The store holds accelerator data for {c['site_windows_with_data']:,} of the "
            f"{c['site_windows']:,} site-windows of the period ({c['sites']} sites x "
            f"{c['windows']:,} "
            f"{report.window.total_seconds() / 60:g}-minute windows): {share:.1%}, the "
            f"equivalent of {share * report.period.days:.1f} of {report.period.days:g} days. "
            f"Verdicts need at least {report.floor:.0%} completeness: rows below it say "
            "incomplete, and their values describe only the time the store holds.")


def _findings(report: Report) -> tuple[list[dict], list[dict]]:
    f = report.findings
    if f.empty:
        return [], []
    counts = (f.assign(sev=f.severity.astype(int)).groupby(["pipeline", "rule", "sev"]).size()
              .unstack(fill_value=0))
    by_rule = [{"pipeline": p, "rule": r, "critical": int(row.get(2, 0)),
                "warning": int(row.get(1, 0)), "info": int(row.get(0, 0))}
               for (p, r), row in counts.iterrows()]
    shown = []
    rank = {p: i for i, p in enumerate(ORDER)}
    firsts = f.groupby("pipeline", sort=False).head(FINDINGS_SHOWN)  # keeps severity order
    firsts = firsts.iloc[sorted(range(len(firsts)),
                                key=lambda i: rank.get(firsts.pipeline.iloc[i], len(rank)))]
    for r in firsts.itertuples():
        shown.append({
            "severity": int(r.severity), "severity_name": _SEVERITY.get(int(r.severity), ""),
            "pipeline": r.pipeline, "rule": r.rule, "subject": r.subject,
            "observed": format_value(r.observed, r.unit),
            "threshold": format_value(r.threshold, r.unit),
            "window": f"{_local(pd.Timestamp(r.start), '%m-%d %H:%M')} – "
                      f"{_local(pd.Timestamp(r.end), '%m-%d %H:%M')}",
            "completeness": pct0(r.completeness), "message": r.message})
    return by_rule, shown


def _planning(report: Report) -> list[dict]:
    """The planning findings (standing conditions a route or a budget causes, per hub pair
    and tier), every one: what a network plan has to answer, not what pages."""
    f = report.findings
    if f.empty or "detail" not in f:
        return []
    out = []
    for r in f.itertuples():
        detail = r.detail if isinstance(r.detail, dict) else {}
        if not detail.get("planning"):
            continue
        links = [str(e.get("pair", "")) for e in detail.get("links", [])]
        out.append({"rule": r.rule, "subject": r.subject, "tier": detail.get("tier", ""),
                    "links": len(links),
                    "examples": ", ".join(links[:3]) + (" ..." if len(links) > 3 else ""),
                    "intermittent": len(detail.get("intermittent", [])),
                    "message": r.message})
    return sorted(out, key=lambda p: (p["rule"], -p["links"], p["subject"], p["tier"]))


def _coverage(report: Report) -> list[tuple[str, str]]:
    c = report.coverage
    unknown = c.get("unknown_sites") or []
    return [
        ("Accelerator data 加速卡数据", f"{c['site_windows_with_data']:,} of "
         f"{c['site_windows']:,} site-windows ({pct(c['period_completeness'])}; "
         f"{c['sites']} sites x {c['windows']:,} windows); first window "
         f"{_local(c['first_window'])}, last {_local(c['last_window'])} (China time)"),
        *((("Period read 读取区间", c["period_note"]),) if c.get("period_note") else ()),
        ("Meters 计量表", f"{c['meters']:,} meters with energy readings in the period"),
        ("Links 链路", f"{c['links']:,} probed links in scope with a known tier"),
        ("Left out 未纳入", ", ".join(unknown) + " (sites in the store but not in the "
         "topology: their data is not in any row)" if unknown else "nothing: every site in "
         "the store is in the topology"),
        *((f"Pipeline {name}", text) for name, text in report.pipelines.items()),
    ]


def _plots(report: Report) -> list[dict[str, object]]:
    return [  # the two small plots side by side, the PUE of every site below them
        {"id": "utilization", "title": "利用率分布 Utilization distribution",
         "svg": utilization_plot(report),
         "caption": "Utilization of each site in each window of the period that holds data; "
                    "dashed: the site minimums."},
        {"id": "latency", "title": "时延达标率 Latency-tier compliance",
         "svg": latency_plot(report),
         "caption": "Share of probes answered within the tier budget, per hub (links touching "
                    "it) and tier."},
        {"id": "pue", "title": "各中心PUE PUE by site", "svg": pue_plot(report), "wide": True,
         "caption": "Energy-based PUE over the period (green: within target, red: over, grey: "
                    "not stated for lack of data) with each site's target (black tick)."},
    ]


def render_html(report: Report) -> str:
    """The whole report as one HTML document."""
    start, end = report.period.local()
    scope = f"hub {report.hub}" if report.hub else "national 全国"
    title = (f"算力中心监管报告 Compute Center Regulatory Report — {report.period.label}"
             + (f" — {report.hub}" if report.hub else ""))
    by_rule, shown = _findings(report)
    entries = methodology(report)
    return _environment().get_template("report.html").render(
        title=title, period_label=report.period.label,
        local_start=f"{start:%Y-%m-%d %H:%M}", local_end=f"{end:%Y-%m-%d %H:%M}",
        utc_start=f"{report.period.start:%Y-%m-%d %H:%M}",
        utc_end=f"{report.period.end:%Y-%m-%d %H:%M}", scope=scope,
        store_url=report.store_url, definition_text=DEFINITIONS[report.definition],
        generated=f"{report.generated:%Y-%m-%d %H:%M}", banner=_banner(report),
        cards=_cards(report), floor=f"{report.floor:.0%}", floor_ratio=report.floor,
        sites=report.sites.to_dict("records"), hubs=report.hubs.to_dict("records"),
        plots=_plots(report), findings_total=len(report.findings),
        findings_shown=len(shown), per_pipeline=FINDINGS_SHOWN, by_rule=by_rule, findings=shown,
        planning=_planning(report),
        namespaces=report.namespaces.head(NAMESPACES_SHOWN).to_dict("records"),
        namespaces_total=len(report.namespaces),
        coverage=_coverage(report),
        methodology=[(t, list(g)) for t, g in groupby(entries, key=lambda e: e.topic)],
        policy_note=report.policy_name,
        columns=list(COLUMNS.items()))
