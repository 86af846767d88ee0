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
dashboards_app = typer.Typer(no_args_is_help=True,
                             help="Build the Grafana dashboards and upload them.")
app.add_typer(dashboards_app, name="dashboards")

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


def _parse_duration(text: str, option: str = "duration") -> timedelta:
    from computewatch.durations import parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise _UserError(f"bad {option}: {exc}") from None


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
    analyze: Annotated[bool, typer.Option(
        "--analyze/--no-analyze", help="Run the analytics pipelines after the backfill.")]
    = True,
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
                              hours=hours, seed=seed, truth_path=truth, progress=progress,
                              analyze=analyze)
    finally:
        st.close()
    total = sum(result.samples.values())
    console.print(
        f"{result.sites} sites, {result.accelerators:,} accelerators, {hours} h at 1-minute "
        f"resolution: {total:,} rows ({result.samples.get('accelerator', 0):,} accelerator "
        f"samples) written to {store} in {result.seconds:.1f} s; {result.rejected} values "
        f"rejected. Ground truth: {truth}")
    render_summary(result.summary, fmt, sys.stdout)
    if result.findings is not None and fmt.value == "table":
        from computewatch.render import render_findings

        df = result.findings
        console.print(f"analytics: {len(df)} findings in {result.analysis_seconds:.1f} s, "
                      f"written to the store as `finding`")
        for name, group in df.groupby("pipeline", sort=False):
            render_findings(group, fmt, sys.stdout, limit=5, title=f"Top {name} findings")


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
        period = _period(st, since, until)
        result = national_summary(st, topo, pol, period.start, period.end)
    finally:
        st.close()
    render_summary(result, fmt, sys.stdout)


SimulateOpt = Annotated[str | None, typer.Option(
    "--simulate", help="Replace the drivers with the simulator's fake NVML and npu-smi: "
    "bare --simulate is a node with 8 GPUs and 8 NPUs, --simulate=NODE a node of the "
    "simulated fleet (e.g. bj-ai-n0003).")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Node config YAML (default: this host, every collector enabled).")]
CompatOpt = Annotated[str | None, typer.Option(
    "--compat", help="Also expose compatible names: dcgm, npu-exporter (comma-separated).")]


def _simulated(simulate: str | None, seed: int):
    if simulate is None:
        return None
    from computewatch.sim.node import simulated_node

    try:
        return simulated_node(simulate, seed=seed)
    except KeyError as exc:
        raise _UserError(f"--simulate={simulate}: {exc.args[0]}") from None


def _compat(text: str | None) -> list[str] | None:
    if text is None:
        return None
    from computewatch.collectors.export.prometheus import COMPAT_CHOICES

    names = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in names if c not in COMPAT_CHOICES]
    if bad:
        raise _UserError(f"bad --compat {bad[0]!r}: choose from {', '.join(COMPAT_CHOICES)}")
    return names


@app.command()
def collect(
    once: Annotated[bool, typer.Option("--once", help="One snapshot, then exit (the only "
                                       "mode; kept for symmetry with the agent).")] = True,
    output: Annotated[str, typer.Option("--format",
                                        help="prometheus | influx | json | table")] = "table",
    config: ConfigOpt = None,
    simulate: SimulateOpt = None,
    compat: CompatOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated fleet.")] = 0,
) -> None:
    """Print one snapshot of every enabled collector and exit."""
    from computewatch.collectors.config import load_node_config
    from computewatch.collectors.export.formats import SampleFormat, format_samples
    from computewatch.collectors.setup import build_agent

    try:
        fmt = SampleFormat(output)
    except ValueError:
        raise _UserError(f"bad --format {output!r}: one of prometheus, influx, json, "
                         f"table") from None
    cfg = load_node_config(config)
    agent = build_agent(cfg, simulate=_simulated(simulate, seed), exporters=[])
    try:
        samples = agent.run_once()
    finally:
        agent.close()
    sys.stdout.write(format_samples(samples, fmt, _compat(compat) or cfg.exports.prometheus.compat))


@app.command()
def agent(
    config: ConfigOpt = None,
    listen: Annotated[str | None, typer.Option(
        help="Serve /metrics here (host:port; default from the config, 127.0.0.1:9400).")]
    = None,
    compat: CompatOpt = None,
    simulate: SimulateOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated fleet.")] = 0,
    duration: Annotated[str | None, typer.Option(
        help="Stop after this long (e.g. 10m); default: run until interrupted.")] = None,
) -> None:
    """Run the node agent: collect on schedule and export (Prometheus, OTLP, store)."""
    import signal
    import threading

    from computewatch.collectors.config import load_node_config
    from computewatch.collectors.setup import build_agent, build_exporters

    cfg = load_node_config(config)
    node = _simulated(simulate, seed)
    labels = node.labels if node else cfg.labels
    try:
        exporters = build_exporters(cfg, labels=labels, listen=listen, compat=_compat(compat))
    except (ValueError, OSError) as exc:
        raise _UserError(f"cannot start exporters: {exc}") from None
    runner = build_agent(cfg, simulate=node, exporters=exporters)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if duration:
        threading.Timer(_parse_duration(duration, "--duration").total_seconds(), stop.set).start()
    where = ", ".join(e.name + (f" on :{e.port}" if hasattr(e, "port") else "")
                      for e in exporters) or "no exporter"
    _err().print(f"computewatch agent on {labels['node']}: "
                 f"{', '.join(runner.collector_names)} -> {where}")
    try:
        runner.run(stop)
    finally:
        runner.close()


@app.command()
def responder(
    listen: Annotated[str, typer.Option(help="host:port to answer UDP probes on.")]
    = "0.0.0.0:9410",
    delay: Annotated[str | None, typer.Option(
        help="Hold each reply this long (testing only, e.g. 3ms).")] = None,
    drop: Annotated[float, typer.Option(help="Share of probes to drop (testing only).")] = 0.0,
) -> None:
    """Answer other sites' UDP latency probes (run one per site)."""
    import signal
    import threading

    from computewatch.collectors.latency import serve_responder

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise _UserError(f"--listen {listen!r}: expected host:port, e.g. 0.0.0.0:9410")
    if not 0.0 <= drop < 1.0:
        raise _UserError(f"--drop {drop}: must be in [0, 1)")
    delay_s = _parse_duration(delay, "--delay").total_seconds() if delay else 0.0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve_responder(host.strip("[]"), int(port), delay_s, drop, stop,
                        ready=lambda addr: _err().print(
                            f"computewatch responder on udp {addr[0]}:{addr[1]}"))
    except OSError as exc:
        raise _UserError(f"cannot listen on udp {listen}: {exc}") from None


@app.command()
def analyze(
    since: Annotated[str, typer.Option(help="Period length back from --until, e.g. 7d.")]
    = "7d",
    until: Annotated[str | None, typer.Option(help="End of the period (ISO 8601, UTC); "
                                              "default: the last sample in the store.")] = None,
    only: Annotated[str | None, typer.Option(
        help="Comma-separated pipelines: underuse, latency, pue, anomaly, surplus.")] = None,
    store: StoreOpt = DEFAULT_DEMO_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
    limit: Annotated[int, typer.Option(help="Rows in the table (json/csv get all).")] = 40,
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
    from computewatch.render import render_findings
    from computewatch.store import StoreError, open_store

    fmt = _format(output)
    topo, pol = _load(topology, policy)
    names = [o.strip() for o in only.split(",")] if only else None
    bad = [n for n in names or [] if n not in PIPELINES]
    if bad:
        raise _UserError(f"unknown pipeline {bad[0]!r} (choose from {', '.join(PIPELINES)})")
    interval = _parse_duration(every, "--every") if every else None
    hold = (_parse_duration(alert_hold, "--alert-hold") if alert_hold
            else 3 * interval if interval else timedelta(hours=1))
    try:
        min_severity = Severity[alert_severity.upper()]
    except KeyError:
        raise _UserError(f"bad --alert-severity {alert_severity!r}: one of info, warning, "
                         f"critical") from None

    def run_once() -> bool:
        st = open_store(store)
        try:
            period = _period(st, since, until)
            try:
                analysis = run_pipelines(st, period, pol, topo, only=names)
            except ValueError as exc:
                raise _UserError(str(exc)) from None
        finally:
            st.close()
        render_findings(analysis.frame(), fmt, sys.stdout,
                        limit=limit if fmt.value == "table" else None,
                        title=f"Findings {period.start:%Y-%m-%d %H:%M} – "
                              f"{period.end:%Y-%m-%d %H:%M}")
        ok = _push_alerts(alert or [], analysis, hold, min_severity)
        if ok and heartbeat is not None and not analysis.failed:
            from computewatch.schedule import write_heartbeat

            write_heartbeat(heartbeat)
        return ok

    if interval is None:
        if not run_once():
            raise typer.Exit(ExitStatus.ERROR)
        return

    import signal
    import threading

    from computewatch.schedule import run_every

    def scheduled() -> None:
        try:
            run_once()
        except (_UserError, StoreError, ConfigError) as exc:  # one line; the next run follows
            _err().print(f"[red]error:[/red] {exc}", markup=True, highlight=False)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_every(interval.total_seconds(), scheduled, stop, name="analyze")


def _push_alerts(urls: list[str], analysis, hold: timedelta, min_severity) -> bool:
    """Push findings to each Alertmanager; one that fails does not stop the others."""
    if not urls:
        return True
    from computewatch.alerts.push import PushError, push_analysis

    ok = True
    for url in urls:
        try:
            res = push_analysis(url, analysis, hold=hold, min_severity=min_severity)
        except PushError as exc:
            _err().print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            ok = False
            continue
        _err().print(f"alerts: {res.firing} firing, {res.resolved} resolved, {res.skipped} "
                     f"findings not pushed (below {min_severity.name.lower()} or not current) "
                     f"at {res.url}", highlight=False)
    return ok


@app.command("alert-bridge")
def alert_bridge(
    config: Annotated[Path, typer.Option(
        "--config", help="Bridge YAML (see examples/alert-bridge.yaml).")],
    listen: Annotated[str | None, typer.Option(
        help="host:port to serve on (default from the config, 127.0.0.1:9095).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Validate the config and read its secrets, then exit.")] = False,
) -> None:
    """Receive Alertmanager webhooks and deliver them to DingTalk, WeCom, Feishu, Slack and
    signed webhooks."""
    import signal
    import threading

    from computewatch.alerts.bridge import open_bridge

    bridge = open_bridge(config, listen)
    routes = "; ".join(f"/alertmanager/{r} -> {', '.join(t)}"
                       for r, t in bridge.config.receivers.items())
    if check:
        typer.echo(f"{config}: {len(bridge.config.targets)} targets, "
                   f"{len(bridge.config.receivers)} receivers: {routes}")
        return
    logging.getLogger("computewatch.alerts.bridge").setLevel(logging.INFO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        bridge.start()
    except OSError as exc:
        raise _UserError(f"cannot listen on {listen or bridge.config.listen}: {exc}") from None
    _err().print(f"computewatch alert-bridge on {bridge.url}: {routes}", highlight=False)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        bridge.stop()


@app.command()
def surplus(
    near: Annotated[str, typer.Option(help="Demand city, e.g. Shanghai.")],
    within: Annotated[str, typer.Option(help="Latency circle as RTT, e.g. 5ms.")] = "5ms",
    ecosystem: Annotated[str | None, typer.Option(help="cuda or cann.")] = None,
    model: Annotated[str | None, typer.Option(help="Accelerator model, e.g. 'Ascend 910B'.")]
    = None,
    since: Annotated[str, typer.Option(help="Period for idle accelerator-hours.")] = "24h",
    until: Annotated[str | None, typer.Option(help="End of the period (ISO 8601, UTC).")]
    = None,
    store: StoreOpt = DEFAULT_DEMO_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
) -> None:
    """Idle accelerators within a latency circle of a demand city."""
    from computewatch.pipelines.surplus import surplus as find_surplus
    from computewatch.store import open_store

    fmt = _format(output)
    topo, pol = _load(topology, policy)
    within_s = _parse_duration(within, "--within").total_seconds()
    st = open_store(store)
    try:
        period = _period(st, since, until)
        try:
            df = find_surplus(st, period, pol, topo, near=near, within_s=within_s,
                              ecosystem=ecosystem, model=model)
        except ValueError as exc:
            raise _UserError(str(exc)) from None
    finally:
        st.close()
    if fmt.value == "json":
        sys.stdout.write(df.to_json(orient="records", force_ascii=False, indent=1) + "\n")
    elif fmt.value == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        from rich.table import Table

        table = Table(title=f"Idle capacity within {within} of {near}", title_justify="left")
        for col in df.columns:
            table.add_column(str(col))
        for row in df.itertuples(index=False):
            table.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row])
        Console(width=None if sys.stdout.isatty() else 160).print(table)


REPORT_FORMATS = ("html", "pdf", "csv")


@app.command()
def report(
    period: Annotated[str | None, typer.Option(
        help="A month in China time (2026-10), a year, a day (2026-10-05), a range "
             "(2026-10-01/2026-10-07) or a duration ending at the last sample (24h); "
             "default: the month of the last sample.")] = None,
    hub: Annotated[str | None, typer.Option(help="Only this hub and its sites, e.g. jjj.")]
    = None,
    store: StoreOpt = DEFAULT_DEMO_STORE,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
    output: Annotated[str, typer.Option("--format", help="html | pdf | csv")] = "html",
    out: Annotated[str | None, typer.Option(
        "--out", help="File to write, '-' for stdout (html, csv); default: "
        "report-<period>[-<hub>].<format> in the current directory.")] = None,
    definition: Annotated[str, typer.Option(
        help="Utilization definition: time_weighted | busy_fraction.")] = "time_weighted",
) -> None:
    """The regulator report: utilization, PUE and latency tiers per site and hub, data
    completeness, findings and the methodology with every threshold's source."""
    import re
    from zoneinfo import ZoneInfo

    from computewatch.pipelines import run_pipelines
    from computewatch.pue import CHINA_TZ
    from computewatch.reports import (
        SHIPPED_POLICY,
        ChromiumMissingError,
        PdfError,
        build_report,
        check_scope,
        html_to_pdf,
        parse_period,
        render_csv,
        render_html,
    )
    from computewatch.store import open_store

    fmt = output.lower()
    if fmt not in REPORT_FORMATS:
        raise _UserError(f"bad --format {output!r}: one of {', '.join(REPORT_FORMATS)}")
    if out == "-" and fmt == "pdf":
        raise _UserError("--format pdf cannot go to stdout; name a file with --out")
    topo, pol = _load(topology, policy)
    st = open_store(store)
    console = _err()
    try:
        bounds = st.time_bounds("accelerator")
        if period is None:
            if bounds is None:
                raise _UserError(f"{store}: holds no accelerator samples; run `computewatch "
                                 f"demo` or an agent first, or pass --period")
            period = f"{bounds[1].astimezone(ZoneInfo(CHINA_TZ)):%Y-%m}"
        try:
            rp = parse_period(period, last_sample_end=bounds[1] + timedelta(minutes=1)
                              if bounds else None)
            check_scope(topo, hub, definition)
            with console.status("report") as status:
                analysis = run_pipelines(
                    st, rp.period, pol, topo, write=False,
                    progress=lambda name: status.update(f"report: findings: {name}"))
                result = build_report(st, topo, pol, rp, analysis, hub=hub,
                                      definition=definition,
                                      policy_name=str(policy) if policy else SHIPPED_POLICY,
                                      progress=lambda step: status.update(f"report: {step}"))
        except ValueError as exc:  # a bad period, hub or definition; an empty period
            raise _UserError(str(exc)) from None
    finally:
        st.close()
    slug = re.sub(r"[^0-9A-Za-z]+", "-", rp.label).strip("-") + (f"-{hub}" if hub else "")
    target = Path(out or f"report-{slug}.{fmt}")
    if fmt == "csv":
        if out == "-":
            render_csv(result, sys.stdout)
        else:
            with target.open("w", encoding="utf-8", newline="") as f:
                render_csv(result, f)
    elif out == "-":
        sys.stdout.write(render_html(result))
    elif fmt == "html":
        target.write_text(render_html(result), encoding="utf-8")
    else:
        try:
            html_to_pdf(render_html(result), target)
        except ChromiumMissingError as exc:
            raise _UserError(str(exc)) from None
        except PdfError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(ExitStatus.ERROR) from None
    sites = result.sites
    console.print(
        f"report {rp.label} ({hub or 'national'}): {len(sites)} sites, "
        f"{(sites.utilization_verdict == 'fail').sum()} below their utilization minimum, "
        f"{(sites.pue_verdict == 'fail').sum()} over their PUE target, "
        f"{(~sites.utilization_verdict.isin(['pass', 'fail'])).sum()} not scored; "
        f"{result.coverage['period_completeness']:.1%} of the period holds data; "
        f"{len(result.findings)} findings" + ("" if out == "-" else f" -> {target}"),
        highlight=False, soft_wrap=True)


def _period(st, since: str, until: str | None):
    from computewatch.findings import Period

    if until is None:
        bounds = st.time_bounds("accelerator")
        if bounds is None:
            raise _UserError(f"{st.url}: holds no accelerator samples; run `computewatch "
                             f"demo` or an agent first")
        end = bounds[1] + timedelta(minutes=1)
    else:
        end = _parse_time(until)
    return Period(end - _parse_duration(since, "--since"), end)


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


@dashboards_app.command("build")
def dashboards_build(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory to write into (default: the dashboards/ directory itself): "
                      "json/*.json, the Geomap gazetteer and the recording rules.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 1 if the files under --out are stale.")] = False,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Regenerate the Grafana dashboards' JSON (grafana-foundation-sdk) and their companions."""
    from computewatch.dashboards import DASHBOARDS_DIR, build_files, stale_files, write_files

    topo, pol = _load(topology, policy)
    files = build_files(topo, pol)
    root = out or DASHBOARDS_DIR
    if check:
        stale = stale_files(files, root)
        for rel in stale:
            typer.echo(f"stale: {root / rel}")
        if stale:
            typer.echo("run `computewatch dashboards build` and commit the result", err=True)
            raise typer.Exit(ExitStatus.ERROR)
        typer.echo(f"{len(files)} files under {root} are up to date")
        return
    for path in write_files(files, root):
        typer.echo(f"wrote {path}")


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option("--url", envvar="GRAFANA_URL",
                                     help="Grafana base URL, e.g. http://127.0.0.1:3000")],
    token: Annotated[str | None, typer.Option(
        "--token", envvar="GRAFANA_TOKEN", show_envvar=True,
        help="Service-account token (Editor). Prefer --token-file or the environment: a "
             "command line is visible to other users.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding the token (e.g. a Docker secret).")] = None,
    folder: Annotated[str, typer.Option(help="Grafana folder to put the dashboards in.")]
    = "computewatch",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each Grafana call.")]
    = 10.0,
    topology: TopologyOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Upload the dashboards into a Grafana folder; idempotent by dashboard uid."""
    from computewatch.dashboards import (
        GrafanaAuthError,
        PushError,
        build_dashboards,
        push_dashboards,
    )

    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _UserError(f"--token-file {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise _UserError(f"--token-file {token_file}: the file is empty")
    topo, pol = _load(topology, policy)
    try:
        fuid, results = push_dashboards(build_dashboards(topo, pol), url, token or "",
                                        folder=folder, timeout_s=timeout)
    except GrafanaAuthError as exc:
        raise _UserError(str(exc)) from None
    except PushError as exc:
        _err().print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(ExitStatus.ERROR) from None
    for r in results:
        typer.echo(f"{r.action:9} {r.uid}  {r.title}  {url.rstrip('/')}{r.url}")
    typer.echo(f"{len(results)} dashboards in folder {folder!r} (uid {fuid})")


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


def _bare_simulate(argv: list[str]) -> list[str]:
    """``--simulate`` with no value means the mixed node (click has no optional values)."""
    from computewatch.sim.node import MIXED

    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--simulate" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = f"--simulate={MIXED}"
    return out


def main() -> None:
    """Console-script entry point: maps user errors to one line and exit code 2."""
    from computewatch.store import StoreError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.argv[1:] = _bare_simulate(sys.argv[1:])
    try:
        app()  # usage errors are click's: it prints them and exits with code 2
    except (ConfigError, _UserError, StoreError) as exc:
        _err().print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(ExitStatus.BAD_INPUT)
