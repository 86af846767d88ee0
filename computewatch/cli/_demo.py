"""`computewatch demo`: simulate the national fleet, backfill a store, summarize, analyze."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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
    output_format,
)
from computewatch.i18n import _

__all__ = ["MAX_ACCELERATORS", "MAX_HOURS", "MAX_SITES", "demo"]

MAX_ACCELERATORS = 1_000_000
"""The most accelerators the demo simulates: ten times the 100,000 of the pipeline benchmark
(144 M samples a day, 3 GB); beyond it a typo would exhaust memory instead of failing."""
MAX_SITES = 10_000
MAX_HOURS = 24 * 366


def _check_size(sites: int | None, accelerators: int | None, hours: int, fleet_size: int) -> None:
    """Refuse a fleet or a history the demo cannot hold, before anything is allocated."""
    for option, value, low, high in (("--sites", sites, 1, MAX_SITES),
                                     ("--accelerators", accelerators, 1, MAX_ACCELERATORS),
                                     ("--hours", hours, 1, MAX_HOURS)):
        if value is not None and not low <= value <= high:
            raise UserError(_("bad {option} {value}: must be from {low} to {high}").format(
                option=option, value=value, low=f"{low:,}", high=f"{high:,}"))
    if accelerators is None and fleet_size > MAX_ACCELERATORS:
        raise UserError(_("the topology holds {n} accelerators, more than the {most} the demo "
                          "simulates; pass --accelerators").format(
            n=f"{fleet_size:,}", most=f"{MAX_ACCELERATORS:,}"))


def demo(
    sites: Annotated[int | None, typer.Option(help="Sites in the fleet (default: all "
                                              "in the topology; more are simulated).")] = None,
    accelerators: Annotated[int | None, typer.Option(
        help="Accelerators in the fleet (default: the topology's inventory).")] = None,
    hours: Annotated[int, typer.Option(help="Hours of history to backfill.")] = 24,
    days: Annotated[int | None, typer.Option(
        help="Days of history (overrides --hours): all but the last --raw-hours are written "
             "as rollups from the simulator's per-hour model (hourly, or daily for a large "
             "fleet's year), the way a store keeps history past its raw retention; e.g. "
             "--days 365 for `report --period <year>`.")] = None,
    raw_hours: Annotated[int, typer.Option(
        help="With --days: the last hours kept as 1-minute samples.")] = 24,
    seed: Annotated[int, typer.Option(
        min=0, help="Random seed; the same seed, the same fleet.")] = 0,
    store: StoreOpt = DEFAULT_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    truth: Annotated[Path, typer.Option(help="Where to save the simulator's ground truth.")]
    = Path("var/demo-truth.json"),
    output: FormatOpt = "table",
    analyze: Annotated[bool, typer.Option(
        "--analyze/--no-analyze", help="Run the analytics pipelines after the backfill.")]
    = True,
    replace: Annotated[bool | None, typer.Option(
        "--replace/--no-replace", help="Empty the store before the backfill. Default: yes for "
        "the demo's own store, and a refusal for any other store that already holds data.")]
    = None,
) -> None:
    """Simulate the national fleet, backfill the store, and print the national summary."""
    from computewatch.cli._demo_run import run_demo
    from computewatch.finding_text import PIPELINE_NAMES, word
    from computewatch.render import render_findings, render_scores, render_summary
    from computewatch.store import open_store

    fmt = output_format(output)
    topo, pol = load_places(topology, policy)
    if days is not None:
        if not 1 <= days <= MAX_HOURS // 24:
            raise UserError(_("bad --days {value}: must be from 1 to {high}").format(
                value=days, high=MAX_HOURS // 24))
        if not 1 <= raw_hours <= 24 * days:
            raise UserError(_("bad --raw-hours {value}: must be from 1 to {high}").format(
                value=raw_hours, high=24 * days))
        if raw_hours % 24:
            raise UserError(_("bad --raw-hours {value}: must be whole days (24, 48, ...)").format(
                value=raw_hours))
        hours = 24 * days
    _check_size(sites, accelerators, hours, topo.accelerator_count)
    from rich.progress import (  # here, not at import: only the demo draws a bar
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    st = open_store(store)
    console = err_console()
    try:
        if replace is None:
            own = str(Path(DEFAULT_STORE).resolve())
            replace = st.url == own or st.time_bounds("accelerator") is None
        if not replace:
            raise UserError(_("{url} already holds data and the demo would delete all of "
                              "it; pass --replace to allow that, or choose another --store")
                            .format(url=st.url))
        with Progress(TextColumn("[bold]" + _("backfill")), BarColumn(), MofNCompleteColumn(),
                      TextColumn(_("hours · {samples} samples").format(
                          samples="{task.fields[samples]:,}")),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            task = bar.add_task("backfill", total=hours, samples=0)

            def progress(done: int, total: int, samples: int) -> None:
                bar.update(task, completed=done, samples=samples)

            result = run_demo(st, topo, pol, sites=sites, accelerators=accelerators,
                              hours=hours, seed=seed, truth_path=truth, progress=progress,
                              analyze=analyze, raw_hours=raw_hours if days else None)
    finally:
        st.close()
    if days:
        console.print(f"{days} days: {hours - raw_hours} h as rollups, the last {raw_hours} h "
                      f"at 1-minute resolution", markup=False, highlight=False, soft_wrap=True)

    total = sum(result.samples.values())
    console.print(_(
        "{sites} sites, {accelerators} accelerators, {hours} h at 1-minute resolution: {rows} "
        "rows ({samples} accelerator samples) written to {url} in {seconds} s; {rejected} "
        "values rejected. Ground truth: {truth}").format(
            sites=result.sites, accelerators=f"{result.accelerators:,}", hours=hours,
            rows=f"{total:,}", samples=f"{result.samples.get('accelerator', 0):,}", url=st.url,
            seconds=f"{result.seconds:.1f}", rejected=result.rejected, truth=truth),
        markup=False, highlight=False, soft_wrap=True)
    extra = {"scores": result.scores.to_dict()} if result.scores is not None else None
    render_summary(result.summary, fmt, sys.stdout, extra=extra, places=topo)
    if result.analysis is not None and fmt.value == "table":
        df = result.analysis.frame()
        console.print(_("analytics: {n} findings in {seconds} s, written to the store as "
                        "`finding`").format(n=len(df), seconds=f"{result.analysis_seconds:.1f}"),
                      markup=False)
        for name, group in df.groupby("pipeline", sort=False):
            render_findings(group, fmt, sys.stdout, limit=5, places=topo,
                            title=_("Top {pipeline} findings").format(
                                pipeline=word(PIPELINE_NAMES, name)))
        if result.scores is not None:
            render_scores(result.scores, sys.stdout)
