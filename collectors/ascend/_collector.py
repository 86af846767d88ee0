"""`AscendCollector`: the ``npu-smi`` table every cycle, the per-chip views on their own cadence.

Running the tool and reading its output are separate steps (Telegraf's nvidia_smi split): this
module decides what to run and when, and turns the ways a command fails into collector errors;
`_parse`, `_views`, `_hccn` and `_samples` read the output.

- **The table lands every cycle.** ``npu-smi info`` runs first, alone; the slower per-chip
  views (``-t usages``, ``common``, ``memory``, ``health``, ``volt``, ``ecc``; ``power`` where
  the table has none; once: ``board``, ``product``, ``ecc-enable``, ``-m``) and the network
  queries (``hccn_tool``, where installed) run every ``detail_every``-th cycle, one call per
  card (``-i NPU``; per chip with ``-c`` where npu-smi refuses the card form), at most
  ``detail_concurrency`` at a time and within ``detail_budget_s`` (never past the run's
  timeout): what does not fit runs next cycle. Their values are kept and sent with every
  cycle's table values until ``3 x detail_every`` cycles old.
- **Failures are counted, not fatal.** A view that fails or does not parse costs one
  ``agent_parse_errors_total{source}`` per output and is logged once per source; the chip keeps
  its table values. A run fails only when ``npu-smi info`` fails (down with its result code),
  or lists no chip (result code 5, no data). The counters, and the commands run per cycle and
  their wall times, are reported through `self_samples`, from the first cycle on.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time as _time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from computewatch.collectors import (
    CollectorError,
    DriverAbsent,
    NoData,
    ParseError,
    ResultCode,
    placement_labels,
)
from computewatch.collectors._base import DeviceLabels, LabelSets, as_read
from computewatch.collectors.ascend._calls import Call, CallQueue, Done, RunStats
from computewatch.collectors.ascend._hccn import HCCN_QUERIES, network_samples, parse_hccn
from computewatch.collectors.ascend._parse import (
    ChipMapping,
    ChipRow,
    ProcessRow,
    parse_info_table,
    parse_mapping,
    parse_processes,
)
from computewatch.collectors.ascend._run import Run, run_command
from computewatch.collectors.ascend._samples import (
    card_samples,
    chip_labels,
    chip_samples,
    info_sample,
    process_samples,
)
from computewatch.collectors.ascend._views import ViewBlocks, parse_view
from computewatch.samples import Sample

__all__ = ["DEFAULT_VIEWS", "HCCN_TOOL", "SLOW_VIEWS", "STATIC_VIEWS", "AscendCollector",
           "NpuSmiTimeout", "Run", "run_npu_smi"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

DEFAULT_VIEWS = ("usages", "common")
"""The per-chip views read every detail round (``power`` is added where the table has none):
what changes from one minute to the next (utilization kinds, clocks, the MCU's power)."""
SLOW_VIEWS = ("memory", "health", "volt", "ecc")
"""Views read every ``slow_every``-th detail round, with ``hccn_tool``: states that change
seldom (HBM temperature, error codes, voltage, ECC counts, network link)."""
_STATIC_VIEWS = ("board", "ecc-enable", "product")  # what does not change: read once
STATIC_VIEWS = (*_STATIC_VIEWS, "mapping")
"""Read once (retried for 3 rounds): the boards (serial numbers, VDie IDs), ECC switch,
product type, and the chip map (``npu-smi info -m``: names, logic and physical ids)."""
_STATIC_TRIES = 3  # rounds a static view is tried before it is taken as unsupported
HCCN_TOOL = "/usr/local/Ascend/driver/tools/hccn_tool"
"""Where the Ascend driver installs ``hccn_tool`` (npu-exporter looks there too)."""

run_npu_smi = run_command
"""Run npu-smi without a shell; a timeout kills it and its children (its process group)."""


class NpuSmiTimeout(CollectorError):
    """npu-smi did not answer within the command timeout (result code 3, not 4)."""

    code = ResultCode.TIMEOUT


class _Refused(CollectorError):
    """A command exited non-zero (unsupported view, bad id, device error)."""


@dataclass
class _Cached:
    blocks: ViewBlocks
    cycle: int


class AscendCollector:
    """Reads every Ascend chip of the node through ``npu-smi`` (and ``hccn_tool``).

    ``run`` is the device seam (default `run_npu_smi`); the simulator passes its fake
    ``npu-smi``, and ``hccn_run`` its fake ``hccn_tool``. ``detail`` adds the per-chip views
    for what the summary table lacks; see the module doc for their cadence and budget.
    """

    name = "ascend"

    def __init__(self, labels: Mapping[str, str], run: Run | None = None,
                 npu_smi: str = "npu-smi", timeout_s: float = 5.0, detail: bool = True, *,
                 detail_every: int = 4, detail_budget_s: float = 4.0,
                 detail_concurrency: int = 4, views: Sequence[str] = DEFAULT_VIEWS,
                 slow_views: Sequence[str] = SLOW_VIEWS, slow_every: int = 4,
                 run_timeout_s: float | None = None, hccn_tool: str | None = HCCN_TOOL,
                 hccn_run: Run | None = None,
                 hccn_queries: Sequence[str] = ("link", "net_health", "bandwidth"),
                 max_processes: int = 8, static_views: Sequence[str] = STATIC_VIEWS) -> None:
        if timeout_s <= 0:
            raise ValueError(f"ascend collector: timeout_s must be > 0, got {timeout_s!r}")
        if detail_every < 1:
            raise ValueError(f"ascend collector: detail_every must be >= 1, got {detail_every!r}")
        if unknown := set(hccn_queries) - set(HCCN_QUERIES):
            raise ValueError(f"ascend collector: unknown hccn_tool queries {sorted(unknown)} "
                             f"(known: {', '.join(HCCN_QUERIES)})")
        self._labels = placement_labels(labels)
        # The device id must be unique in the fleet; an agent without a node name uses the host's.
        self._labels.setdefault("node", socket.gethostname())
        self._run: Run = run or run_npu_smi
        self.npu_smi = npu_smi
        self.timeout_s = timeout_s
        self.detail = detail
        self.detail_every = detail_every
        self.detail_budget_s = detail_budget_s
        self.run_timeout_s = run_timeout_s
        if slow_every < 1:
            raise ValueError(f"ascend collector: slow_every must be >= 1, got {slow_every!r}")
        self.views = tuple(views)
        self.slow_views = tuple(v for v in slow_views if v not in self.views)
        self.slow_every = slow_every
        self._rounds = 0
        self.static_views = tuple(v for v in static_views if v != "mapping")
        self._read_mapping = "mapping" in static_views
        self.max_processes = max_processes
        self.hccn_queries = tuple(hccn_queries)
        self._hccn_run: Run | None = hccn_run
        self.hccn_tool = hccn_tool
        if hccn_run is None and hccn_tool:
            found = hccn_tool if os.path.isfile(hccn_tool) else shutil.which(hccn_tool)
            self.hccn_tool = found
            self._hccn_run = run_command if found else None
        self._queue = CallQueue(self._execute, detail_concurrency)
        self._pending: deque[Call] = deque()
        self._cycle = -1
        self._lock = threading.Lock()
        self._parse_errors: Counter[str] = Counter({"npu-smi info": 0})
        self._calls: Counter[str] = Counter()
        self._call_seconds: Counter[str] = Counter()
        self._last: RunStats | None = None
        self._logged: set[str] = set()
        self._views: dict[tuple[int, str], _Cached] = {}  # (npu, view) -> its last output
        self._chip_views: dict[tuple[int, int, str], _Cached] = {}  # per-chip (-c) outputs
        self._network: dict[int, dict[str, float]] = {}  # phy id -> hccn values
        self._network_cycle: dict[int, int] = {}
        self._form: dict[str, str] = {}  # view -> "card" | "chip", once known
        self._static_tries: Counter[tuple[int, str]] = Counter()
        self._round_tried: set[str] = set()  # views asked in the current round
        self._round_ok: set[str] = set()  # ... and those that answered at least once
        self._failed_rounds: Counter[str] = Counter()  # whole rounds without an answer
        self._seen = False  # npu-smi info has answered once
        self._version = 0  # bumped whenever a view's output is stored
        self._merged: dict[tuple[int, int], tuple[int, int, dict[str, str]]] = {}
        self._card_cache: dict[int, tuple[int, int, dict[str, str], dict[str, str]]] = {}
        self._mapping: list[ChipMapping] | None = None
        self._mapping_tries = 0
        self._device_labels: DeviceLabels = as_read
        self._sets = LabelSets()  # each chip's label tuples, kept across runs
        for view in (*self.views, *self.slow_views, "power", *self.static_views):
            self._parse_errors[f"npu-smi info -t {view}"] += 0
        if self.detail and self._read_mapping:
            self._parse_errors["npu-smi info -m"] += 0
        if self._hccn_run is not None:
            for q in self.hccn_queries:
                self._parse_errors[f"hccn_tool -{q}"] += 0

    # --- running a command: the one place where its failures become collector errors --------
    def _execute(self, argv: Sequence[str]) -> str:
        hccn = argv[0] == "hccn_tool"
        exe = (self.hccn_tool or "hccn_tool") if hccn else self.npu_smi
        full = [exe, *argv[1:]]
        cmd = shlex.join(full)
        run = self._hccn_run if hccn else self._run
        assert run is not None
        try:
            return run(full, self.timeout_s)
        except CollectorError:
            raise
        except FileNotFoundError:
            raise DriverAbsent(f"{os.path.basename(exe)} not found: {exe!r} is not on this "
                               "node (Ascend driver not installed, or set its path)") from None
        except subprocess.TimeoutExpired:
            raise NpuSmiTimeout(f"{cmd} timed out after {self.timeout_s:g} s") from None
        except subprocess.CalledProcessError as exc:
            said = _text(exc.stderr).strip() or _text(exc.output).strip() or "no output"
            raise _Refused(f"{cmd} exited with status {exc.returncode}: "
                           f"{_last_lines(said)}") from None
        except OSError as exc:
            raise CollectorError(f"{cmd} could not run: {exc}") from None

    def _count(self, source: str, exc: CollectorError) -> None:
        with self._lock:
            self._parse_errors[source] += 1
        if source not in self._logged:
            self._logged.add(source)
            log.warning("ascend: %s (counted in agent_parse_errors_total{source=%r}; "
                        "logged once)", exc, source)
        else:
            log.debug("ascend: %s", exc)

    def _record(self, stats: RunStats) -> None:
        with self._lock:
            for command, seconds in stats.seconds.items():
                self._calls[command] += len(seconds)
                self._call_seconds[command] += sum(seconds)
            self._last = stats

    # --- one run ----------------------------------------------------------------------------
    def collect(self) -> list[Sample]:
        started = _time.monotonic()
        now = datetime.now(UTC)
        self._cycle += 1
        source = "npu-smi info"
        table = RunStats()
        t0 = _time.monotonic()
        try:
            text = self._execute(("npu-smi", "info"))
            self._seen = True
        finally:
            table.started = 1
            table.seconds[source] = [_time.monotonic() - t0]
            self._record(table)
        errors: list[ParseError] = []
        try:
            rows = parse_info_table(text, source, errors)
        except ParseError as exc:
            self._count(source, exc)
            raise
        procs = parse_processes(text, source, errors) if rows else None
        for exc in errors:
            self._count(source, exc)
        if not rows:
            if errors:
                raise errors[0]
            raise NoData("npu-smi info lists no chip: the table has its header and no row "
                         "(driver loaded but no NPU enumerated, or all hidden from this "
                         "container)")
        if self.detail:
            budget = self.detail_budget_s
            if self.run_timeout_s is not None:  # leave the run time to finish in
                budget = min(budget, 0.8 * self.run_timeout_s - (_time.monotonic() - started))
            stats = self._details(rows, budget)
            stats.started += 1
            stats.seconds.setdefault(source, []).extend(table.seconds[source])
            with self._lock:
                self._last = stats
        return self._samples(rows, procs, now)

    def _details(self, rows: list[ChipRow], budget: float) -> RunStats:
        if not self._pending and self._cycle % self.detail_every == 0:
            self._pending.extend(self._round(rows))
        stats = self._queue.run(self._pending, budget, self._handle)
        with self._lock:
            for command, seconds in stats.seconds.items():
                self._calls[command] += len(seconds)
                self._call_seconds[command] += sum(seconds)
        return stats

    def _round(self, rows: list[ChipRow]) -> list[Call]:
        """Every call of one detail round: dynamic views first, then what is read once.

        A view that no card answered in ``_STATIC_TRIES`` rounds in a row is not supported
        by this npu-smi: it is logged once and no longer asked (its errors stop growing).
        """
        for view in self._round_tried:
            self._failed_rounds[view] = 0 if view in self._round_ok else (
                self._failed_rounds[view] + 1)
            if self._failed_rounds[view] == _STATIC_TRIES:
                log.warning("ascend: npu-smi info -t %s answered no card in %d rounds; "
                            "not asked again", view, _STATIC_TRIES)
        self._round_tried, self._round_ok = set(), set()
        slow = self._rounds % self.slow_every == 0
        self._rounds += 1
        views = (*self.views, *self.slow_views) if slow else self.views
        calls: list[Call] = []
        cards = _cards(rows)
        live = {n: [r for r in rs if not _unreachable(r)] for n, rs in cards.items()}
        for npu, chips in live.items():
            if not chips:
                continue  # a lost card: its views would only fail
            for view in views:
                calls += self._view_calls(npu, view, chips)
            if any(r.power_w is None for r in chips):
                calls += self._view_calls(npu, "power", [r for r in chips if r.power_w is None])
        for npu, chips in live.items():
            for view in self.static_views:
                if not chips or self._static_tries[(npu, view)] >= _STATIC_TRIES:
                    continue
                if view == "product" and not (chips[0].name or "").upper().startswith("310"):
                    continue  # npu-smi has it for 310/310P/310B only
                if view == "board":  # the card's (serial number) and each chip's (VDie ID)
                    if (npu, "board") not in self._views:
                        calls.append(self._call(npu, "board", None))
                    calls += [self._call(npu, "board", r.chip_id) for r in chips
                              if (npu, r.chip_id, "board") not in self._chip_views]
                elif (npu, view) not in self._views:
                    calls += self._view_calls(npu, view, chips)
        if (self._read_mapping and self._mapping is None
                and self._mapping_tries < _STATIC_TRIES):
            calls.append(Call(("npu-smi", "-m"), ("npu-smi", "info", "-m"), "npu-smi info -m"))
        if self._hccn_run is not None and slow:
            for r in (r for chips in live.values() for r in chips):
                phy = self._phy_id(r, len(cards[r.npu_id]))
                if phy is not None:
                    calls += [Call(("hccn", q, phy), ("hccn_tool", "-i", str(phy), f"-{q}", "-g"),
                                   f"hccn_tool -{q}") for q in self.hccn_queries]
        return calls

    def _view_calls(self, npu: int, view: str, chips: list[ChipRow]) -> list[Call]:
        if self._failed_rounds[view] >= _STATIC_TRIES:
            return []
        self._round_tried.add(view)
        if self._form.get(view) == "chip":
            return [self._call(npu, view, r.chip_id) for r in chips]
        return [self._call(npu, view, None, fallback=tuple(r.chip_id for r in chips))]

    @staticmethod
    def _call(npu: int, view: str, chip: int | None, fallback: tuple[int, ...] = ()) -> Call:
        argv = ["npu-smi", "info", "-t", view, "-i", str(npu)]
        if chip is not None:
            argv += ["-c", str(chip)]
        return Call(("npu-smi", view, npu, chip, fallback), tuple(argv),
                    f"npu-smi info -t {view}")

    def _handle(self, done: Done) -> None:
        key = done.call.key
        assert isinstance(key, tuple)
        if key[0] == "hccn":
            self._handle_hccn(done, key[1], key[2])
            return
        if key[1] == "-m":
            self._handle_mapping(done)
            return
        _, view, npu, chip, fallback = key
        source = done.call.command
        if done.error is not None:
            if isinstance(done.error, _Refused) and chip is None and fallback:
                # This npu-smi wants the chip form (-c): ask each chip, this cycle still.
                for c in reversed(fallback):
                    self._pending.appendleft(self._call(npu, view, c))
                return
            if view in _STATIC_VIEWS:
                self._static_tries[(npu, view)] += 1
            self._count(source, done.error)
            return
        errors: list[ParseError] = []
        try:
            blocks = parse_view(done.text or "", f"npu-smi {shlex.join(done.call.argv[1:])}",
                                chip, errors)
        except ParseError as exc:
            if view in _STATIC_VIEWS:
                self._static_tries[(npu, view)] += 1
            self._count(source, exc)
            return
        for exc in errors:
            self._count(source, exc)
        self._version += 1
        self._round_ok.add(view)
        if chip is None:
            self._form.setdefault(view, "card")
            self._views[(npu, view)] = _Cached(blocks, self._cycle)
        else:
            if fallback == () and self._form.get(view) != "card":
                self._form[view] = "chip"
            self._chip_views[(npu, chip, view)] = _Cached(blocks, self._cycle)

    def _handle_mapping(self, done: Done) -> None:
        source = "npu-smi info -m"
        self._mapping_tries += 1
        if done.error is not None:
            self._count(source, done.error)
            return
        errors: list[ParseError] = []
        try:
            self._mapping = parse_mapping(done.text or "", source, errors)
        except ParseError as exc:
            self._count(source, exc)
        for exc in errors:
            self._count(source, exc)

    def _handle_hccn(self, done: Done, query: str, phy: int) -> None:
        source = f"hccn_tool -{query}"
        if isinstance(done.error, DriverAbsent):
            if "hccn" not in self._logged:
                self._logged.add("hccn")
                log.warning("ascend: %s; network status not read", done.error)
            self._hccn_run = None
            return
        if done.error is not None:
            self._count(source, done.error)
            return
        try:
            values = parse_hccn(query, done.text or "", f"{shlex.join(done.call.argv)}")
        except ParseError as exc:
            self._count(source, exc)
            return
        self._network.setdefault(phy, {}).update(values)
        self._network_cycle[phy] = self._cycle

    # --- samples ----------------------------------------------------------------------------
    def _fresh(self, cached: _Cached | None, view: str) -> ViewBlocks | None:
        if cached is None:
            return None
        if view in _STATIC_VIEWS or self._cycle - cached.cycle < self._max_age(view):
            return cached.blocks
        return None

    def _max_age(self, view: str) -> int:
        """Cycles a view's values are sent for: three of its own periods."""
        slow = view in self.slow_views or view == "hccn"
        return 3 * self.detail_every * (self.slow_every if slow else 1)

    def _chip_details(self, row: ChipRow, n_chips: int) -> dict[str, str]:
        """The chip's own values from every view, dynamic views first (keys normalised);
        merged again only when a view's output arrives or one of them expires."""
        key = (row.npu_id, row.chip_id)
        hit = self._merged.get(key)
        if hit is not None and hit[0] == self._version and self._cycle < hit[1]:
            return hit[2]
        merged: dict[str, str] = {}
        expires = 1 << 62
        for view in (*self.views, *self.slow_views, "power", *_STATIC_VIEWS):
            entries = (self._chip_views.get((row.npu_id, row.chip_id, view)),
                       self._views.get((row.npu_id, view)))
            for cached in entries:
                blocks = self._fresh(cached, view)
                if blocks is None:
                    continue
                assert cached is not None
                if view not in _STATIC_VIEWS:
                    expires = min(expires, cached.cycle + self._max_age(view))
                if blocks is None:
                    continue
                values = blocks.chip(row.chip_id)
                if not values and n_chips == 1 and not blocks.chips and view != "board":
                    values = blocks.card  # a one-chip card's view that states no chip id
                for k, v in values.items():
                    merged.setdefault(k, v)
        self._merged[key] = (self._version, expires, merged)
        return merged

    def _card_details(self, npu: int) -> tuple[dict[str, str], dict[str, str]]:
        """The card's own values (``-t board`` header) and its MCU's (power, temperature);
        gathered again only when a view's output arrives or one of them expires."""
        hit = self._card_cache.get(npu)
        if hit is not None and hit[0] == self._version and self._cycle < hit[1]:
            return hit[2], hit[3]
        card: dict[str, str] = {}
        mcu: dict[str, str] = {}
        expires = 1 << 62
        entries = [(view, c) for (n, view), c in self._views.items() if n == npu]
        entries += [(view, c) for (n, _, view), c in self._chip_views.items() if n == npu]
        for view, cached in entries:
            blocks = self._fresh(cached, view)
            if blocks is None:
                continue
            if view not in _STATIC_VIEWS:
                expires = min(expires, cached.cycle + self._max_age(view))
            for k, v in blocks.card.items():
                card.setdefault(k, v)
            if view in ("common", "power", "temp"):  # the MCU's values, fresh ones only
                for k, v in blocks.mcu.items():
                    mcu.setdefault(k, v)
        self._card_cache[npu] = (self._version, expires, card, mcu)
        return card, mcu

    def _phy_id(self, row: ChipRow, n_chips: int) -> int | None:
        """npu-exporter's ``id``: the chip's physical id, from the best source at hand."""
        if row.phy_id is not None:
            return row.phy_id
        m = self._mapped(row)
        if m is not None and m.phy_id is not None:
            return m.phy_id
        if row.device_id is not None:
            return row.device_id  # 310/310P "Device": the logic id, the physical one on hosts
        if m is not None and m.logic_id is not None:
            return m.logic_id
        return row.npu_id if n_chips == 1 else None

    def _mapped(self, row: ChipRow) -> ChipMapping | None:
        for m in self._mapping or ():
            if (m.npu_id, m.chip_id) == (row.npu_id, row.chip_id):
                return m
        return None

    def _samples(self, rows: list[ChipRow], procs: list[ProcessRow] | None,
                 now: datetime) -> list[Sample]:
        cards = _cards(rows)
        by_chip: dict[tuple[int, int], list[ProcessRow]] = {}
        for p in procs or ():
            by_chip.setdefault((p.npu_id, p.chip_id), []).append(p)
        samples: list[Sample] = []
        for npu, chips in cards.items():
            card, mcu = self._card_details(npu) if self.detail else ({}, {})
            first: dict[str, str] | None = None
            for r in chips:
                details = self._chip_details(r, len(chips)) if self.detail else {}
                m = self._mapped(r)
                fallback = m.chip_name if m is not None and m.logic_id is not None else None
                phy = self._phy_id(r, len(chips))
                errs: list[ParseError] = []
                out = chip_samples(r, self._labels, details, fallback_model=fallback, time=now,
                                   errors=errs, phy_id=phy, normalized=True,
                                   device_labels=self._device_labels, label_sets=self._sets)
                for exc in errs:
                    self._count(exc.source, exc)
                samples += out
                lab = dict(out[0].labels) if out else chip_labels(
                    r, self._labels, details, fallback_model=fallback, phy_id=phy,
                    device_labels=self._device_labels)
                lab.pop("error_type", None)
                lab.pop("position", None)
                first = first or lab
                if details or card:
                    samples.append(info_sample(lab, details, card, now, self._sets))
                if procs is not None and not _unreachable(r):
                    samples += process_samples(by_chip.get((r.npu_id, r.chip_id), ()), lab,
                                               self.max_processes, now, self._sets)
                if phy is not None and phy in self._network and self._fresh_network(phy):
                    samples += network_samples(self._network[phy], lab, now, self._sets)
            if mcu and first is not None:
                errs = []
                samples += card_samples(npu, first, mcu, now, errs, self._sets)
                for exc in errs:
                    self._count(exc.source, exc)
        return samples

    def _fresh_network(self, phy: int) -> bool:
        return self._cycle - self._network_cycle.get(phy, -10**9) < self._max_age("hccn")

    def set_device_labels(self, hook: DeviceLabels) -> None:
        """Pass each chip's labels through ``hook`` (`DeviceLabels`)."""
        self._device_labels = hook

    # --- the collector's own counters (reported by the agent every cycle) ------------------
    def self_samples(self, time: datetime | None = None) -> list[Sample]:
        """Parse errors per source (zeros included), commands run and their wall times."""
        time = time or datetime.now(UTC)
        lab = {**self._labels, "collector": self.name}
        with self._lock:
            # The views' sources once npu-smi has answered: a node without it shows one.
            errors = sorted(self._parse_errors.items()) if self._seen \
                else [("npu-smi info", self._parse_errors["npu-smi info"])]
            calls = sorted(self._calls.items())
            seconds = dict(self._call_seconds)
            last = self._last
        out = [Sample.of("agent.parse_errors_total", float(n), {**lab, "source": src}, time)
               for src, n in errors]
        for command, n in calls:
            clab = {**lab, "command": command}
            out.append(Sample.of("agent.command_calls_total", float(n), clab, time))
            out.append(Sample.of("agent.command_seconds_total", seconds[command], clab, time))
        if last is not None:
            out.append(Sample.of("agent.collector_commands", float(last.started), lab, time))
            for command, secs in sorted(last.seconds.items()):
                out.append(Sample.of("agent.command_duration_seconds", max(secs),
                                     {**lab, "command": command}, time))
        return out

    def error_samples(self, time: datetime | None = None) -> list[Sample]:
        """``agent.parse_errors_total`` per source, cumulative, zeros included."""
        return [s for s in self.self_samples(time) if s.name == "agent.parse_errors_total"]

    def close(self) -> None:
        self._queue.close()


def _cards(rows: list[ChipRow]) -> dict[int, list[ChipRow]]:
    cards: dict[int, list[ChipRow]] = {}
    for r in rows:
        cards.setdefault(r.npu_id, []).append(r)
    return cards


def _unreachable(row: ChipRow) -> bool:
    return all(v is None for v in (row.power_w, row.temperature_c, row.aicore_percent,
                                   row.memory_total_mb, row.hbm_total_mb))


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _last_lines(text: str, n: int = 3) -> str:
    return " / ".join(text.splitlines()[-n:])

