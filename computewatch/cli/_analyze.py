"""`computewatch analyze`: run the pipelines over a period, print and store the findings, push
them to Alertmanager; with ``--every``, again on a fixed schedule until signalled."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from computewatch.cli._common import (
    DEFAULT_STORE,
    FormatOpt,
    PolicyOpt,
    StoreOpt,
    TopologyOpt,
    UserError,
    err_console,
    load_places,
    open_existing,
    output_format,
    parse_duration,
    period_of,
    print_error,
)
from computewatch.cli._signals import run_until_signalled
from computewatch.config import ConfigError
from computewatch.i18n import _
from computewatch.status import ExitStatus

if TYPE_CHECKING:
    from computewatch.findings import Analysis, Severity

__all__ = ["analyze"]


def analyze(
    since: Annotated[str, typer.Option(help="Period length back from --until, e.g. 7d.")]
    = "7d",
    until: Annotated[str | None, typer.Option(help="End of the period (ISO 8601, UTC); "
                                              "default: the last sample in the store.")] = None,
    only: Annotated[str | None, typer.Option(
        help="Comma-separated pipelines: underuse, latency, pue, anomaly, surplus.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: FormatOpt = "table",
    limit: Annotated[int, typer.Option(min=0, help="Rows in the table (json/csv get all).")]
    = 40,
    alert: Annotated[list[str] | None, typer.Option(
        "--alert", help="Push the findings as alerts to this Alertmanager (base URL, "
        "repeatable); findings gone since the last run are resolved.")] = None,
    alert_hold: Annotated[str | None, typer.Option(
        help="How long a pushed alert lasts unless a later run refreshes it "
        "(default: 3 x --every, else 1h).")] = None,
    alert_severity: Annotated[str, typer.Option(
        help="Lowest severity pushed as an alert: info, warning or critical.")] = "warning",
    every: Annotated[str | None, typer.Option(
        help="Run again on this interval until interrupted, e.g. 15m.")] = None,
    heartbeat: Annotated[Path | None, typer.Option(
        help="After each run in which every pipeline ran and every push succeeded, write "
        "the time to this file (for a health check: computewatch-healthcheck "
        "file://PATH?max_age=...).")] = None,
) -> None:
    """Run the analytics pipelines; findings are printed and written back to the store."""
    from computewatch.findings import Severity
    from computewatch.pipelines import PIPELINES, run_pipelines
    from computewatch.render import render_analysis, render_root_causes
    from computewatch.schedule import run_every, write_heartbeat
    from computewatch.store import StoreError
    from computewatch.triage import root_causes, triage_frame

    fmt = output_format(output)
    topo, pol = load_places(topology, policy)
    names = [o.strip() for o in only.split(",")] if only else None
    bad = [n for n in names or [] if n not in PIPELINES]
    if bad:
        raise UserError(_("unknown pipeline {name} (choose from {known})").format(
            name=repr(bad[0]), known=", ".join(PIPELINES)))
    interval = parse_duration(every, "--every", minimum=1.0) if every else None
    hold = (parse_duration(alert_hold, "--alert-hold") if alert_hold
            else 3 * interval if interval else timedelta(hours=1))
    try:
        min_severity = Severity[alert_severity.upper()]
    except KeyError:
        raise UserError(_("bad --alert-severity {value}: one of info, warning, critical")
                        .format(value=repr(alert_severity))) from None

    def run_once() -> bool:
        st = open_existing(store)
        try:
            period = period_of(st, since, until)
            try:
                analysis = run_pipelines(st, period, pol, topo, only=names)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        finally:
            st.close()
        title = f"{period.start:%Y-%m-%d %H:%M} – {period.end:%Y-%m-%d %H:%M}"
        if fmt.value == "table":  # the one-screen summary, then the rows most urgent first
            render_root_causes(root_causes(analysis.findings, analysis.period), sys.stdout,
                               title=_("Root causes {period}").format(period=title),
                               places=topo)
        render_analysis(analysis, fmt, sys.stdout, frame=triage_frame(analysis),
                        limit=limit if fmt.value == "table" else None,
                        title=_("Findings {period}").format(period=title), places=topo)
        for st in analysis.status:
            if not st.ok:
                print_error(_("pipeline {name} failed: {error}").format(name=st.name,
                                                                        error=st.error))
        ok = _push_alerts(alert or [], analysis, hold, min_severity, pol.sources_in("zh-CN"))
        if ok and heartbeat is not None and not analysis.failed:
            write_heartbeat(heartbeat)
        return ok and not analysis.failed

    if interval is None:
        if not run_once():
            raise typer.Exit(ExitStatus.ERROR)
        return

    def scheduled() -> None:
        try:
            run_once()
        except (UserError, StoreError, ConfigError) as exc:  # one line; the next run follows
            print_error(exc)

    run_until_signalled(lambda stop: run_every(interval.total_seconds(), scheduled, stop,
                                               name="analyze"))


def _push_alerts(urls: list[str], analysis: Analysis, hold: timedelta,
                 min_severity: Severity, sources: dict[str, str]) -> bool:
    """Push findings to each Alertmanager; one that fails does not stop the others."""
    if not urls:
        return True
    from computewatch.alerts.push import PushError, push_analysis
    from computewatch.finding_text import SEVERITY_NAMES, word
    from computewatch.redact import redact_url

    ok = True
    for url in urls:
        try:
            res = push_analysis(url, analysis, hold=hold, min_severity=min_severity,
                                sources=sources)
        except PushError as exc:
            print_error(exc)
            ok = False
            continue
        err_console().print(
            _("alerts: {firing} firing, {resolved} resolved, {skipped} findings not pushed "
              "(below {severity} or not current) at {url}").format(
                firing=res.firing, resolved=res.resolved, skipped=res.skipped,
                severity=word(SEVERITY_NAMES, int(min_severity)), url=redact_url(res.url)),
            markup=False, highlight=False)
    return ok
