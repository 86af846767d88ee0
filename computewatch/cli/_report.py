"""`computewatch report`: the regulator report for a period, as HTML, PDF or CSV."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from computewatch.cli._common import (
    DEFAULT_STORE,
    Opening,
    PolicyOpt,
    StoreOpt,
    TopologyOpt,
    UserError,
    err_console,
    load_places,
    print_error,
    spinner,
)
from computewatch.status import ExitStatus

__all__ = ["HOURLY_PIPELINES", "report"]

HOURLY_PIPELINES = ("underuse", "pue", "surplus")
"""The pipelines a report runs over hourly rollups. Latency and anomaly run there too (at
hourly windows: `computewatch analyze`), but over a month of a national fleet they take
tens of seconds (measured 6.6 s and 36 s for 40 sites' month), more than the report's
whole budget; the report's latency compliance per tier comes from the probe counts."""


def report(
    period: Annotated[str | None, typer.Option(
        help="A month in China time (2026-10), a quarter (2026-Q3), a year, a day "
             "(2026-10-05), a range "
             "(2026-10-01/2026-10-07) or a duration ending at the last sample (24h); "
             "default: the month of the last sample.")] = None,
    hub: Annotated[str | None, typer.Option(help="Only this hub and its sites, e.g. jjj.")]
    = None,
    province: Annotated[str | None, typer.Option(
        help="Only the sites in this province, by its English or Chinese name, e.g. Hebei "
             "or 河北 (site rows only; with --hub, the hub's sites in it).")] = None,
    store: StoreOpt = DEFAULT_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: Annotated[str, typer.Option("--format", help="html | pdf | csv")] = "html",
    out: Annotated[str | None, typer.Option(
        "--out", help="File to write, '-' for stdout (html, csv); default: "
        "report-<period>[-<hub>][-<province>].<format> in the current directory.")] = None,
    definition: Annotated[str | None, typer.Option(
        help="Utilization definition for every row: time_weighted | busy_fraction (default: "
             "the policy's for each level; then the verdicts are analyze's findings).")]
    = None,
) -> None:
    """The regulator report: utilization, PUE and latency tiers per site and hub, data
    completeness, findings and the methodology with every threshold's source, in the language
    of --lang (the cover states the software version, the policy's version and SHA-256, the
    data window and its completeness)."""
    from computewatch.cli._startup import starting

    with starting("computewatch.pipelines"):  # the imports of the report's start-up
        opening = Opening(store)  # read-only: two reports of one file at once
        with opening.guard():
            from zoneinfo import ZoneInfo

            from computewatch.i18n import _
            from computewatch.pipelines import run_pipelines
            from computewatch.policy import policy_sha256
            from computewatch.pue import CHINA_TZ
            from computewatch.reports import (
                REPORT_FORMATS,
                SHIPPED_POLICY,
                ChromiumMissingError,
                PdfError,
                build_report,
                check_scope,
                parse_period,
                readable_period,
                write_report,
            )
            from computewatch.store import resolution

    with opening.guard():
        fmt = output.lower()
        if fmt not in REPORT_FORMATS:
            raise UserError(_("bad --format {value}: one of {choices}").format(
                value=repr(output), choices=", ".join(REPORT_FORMATS)))
        if out == "-" and fmt == "pdf":
            raise UserError(_("--format pdf cannot go to stdout; name a file with --out"))
        topo, pol = load_places(topology, policy)
    st = opening.result()
    console = err_console()
    try:
        bounds = st.time_bounds("accelerator")
        if period is None:
            if bounds is None:
                raise UserError(_("{url}: holds no accelerator samples; run `computewatch "
                                  "demo` or an agent first, or pass --period").format(
                                      url=st.url))
            period = f"{bounds[1].astimezone(ZoneInfo(CHINA_TZ)):%Y-%m}"
        try:
            rp = parse_period(period, last_sample_end=bounds[1] + timedelta(minutes=1)
                              if bounds else None)
            check_scope(topo, hub, definition, province=province)
            rp = readable_period(st, rp)  # daily-only history is read in UTC days
            # The pipelines' rules need their windows: over hourly rollups the report runs
            # `HOURLY_PIPELINES` (latency and anomaly are left to `analyze`); over daily
            # rollups none, and the verdicts compare each period value with its minimum or
            # target. The report says which.
            res = resolution(st, "accelerator", rp.start)
            only = () if res >= timedelta(days=1) else \
                HOURLY_PIPELINES if res >= timedelta(hours=1) else None
            if only is not None:
                rp = replace(rp, note="; ".join(filter(None, (
                    rp.note, f"history before the raw data is kept as "
                    f"{'daily' if not only else 'hourly'} rollups: pipelines run: "
                    f"{', '.join(only) or 'none'} ("
                    + ("the others need hourly windows" if not only else
                       "latency and anomaly at hourly windows: computewatch analyze")
                    + ")"))))
            with spinner(console, "report") as shown:
                analysis = run_pipelines(  # read-only: the report's findings are not stored
                    st, rp.period, pol, topo, write=False, only=only,
                    progress=lambda name: shown.update(f"report: findings: {name}"))
                result = build_report(st, topo, pol, rp, analysis, hub=hub, province=province,
                                      definition=definition,
                                      policy_name=str(policy) if policy else SHIPPED_POLICY,
                                      policy_digest=policy_sha256(policy),
                                      progress=lambda step: shown.update(f"report: {step}"))
        except ValueError as exc:  # a bad period, hub or definition; an empty period
            raise UserError(str(exc)) from None
    finally:
        st.close()
    try:
        target = write_report(result, fmt, Path(out) if out and out != "-" else None,
                              stdout=sys.stdout if out == "-" else None)
    except ChromiumMissingError as exc:
        raise UserError(str(exc)) from None
    except PdfError as exc:
        print_error(exc)
        raise typer.Exit(ExitStatus.ERROR) from None
    sites = result.sites
    scope = ", ".join(filter(None, (hub, result.province)))
    console.print(
        _("report {period} ({scope}): {sites} sites, {below} below their utilization minimum, "
          "{over} over their PUE target, {unscored} not scored; {share} of the period holds "
          "data; {findings} findings").format(
            period=(_("last {duration}").format(duration=rp.label[len("last "):])
                    if rp.label.startswith("last ") else rp.label),
            scope=scope or _("nationwide"), sites=len(sites),
            below=(sites.utilization_verdict == "fail").sum(),
            over=(sites.pue_verdict == "fail").sum(),
            unscored=(~sites.utilization_verdict.isin(["pass", "fail"])).sum(),
            share=f"{result.coverage['period_completeness']:.1%}",
            findings=len(result.findings)) + (f" -> {target}" if target else ""),
        markup=False, highlight=False, soft_wrap=True)
    if analysis.failed:  # the report says so too; the exit code tells a script
        for st in analysis.status:
            if not st.ok:
                print_error(f"pipeline {st.name} failed: {st.error}")
        raise typer.Exit(ExitStatus.ERROR)
