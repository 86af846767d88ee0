"""The report's plots as inline SVG (matplotlib): utilization distribution, PUE by site,
latency-tier compliance by hub, labelled in the report's language with places by name.

Text stays text (``svg.fonttype: none``): the browser draws it with the report's font, so the
PDF's plot labels are searchable and copyable and use the same embedded TrueType font as the
rest (text drawn as paths is neither). matplotlib lays the labels out with the metrics of an
installed CJK font (`_METRIC_FONTS`), the same design the report embeds.

Figures are built without pyplot: no global figure state and no GUI backend, so a report can
be rendered in any thread or server."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from functools import lru_cache, wraps

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure

from computewatch.i18n import _, current_language
from computewatch.place_names import place_name
from computewatch.reports._model import Report
from computewatch.reports._words import TIER_NAMES, word
from computewatch.topology import Tier

__all__ = ["latency_plot", "pue_plot", "utilization_plot"]

PASS, FAIL, GREY = "#2b8a3e", "#c92a2a", "#adb5bd"
TIER_COLOURS = {Tier.METRO: "#1c7ed6", Tier.REGIONAL: "#f08c00", Tier.NATIONAL: "#862e9c"}


_METRIC_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC",
                 "WenQuanYi Micro Hei", "Droid Sans Fallback", "DejaVu Sans")
"""Fonts matplotlib measures labels with, the first installed one (a .ttc registers under
its first face's name: Noto's is JP, the same metrics)."""


@lru_cache(maxsize=1)
def _font_rc() -> dict[str, object]:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    families = [f for f in _METRIC_FONTS if f in installed] or ["DejaVu Sans"]
    return {"svg.fonttype": "none", "svg.hashsalt": "computewatch",
            "font.family": "sans-serif", "font.sans-serif": families}


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height))


def _with_fonts(plot: Callable[[Report], str | None]) -> Callable[[Report], str | None]:
    """Run a plot under `_font_rc`: a label takes its font when it is made, not when saved."""
    @wraps(plot)
    def wrapped(report: Report) -> str | None:
        with matplotlib.rc_context(_font_rc()):
            return plot(report)
    return wrapped


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and doctype: inline in HTML
    return re.sub(r"<metadata>.*?</metadata>", "", text, count=1, flags=re.S)


@_with_fonts
def utilization_plot(report: Report) -> str | None:
    """Histogram of site-window utilization with the site minimums as lines."""
    values = report.utilization_windows.value.dropna().to_numpy()
    if values.size == 0:
        return None
    fig = _figure(7.5, 2.9)
    ax = fig.subplots()
    ax.hist(values * 100, bins=np.linspace(0, 100, 41), color="#4c6ef5", edgecolor="white")
    for minimum in sorted(set(report.sites.utilization_minimum.dropna())):
        ax.axvline(minimum * 100, color=FAIL, linestyle="--", linewidth=1.2)
        ax.annotate(_("site minimum {share}").format(share=f"{minimum:.0%}"),
                    (minimum * 100, 1), xycoords=("data",
                    "axes fraction"), xytext=(4, -12), textcoords="offset points",
                    color=FAIL, fontsize=8)
    ax.set_xlabel(_("utilization per site and {minutes}-minute window (%)").format(
        minutes=f"{report.window.total_seconds() / 60:g}"))
    ax.set_ylabel(_("site-windows"))
    ax.set_xlim(0, 100)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


@_with_fonts
def pue_plot(report: Report) -> str | None:
    """Each site's PUE as a bar against its target; sites without a stated PUE in grey."""
    sites = report.sites.sort_values(["pue", "id"], ascending=[False, True], na_position="last")
    if sites.pue.isna().all() and (sites.pue_completeness == 0).all():
        return None
    fig = _figure(max(7.5, 1.5 + 0.22 * len(sites)), 3.1)
    ax = fig.subplots()
    x = np.arange(len(sites))
    pue = sites.pue.to_numpy(dtype=float)
    colour = [PASS if v == "pass" else FAIL if v == "fail" else GREY for v in sites.pue_verdict]
    ax.bar(x, np.nan_to_num(pue - 1.0, nan=0.0), bottom=1.0, color=colour, width=0.75)
    ax.scatter(x, sites.pue_target, marker="_", s=50, linewidths=2, color="black", zorder=3,
               label=_("target"))
    hi = max(float(np.nanmax(pue)) if np.isfinite(pue).any() else 1.3,
             float(sites.pue_target.max())) + 0.05
    for xi, (v, c) in enumerate(zip(pue, sites.pue_completeness, strict=True)):
        if np.isnan(v):
            ax.text(xi, 1.005, _("not stated, {share} metered").format(share=f"{c:.0%}"),
                    rotation=90, ha="center",
                    va="bottom", fontsize=6, color="#495057")
    lang = current_language()
    ax.set_xticks(x, [place_name(report.topology, "site", s, lang) for s in sites.id],
                  rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(sites) - 0.4)
    ax.set_ylim(1.0, hi)
    ax.set_ylabel(_("energy-based PUE"))
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _svg(fig)


@_with_fonts
def latency_plot(report: Report) -> str | None:
    """Share of probes answered within the tier budget, per hub and tier."""
    links = report.links
    if links.empty or links.probes.sum() == 0:
        return None
    hubs = [h for h in report.hubs.id]
    fig = _figure(7.5, 2.9)
    ax = fig.subplots()
    width = 0.8 / len(Tier)
    for k, tier in enumerate(Tier):
        shares = []
        for h in hubs:
            sel = links[((links.src_hub == h) | (links.dst_hub == h)) & (links.tier == tier)]
            has = sel.probes.sum()
            shares.append(sel.probes_within_budget.sum() / has * 100 if has else np.nan)
        ax.bar(np.arange(len(hubs)) + (k - 1) * width, shares, width,
               color=TIER_COLOURS[tier], label=word(TIER_NAMES, tier.value))
    lang = current_language()
    ax.set_xticks(np.arange(len(hubs)),
                  [place_name(report.topology, "hub", h, lang) for h in hubs], fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel(_("probes within budget (%)"))
    ax.legend(ncols=3, fontsize=8, frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, 1.15))
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)
