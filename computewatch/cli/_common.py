"""What every command shares: the user-error type, the common options, loading the topology
and policy, reading durations, times and periods, and opening a store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from computewatch.i18n import _

if TYPE_CHECKING:
    from computewatch.findings import Period
    from computewatch.policy import Policy
    from computewatch.render import OutputFormat
    from computewatch.store import Store
    from computewatch.topology import Topology

__all__ = ["DEFAULT_STORE", "CompatOpt", "ConfigOpt", "FormatOpt", "Opening", "PolicyOpt",
           "SimulateOpt", "StoreOpt", "TopologyOpt", "UserError", "err_console", "load_places",
           "open_existing", "output_format", "parse_duration", "parse_time", "period_of",
           "print_error", "spinner"]

DEFAULT_STORE = "var/demo.duckdb"
"""The demo's store, a plain path (a DuckDB file) relative to the working directory."""

StoreOpt = Annotated[str, typer.Option(
    "--store", help="Store: a DuckDB file path (var/x.duckdb, /abs/x.duckdb) or a URL "
    "(duckdb:///rel.duckdb, duckdb:////abs.duckdb, victoriametrics://host:8428, ...).")]
TopologyOpt = Annotated[Path | None, typer.Option(
    "--topology", help="Topology YAML (default: the shipped national topology).")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="Policy YAML (default: the shipped policy).")]
FormatOpt = Annotated[str, typer.Option("--format", help="table | json | csv")]
SimulateOpt = Annotated[str | None, typer.Option(
    "--simulate", help="Replace the drivers with the simulator's fake NVML and npu-smi: "
    "bare --simulate is a node with 8 GPUs and 8 NPUs, --simulate=NODE a node of the "
    "simulated fleet (e.g. bj-ai-n0003).")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Node config YAML (default: this host, every collector enabled).")]
CompatOpt = Annotated[str | None, typer.Option(
    "--compat", help="Also expose compatible names: dcgm, npu-exporter (comma-separated).")]


class UserError(Exception):
    """An error whose message is the whole story: printed on one line, exit code 2."""


def err_console() -> Console:
    return Console(stderr=True)


class _Quiet:
    """`spinner`'s stand-in: takes a status's updates and shows nothing."""

    def update(self, *_args: object, **_kwargs: object) -> None:
        return None


def spinner(console: Console, text: str) -> AbstractContextManager[Any]:
    """``console.status(text)``, where rich shows one (a terminal, Jupyter); elsewhere a
    stand-in, since rich's transient status shows nothing there: its Live display, spinner
    and refresh thread are then neither imported nor started (a CSV report under a script)."""
    if console.is_terminal or console.is_jupyter:
        return console.status(text)
    return nullcontext(_Quiet())


def print_error(exc: BaseException | str) -> None:
    """One red ``error:`` line on stderr; the message is text, never markup, and its
    credentials and configured secrets are hidden (`computewatch.redact`)."""
    from computewatch.redact import redact

    console = err_console()
    console.print("[red]" + _("error:") + "[/red] ", end="", markup=True, highlight=False)
    console.print(redact(exc), markup=False, highlight=False, soft_wrap=True)


def load_places(topology: Path | None, policy: Path | None) -> tuple[Topology, Policy]:
    """The topology and the policy checked against it (shipped files when not given); the
    topology's latency tiers follow the policy's distances."""
    from computewatch.policy import load_policy
    from computewatch.topology import load_topology

    topo = load_topology(topology)
    pol = load_policy(policy, topology=topo)
    return pol.tiered(topo), pol


def parse_duration(text: str, option: str = "duration", minimum: float = 0.001) -> timedelta:
    """A duration option (``--since 7d``); at least ``minimum`` seconds, at most 100 years."""
    from computewatch.durations import parse_duration as seconds

    try:
        return timedelta(seconds=seconds(text, minimum=minimum))
    except ValueError as exc:
        raise UserError(_("bad {option}: {error}").format(option=option, error=exc)) from None


def parse_time(text: str, option: str = "time") -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise) within the times stores keep."""
    from computewatch.samples import EARLIEST_TIME, LATEST_TIME

    try:
        t = datetime.fromisoformat(text)
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        inside = EARLIEST_TIME <= t <= LATEST_TIME
    except (ValueError, OverflowError):
        raise UserError(_("bad {option} {text}: write ISO 8601, e.g. 2026-10-01T00:00Z").format(
            option=option, text=repr(text))) from None
    if not inside:
        raise UserError(_("bad {option} {text}: outside {first} to {last}, the times a store "
                          "keeps").format(option=option, text=repr(text),
                                          first=f"{EARLIEST_TIME:%Y-%m-%d}",
                                          last=f"{LATEST_TIME:%Y-%m-%d}"))
    return t


def output_format(text: str) -> OutputFormat:
    from computewatch.render import OutputFormat

    try:
        return OutputFormat(text)
    except ValueError:
        raise UserError(_("bad --format {text}: one of table, json, csv").format(
            text=repr(text))) from None


def open_existing(store: str, *, read_only: bool = False) -> Store:
    """Open a store a read-only command reads: a missing DuckDB file is an error, not a new
    empty store. ``read_only``: a DuckDB file that other readers can share (two reports at
    once), unless its rollups must be brought up to date first (`open_store`)."""
    from computewatch.store import open_store

    return open_store(store, create=False, read_only=read_only)


class Opening:
    """`open_existing` of ``store`` (read-only) begun in a thread at once, for a command that
    opens it after its own imports and its topology's loading: DuckDB's import, the file's
    opening and its catalogue's reading, much of it outside the GIL, overlap them (a month's
    report: 0.12 s of open_existing, about 0.05 s of it left). `result` is the store, or
    raises what opening raised, when the command asks: its errors come where and as they
    came before; where the command fails before that (`guard`), the store opened is closed
    and its error dropped."""

    def __init__(self, store: str) -> None:
        self._store: Store | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, args=(store,),
                                        name="computewatch-open", daemon=True)
        self._thread.start()

    def _open(self, store: str) -> None:
        try:
            self._store = open_existing(store, read_only=True)
        except BaseException as exc:  # raised in the command's thread by `result`
            self._error = exc

    def result(self) -> Store:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._store is not None
        return self._store

    @contextmanager
    def guard(self) -> Iterator[None]:
        """The command's steps before `result`: an exception in them abandons the opening
        (the store opened is closed, its error dropped) and goes on as it was."""
        try:
            yield
        except BaseException:
            self._thread.join()
            if self._store is not None:
                self._store.close()
            raise


def period_of(st: Store, since: str, until: str | None) -> Period:
    """``--since`` back from ``--until``, or from the store's last accelerator sample."""
    from computewatch.findings import Period
    from computewatch.samples import EARLIEST_TIME

    if until is None:
        bounds = st.time_bounds("accelerator")
        if bounds is None:
            raise UserError(_("{url}: holds no accelerator samples; run `computewatch demo` or "
                              "an agent first").format(url=st.url))
        end = bounds[1] + timedelta(minutes=1)
    else:
        end = parse_time(until, "--until")
    start = end - parse_duration(since, "--since")
    if start < EARLIEST_TIME:
        raise UserError(_("--since {since} before {end} starts before {first}, the earliest "
                          "time a store keeps").format(since=since, end=f"{end:%Y-%m-%d}",
                                                       first=f"{EARLIEST_TIME:%Y-%m-%d}"))
    return _in_whole_rollups(st, Period(start, end))


_MEASUREMENTS = ("accelerator", "facility_power", "link_latency")


def _in_whole_rollups(st: Store, period: Period) -> Period:
    """``period`` with an end that falls inside history kept as rollups only moved inward
    to the rollups' grain (an hour, or a day where only daily rollups are kept): the store
    answers there in whole windows, and `--since 30d` back from the last sample (10:37)
    would start at 10:37 thirty days ago. Said on stderr; raw periods are read as asked."""
    from computewatch.findings import Period
    from computewatch.store import resolution

    def grain(t: datetime) -> timedelta:
        return max(resolution(st, m, t) for m in _MEASUREMENTS)

    def floor(t: datetime, g: timedelta) -> datetime:
        return t - (t - datetime(1970, 1, 1, tzinfo=UTC)) % g

    start, end = period.start, period.end
    if (g := grain(start)) and start != floor(start, g):
        start = floor(start, g) + g
    if (g := grain(end - timedelta(microseconds=1))) and end != floor(end, g):
        end = floor(end, g)
    if (start, end) == (period.start, period.end) or end <= start:
        return period
    err_console().print(_("read {start} to {end} UTC: the store keeps that history as "
                          "rollups, answered in whole hours or days").format(
                              start=f"{start:%Y-%m-%d %H:%M}", end=f"{end:%Y-%m-%d %H:%M}"))
    return Period(start, end)
