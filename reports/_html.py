"""The report as one self-contained HTML file: inline CSS, plots as inline SVG, no scripts and
nothing fetched, so it can be filed, mailed and printed (the PDF is this file printed).

Every word a reader sees comes through the catalogue (`computewatch.i18n`) in the report's
language, and every place by its name in that language (`computewatch.place_names`); ids
stay in the HTML's ``id`` and ``data-id`` attributes, where scripts and tests find them.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from itertools import groupby

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from computewatch.i18n import N_, _, current_language, ngettext, using_language
from computewatch.place_names import place_name
from computewatch.pue import CATEGORY_POINT
from computewatch.render import format_value
from computewatch.reports._fonts import FONT_FAMILY, embedded_font_css
from computewatch.reports._methodology import methodology
from computewatch.reports._model import COLUMNS, Report
from computewatch.reports._period import CHINA
from computewatch.reports._words import (
    PIPELINE_NAMES,
    SEVERITY_NAMES,
    TIER_NAMES,
    VERDICTS,
    column_meaning,
    rule_title,
    word,
)
from computewatch.utilization import DEFINITIONS

__all__ = ["FINDINGS_SHOWN", "NAMESPACES_SHOWN", "render_html"]

NAMESPACES_SHOWN = 30
"""Rows of the per-namespace table shown (most held-idle card-hours first; the CSV of
``computewatch analyze`` and the report model hold every one)."""

FINDINGS_SHOWN = 10
"""Findings listed one by one per pipeline (most severe first), so a pipeline with thousands
of link findings does not crowd out the utilization and PUE ones and the printed report stays
a filing, not a log; the counts by rule always cover them all, and ``computewatch analyze
--format csv`` lists every one."""
ORDER = ("underuse", "pue", "latency", "anomaly", "surplus")

_FONT_SLOT = "/*computewatch:embedded-fonts*/"
NO_HUB = "no-hub"
"""How the latency pipeline names the end of a hub pair outside every hub."""


def _period_label(report: Report) -> str:
    """The period as requested (``2026-10``, ``2026-Q3``, a range), a duration in words."""
    label = report.period.label
    if label.startswith("last "):
        return _("last {duration}").format(duration=label[len("last "):])
    return label


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


def energy(kwh: float) -> str:
    """Energy as billed: kWh below 1 MWh, MWh above (the unit in every cell)."""
    if _missing(kwh):
        return "—"
    return f"{kwh:,.1f} kWh" if kwh < 1000 else f"{kwh / 1000:,.2f} MWh"


def pue_label(row: dict, floor: float = 1.0) -> str:
    """A row's PUE label: ISO/IEC 30134-2 kind and category, GB 40879 grade, the 12-month
    figure when the store holds one, and, where the row is below the completeness ``floor``,
    the meters that were silent (the CSV's ``pue_silent_meters`` names them always)."""
    if row.get("pue_verdict") == "no_data":
        return "—"
    cat = int(row.get("pue_category") or 0)
    kind = _("interim") if row.get("pue_interim", True) else _("12-month")
    parts = [(_("{kind}, cat. {category} ({point})").format(
        kind=kind, category=cat, point=_(CATEGORY_POINT[cat])) if cat in CATEGORY_POINT
        else _("{kind}, category not declared").format(kind=kind))]
    grade = row.get("pue_grade") or ""
    if grade:
        parts.append(_("above GB 40879 limit") if grade == "over_limit"
                     else _("GB 40879 grade {grade}").format(grade=grade))
    if not _missing(row.get("pue_12m")):
        parts.append(_("12 months: {pue}").format(pue=f"{row['pue_12m']:.3f}"))
    elif not _missing(row.get("pue_12m_completeness")):
        parts.append(_("12 months: {share} metered").format(
            share=pct0(row["pue_12m_completeness"])))
    if row.get("pue_silent_meters") and float(row.get("pue_completeness") or 0.0) < floor:
        parts.append(_("silent: {meters}").format(meters=row["pue_silent_meters"]))
    return " · ".join(parts)


def count(x: float) -> str:
    return "—" if _missing(x) else f"{x:,.0f}"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """Built once per process: the template compiles once, whatever the language (the
    gettext callables read the language of the calling context)."""
    env = Environment(loader=PackageLoader("computewatch.reports", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: _(message), lambda s, p, n: ngettext(s, p, n), newstyle=True)
    env.filters.update(pct=pct, pct0=pct0, pue=pue3, pue2=pue2, count_=count, energy=energy,
                       pue_label=pue_label, verdict=lambda v: word(VERDICTS, v))
    return env


def _local(t: pd.Timestamp | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "—" if t is None or pd.isna(t) else pd.Timestamp(t).tz_convert(CHINA).strftime(fmt)


def _minutes(report: Report) -> str:
    return f"{report.window.total_seconds() / 60:g}"


def _cards(report: Report) -> list[dict[str, str]]:
    sites, f = report.sites, report.findings
    scored = sites.utilization_verdict.isin(["pass", "fail"])
    probes = float(report.links.probes.sum()) if len(report.links) else 0.0
    within = float(report.links.probes_within_budget.sum()) if len(report.links) else 0.0
    sev = f.severity.astype(int) if len(f) else pd.Series(dtype=int)
    return [
        {"n": f"{len(sites)}", "label": _("sites")},
        {"n": f"{(sites.utilization_verdict == 'fail').sum()} / {scored.sum()}",
         "label": _("below utilization minimum / scored")},
        {"n": f"{(sites.pue_verdict == 'fail').sum()} / "
              f"{sites.pue_verdict.isin(['pass', 'fail']).sum()}",
         "label": _("over PUE target / scored")},
        {"n": f"{(~scored).sum()}", "label": _("sites not scored (incomplete data)")},
        {"n": pct(within / probes) if probes else "—",
         "label": _("link probes within tier budget ({within} of {probes})").format(
             within=f"{within:,.0f}", probes=f"{probes:,.0f}")},
        {"n": pct(report.coverage.get("period_completeness", 0.0)),
         "label": _("of the period's site-windows hold data")},
        {"n": f"{(sev == 2).sum()} / {(sev == 1).sum()} / {(sev == 0).sum()}",
         "label": _("findings critical / warning / info")},
    ]


def _banner(report: Report) -> str:
    c = report.coverage
    share = float(c.get("period_completeness", 0.0))
    if share >= report.floor:
        return ""
    return _("The store holds accelerator data for {held} of the {expected} site-windows of "
             "the period ({sites} sites x {windows} {minutes}-minute windows): {share}, the "
             "equivalent of {days_held} of {days} days. Verdicts need at least {floor} "
             "completeness: rows below it say incomplete, and their values describe only the "
             "time the store holds.").format(
        held=f"{c['site_windows_with_data']:,}", expected=f"{c['site_windows']:,}",
        sites=c["sites"], windows=f"{c['windows']:,}", minutes=_minutes(report),
        share=f"{share:.1%}", days_held=f"{share * report.period.days:.1f}",
        days=f"{report.period.days:g}", floor=f"{report.floor:.0%}")


def _place(report: Report, kind: str, key: str) -> str:
    return place_name(report.topology, kind, key, current_language())  # type: ignore[arg-type]


def _subject(report: Report, subject_type: str, subject: str) -> str:
    """A finding's subject by name: a link (``a|b``) as both sites' names, a hub pair's
    ``no-hub`` end (sites outside the hubs) in words."""
    kind = {"link": "site", "hub_pair": "hub"}.get(subject_type)
    if kind and "|" in subject:
        return " | ".join(_("outside the hubs") if part == NO_HUB and kind == "hub"
                          else _place(report, kind, part) for part in subject.split("|"))
    if subject_type in ("site", "hub", "cluster", "province", "city"):
        return _place(report, subject_type, subject)
    return subject


def _findings(report: Report) -> tuple[list[dict], list[dict]]:
    f = report.findings
    if f.empty:
        return [], []
    english = current_language() == "en"
    counts = (f.assign(sev=f.severity.astype(int)).groupby(["pipeline", "rule", "sev"]).size()
              .unstack(fill_value=0))
    by_rule = [{"pipeline": word(PIPELINE_NAMES, p), "rule": r, "title": rule_title(r),
                "critical": int(row.get(2, 0)), "warning": int(row.get(1, 0)),
                "info": int(row.get(0, 0))}
               for (p, r), row in counts.iterrows()]
    shown = []
    rank = {p: i for i, p in enumerate(ORDER)}
    firsts = f.groupby("pipeline", sort=False).head(FINDINGS_SHOWN)  # keeps severity order
    firsts = firsts.iloc[sorted(range(len(firsts)),
                                key=lambda i: rank.get(firsts.pipeline.iloc[i], len(rank)))]
    for r in firsts.itertuples():
        shown.append({
            "severity": int(r.severity), "severity_name": word(SEVERITY_NAMES, int(r.severity)),
            "pipeline": word(PIPELINE_NAMES, r.pipeline), "rule": r.rule,
            "subject": _subject(report, str(r.subject_type), str(r.subject)),
            "observed": format_value(r.observed, r.unit),
            "threshold": format_value(r.threshold, r.unit),
            "window": f"{_local(pd.Timestamp(r.start), '%m-%d %H:%M')} – "
                      f"{_local(pd.Timestamp(r.end), '%m-%d %H:%M')}",
            "completeness": pct0(r.completeness),
            # English: the pipeline's own sentence; other languages state the rule's title
            # (place, values and window are the row's other cells).
            "message": r.message if english else rule_title(r.rule)})
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
        named = [" | ".join(_place(report, "site", s) for s in pair.split("|"))
                 for pair in links[:3]]
        out.append({"rule": r.rule, "title": rule_title(r.rule),
                    "subject": _subject(report, "hub_pair", str(r.subject)),
                    "subject_id": str(r.subject), "tier": word(TIER_NAMES, detail.get("tier", "")),
                    "links": len(links),
                    "examples": "; ".join(named[:2]) + (" …" if len(links) > 2 else ""),
                    "intermittent": len(detail.get("intermittent", []))})
    return sorted(out, key=lambda p: (p["rule"], -p["links"], p["subject_id"], p["tier"]))


def _coverage(report: Report) -> list[tuple[str, str]]:
    c = report.coverage
    unknown = c.get("unknown_sites") or []
    return [
        (_("Accelerator data"), _(
            "{held} of {expected} site-windows ({share}; {sites} sites x {windows} windows); "
            "first window {first}, last {last} (China time)").format(
            held=f"{c['site_windows_with_data']:,}", expected=f"{c['site_windows']:,}",
            share=pct(c["period_completeness"]), sites=c["sites"], windows=f"{c['windows']:,}",
            first=_local(c["first_window"]), last=_local(c["last_window"]))),
        *(((_("Period read"), c["period_note"]),) if c.get("period_note") else ()),
        (_("Meters"), _("{n} meters with energy readings in the period").format(
            n=f"{c['meters']:,}")),
        (_("Links"), _("{n} probed links in scope with a known tier").format(
            n=f"{c['links']:,}")),
        (_("Left out"), _("{sites} (sites in the store but not in the topology: their data "
                          "is not in any row)").format(sites=", ".join(unknown)) if unknown
         else _("nothing: every site in the store is in the topology")),
        *((_("Pipeline {name}").format(name=word(PIPELINE_NAMES, name)), _status(text))
          for name, text in report.pipelines.items()),
    ]


def _status(text: str) -> str:
    """A pipeline's status line (``N findings`` or ``failed: ...``) in the language."""
    head, _sep, rest = text.partition(" ")
    if head.isdigit() and rest in ("findings", "finding"):
        return _("{n} findings").format(n=head)
    if text.startswith("failed: "):
        return _("failed: {error}").format(error=text[len("failed: "):])
    return text


def _plots(report: Report) -> list[dict[str, object]]:
    # matplotlib is imported here, not with the module: a CSV report draws no plot and
    # its import costs more than a month's report of a national fleet otherwise does
    from computewatch.reports._plots import latency_plot, pue_plot, utilization_plot

    return [  # the two small plots side by side, the PUE of every site below them
        {"id": "utilization", "title": _("Utilization distribution"),
         "svg": utilization_plot(report),
         "caption": _("Utilization of each site in each window of the period that holds data; "
                      "dashed: the site minimums.")},
        {"id": "latency", "title": _("Latency-tier compliance"),
         "svg": latency_plot(report),
         "caption": _("Share of probes answered within the tier budget, per hub (links "
                      "touching it) and tier.")},
        {"id": "pue", "title": _("PUE by site"), "svg": pue_plot(report), "wide": True,
         "caption": _("Energy-based PUE over the period (green: within target, red: over, "
                      "grey: not stated for lack of data) with each site's target (black "
                      "tick).")},
    ]


def _css_text(text: str) -> str:
    """``text`` as a CSS string: backslashes, quotes and ``<`` (which could close the style
    element) escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\3C ") + '"'


def page_counter_css() -> str:
    """The footer's page numbers as a CSS ``content`` value in the current language:
    "Page N of M", 第 N 页 / 共 M 页 (the counters are the printer's)."""
    text = _("Page {page} of {pages}")
    parts = []
    for chunk in re.split(r"(\{page\}|\{pages\})", text):
        if chunk == "{page}":
            parts.append("counter(page)")
        elif chunk == "{pages}":
            parts.append("counter(pages)")
        elif chunk:
            parts.append(_css_text(chunk))
    return " ".join(parts)


def _scope(report: Report) -> str:
    parts = []
    if report.hub:
        parts.append(_("hub {name}").format(name=_place(report, "hub", report.hub)))
    if report.province:
        parts.append(_("province {name}").format(
            name=_place(report, "province", report.province)))
    return ", ".join(parts) if parts else _("nationwide")


def _rows(report: Report, frame: pd.DataFrame) -> list[dict]:
    rows = frame.to_dict("records")
    for r in rows:
        kind = "hub" if r["level"] == "hub" else "site"
        r["display"] = _place(report, kind, r["id"])
        r["hub_name"] = _place(report, "hub", r["hub"]) if r["hub"] else ""
        r["cluster_name"] = _place(report, "cluster", r["cluster"]) if r["cluster"] else ""
    return rows


def render_html(report: Report, *, language: str | None = None,
                embed_fonts: bool = False) -> str:
    """The whole report as one HTML document in ``language`` (default: the run's, as
    `computewatch.i18n` resolved it). ``embed_fonts`` carries the CJK font the text needs,
    cut to the document's characters (`computewatch.reports._fonts`): what the PDF is printed
    from, so every font in it is TrueType; a browser shows the plain file with its own."""
    with using_language(language or current_language()):
        html = _render(report)
    if embed_fonts:
        html = html.replace(_FONT_SLOT, embedded_font_css(html), 1)
    return html


def _render(report: Report) -> str:
    lang = current_language()
    start, end = report.period.local()
    title = _("Compute Center Regulatory Report")
    heading = f"{title} — {_period_label(report)}" + (
        f" — {_scope(report)}" if report.hub or report.province else "")
    by_rule, shown = _findings(report)
    entries = methodology(report)
    c = report.coverage
    digest = report.policy_sha256
    return _environment().get_template("report.html").render(
        lang=lang, html_lang="zh-Hans-CN" if lang == "zh-CN" else lang,
        title=heading,
        font_family=FONT_FAMILY, font_slot=_FONT_SLOT, page_counter=page_counter_css(),
        header_right=_css_text(_("computewatch {version} · policy {policy} · SHA-256 {sha}").format(
            version=report.software_version or "—", policy=report.policy.version or "—",
            sha=digest[:12] if digest else "—")),
        header_left=_css_text(f"{title} · {_period_label(report)} · {_scope(report)}"),
        footer_left=_css_text(_("Generated {time} UTC · China time is UTC+8").format(
            time=f"{report.generated:%Y-%m-%d %H:%M}")),
        period_label=_period_label(report),
        local_start=f"{start:%Y-%m-%d %H:%M}", local_end=f"{end:%Y-%m-%d %H:%M}",
        utc_start=f"{report.period.start:%Y-%m-%d %H:%M}",
        utc_end=f"{report.period.end:%Y-%m-%d %H:%M}", scope=_scope(report),
        data_first=_local(c.get("first_window")), data_last=_local(c.get("last_window")),
        completeness=pct(c.get("period_completeness", 0.0)),
        held=f"{c.get('site_windows_with_data', 0):,}", expected=f"{c.get('site_windows', 0):,}",
        store_url=report.store_url, definition_text=_(DEFINITIONS[report.definition]),
        generated=f"{report.generated:%Y-%m-%d %H:%M}", banner=_banner(report),
        version=report.software_version or "—",
        policy_name=_(report.policy_name), policy_version=report.policy.version or "—",
        policy_sha256=digest or "—", policy_short=digest[:12] if digest else "—",
        cards=_cards(report), floor=f"{report.floor:.0%}", floor_ratio=report.floor,
        sites=_rows(report, report.sites), hubs=_rows(report, report.hubs),
        plots=_plots(report), findings_total=len(report.findings),
        findings_shown=len(shown), per_pipeline=FINDINGS_SHOWN, by_rule=by_rule, findings=shown,
        planning=_planning(report),
        namespaces=[{**n, "site_name": _place(report, "site", n["site"]),
                     "hub_name": _place(report, "hub", n["hub"]) if n["hub"] else ""}
                    for n in report.namespaces.head(NAMESPACES_SHOWN).to_dict("records")],
        namespaces_total=len(report.namespaces),
        coverage=_coverage(report),
        methodology=[(t, list(g)) for t, g in groupby(entries, key=lambda e: e.topic)],
        columns=[(name, column_meaning(name)) for name in COLUMNS])


N_("the shipped policy, computewatch/data/policy.yaml")  # SHIPPED_POLICY, shown translated
