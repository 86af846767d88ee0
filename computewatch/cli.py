"""The `computewatch` command: parses arguments, calls the package, prints; nothing more.

Errors a user can fix (a bad config file, an unknown store URL) print one line naming the
file, field and value and exit with ExitStatus.BAD_INPUT, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from computewatch.config import ConfigError
from computewatch.status import ExitStatus

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Telemetry and observability for national compute networks.")
topology_app = typer.Typer(no_args_is_help=True, help="Inspect and check topology files.")
app.add_typer(topology_app, name="topology")

DEFAULT_DEMO_STORE = "duckdb:///var/demo.duckdb"

StoreOpt = Annotated[str, typer.Option("--store", help="Store URL, e.g. duckdb:///path.duckdb")]
TopologyOpt = Annotated[Path | None, typer.Option(
    "--topology", help="Topology YAML (default: the shipped national topology).")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Policy YAML (default: the shipped policy).")]


class _UserError(Exception):
    """An error whose message is the whole story: printed on one line, exit code 2."""


def _err() -> Console:
    return Console(stderr=True)


def _load(topology: Path | None, policy: Path | None):
    from computewatch.policy import load_policy
    from computewatch.topology import load_topology

    topo = load_topology(topology)
    return topo, load_policy(policy, topology=topo)


def _parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise _UserError(f"bad duration {text!r}: write e.g. 90s, 15m, 24h, 7d") from None


@app.command()
def demo(
    sites: Annotated[int | None, typer.Option(help="Sites in the fleet (default: all "
                                              "in the topology; more are simulated).")] = None,
    accelerators: Annotated[int | None, typer.Option(
        help="Accelerators in the fleet (default: the topology's inventory).")] = None,
    hours: Annotated[int, typer.Option(help="Hours of history to backfill.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed, the same fleet.")] = 0,
    store: StoreOpt = DEFAULT_DEMO_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    truth: Annotated[Path, typer.Option(help="Where to save the simulator's ground truth.")]
    = Path("var/demo-truth.json"),
    output: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
    replace: Annotated[bool | None, typer.Option(
        "--replace/--no-replace", help="Empty the store before the backfill. Default: yes for "
        "the demo's own store, and a refusal for any other store that already holds data.")]
    = None,
) -> None:
    """Simulate the national fleet, backfill the store, and print the national summary."""
    from computewatch.demo import run_demo
    from computewatch.render import render_summary
    from computewatch.store import open_store

    fmt = _format(output)
    topo, pol = _load(topology, policy)
    st = open_store(store)
    console = _err()
    try:
        if replace is None:
            replace = store == DEFAULT_DEMO_STORE or st.time_bounds("accelerator") is None
        if not replace:
            raise _UserError(f"{store} already holds data and the demo would delete all of it; "
                             f"pass --replace to allow that, or choose another --store")
        with Progress(TextColumn("[bold]backfill"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("hours · {task.fields[samples]:,} samples"),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            task = bar.add_task("backfill", total=hours, samples=0)

            def progress(done: int, total: int, samples: int) -> None:
                bar.update(task, completed=done, samples=samples)

            result = run_demo(st, topo, pol, sites=sites, accelerators=accelerators,
                              hours=hours, seed=seed, truth_path=truth, progress=progress)
    finally:
        st.close()
    total = sum(result.samples.values())
    console.print(
        f"{result.sites} sites, {result.accelerators:,} accelerators, {hours} h at 1-minute "
        f"resolution: {total:,} rows ({result.samples.get('accelerator', 0):,} accelerator "
        f"samples) written to {store} in {result.seconds:.1f} s; {result.rejected} values "
        f"rejected. Ground truth: {truth}")
    render_summary(result.summary, fmt, sys.stdout)


@app.command()
def summary(
    store: StoreOpt = DEFAULT_DEMO_STORE,
    since: Annotated[str, typer.Option(help="Period length back from --until, e.g. 24h.")]
    = "24h",
    until: Annotated[str | None, typer.Option(help="End of the period (ISO 8601, UTC); "
                                              "default: the last sample in the store.")] = None,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
) -> None:
    """Print the national summary of what a store holds."""
    from computewatch.render import render_summary
    from computewatch.store import open_store
    from computewatch.summary import national_summary

    fmt = _format(output)
    topo, pol = _load(topology, policy)
    st = open_store(store)
    try:
        if until is None:
            bounds = st.time_bounds("accelerator")
            if bounds is None:
                raise _UserError(f"{store}: holds no accelerator samples; run `computewatch "
                                 f"demo` or an agent first")
            end = bounds[1] + timedelta(minutes=1)
        else:
            end = _parse_time(until)
        result = national_summary(st, topo, pol, end - _parse_duration(since), end)
    finally:
        st.close()
    render_summary(result, fmt, sys.stdout)


@topology_app.command("check")
def topology_check(
    path: Annotated[Path | None, typer.Argument(help="Topology YAML (default: shipped).")]
    = None,
    policy: PolicyOpt = None,
) -> None:
    """Validate a topology (and a policy against it); print what it holds."""
    topo, _ = _load(path, policy)
    links = topo.links("full_mesh")
    tiers = {t: sum(1 for lk in links if lk.tier == t) for t in {lk.tier for lk in links}}
    typer.echo(f"{path or 'shipped topology'}: {len(topo.hubs)} hubs, {len(topo.clusters)} "
               f"clusters, {len(topo.sites)} sites, {topo.accelerator_count:,} accelerators, "
               f"{len(links)} site pairs ("
               + ", ".join(f"{n} {t}" for t, n in sorted(tiers.items())) + ")")


def _format(text: str):
    from computewatch.render import OutputFormat

    try:
        return OutputFormat(text)
    except ValueError:
        raise _UserError(f"bad --format {text!r}: one of table, json, csv") from None


def _parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise _UserError(f"bad time {text!r}: write ISO 8601, e.g. 2026-10-01T00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def main() -> None:
    """Console-script entry point: maps user errors to one line and exit code 2."""
    from computewatch.store import StoreError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()  # usage errors are click's: it prints them and exits with code 2
    except (ConfigError, _UserError, StoreError) as exc:
        _err().print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(ExitStatus.BAD_INPUT)
