"""Energy-based PUE per window from a site's declared meters: counters, power-only meters,
resets, gaps, completeness, and the ISO/IEC 30134-2 label of every figure.

PUE = E_facility / E_IT over the same period (ISO/IEC 30134-2; GB 40879-2021 method RM2),
from energies, never from instantaneous power. The method, stated once here and quoted by
reports:

1. **The meters are the site's declared ones** (the topology's ``meters``: id, scope, where
   it measures, expected interval). Every declared facility and IT meter is expected in every
   slot: a meter that is silent, or silent for part of the window, lowers the completeness
   and is named (``silent_meters``, ``meter_coverage``); a meter that reports but is not
   declared is left out and named (``undeclared_meters``), since it may be a sub-meter of a
   declared one. A site without declarations falls back to the meters that report (and its
   PUE states no category). An aggregate (hub, cluster) expects the declared meters of its
   sites that report at all; a wholly silent site is a site row of its own (``no_data``).
2. **Energy counters** are made monotonic on the raw readings, before any downsampling: a
   reading lower than the one before is a reset (meter restart, replacement, or a wrap the
   collector could not unwrap), and the counter is taken to restart from zero, so the increment
   is the new reading (the Prometheus ``increase`` rule). Energy between the last reading and
   the reset is lost (at most one reading), never invented. The store is read as each meter's
   last *and* highest reading per bucket (`meter_readings`): a bucket whose highest reading
   is above its last held a reset, and the energy up to the highest reading is kept.
3. **Power-only meters** (every UPS-MIB device reports watts only) are integrated by the
   trapezoid rule between consecutive readings; two readings further apart than the maximum
   gap leave the time between them missing, not estimated. Their energy and the counters'
   add up in one site's sums.
4. Between two readings the energy is spread evenly over time and the period is cut into
   slots (`READING_BUCKET` for the store's readings). A slot is *covered* by a meter when
   its readings around it are no more than the maximum gap apart (two expected intervals of
   the meter at least). A window's energies are summed over the slots covered by *every*
   expected meter, so numerator and denominator always describe the same time;
   ``completeness`` is the share of the window's slots that qualify.
5. The PUE is stated only when completeness reaches ``min_completeness`` (policy, default
   0.90 after 发改环资〔2017〕1711号); otherwise it is NaN and the window is flagged.
6. **Labels** (ISO/IEC 30134-2): the ``category`` follows from where IT energy is metered:
   1 at the UPS output, 2 at the PDU output, 3 at the IT equipment's input; a site that mixes
   takes the lowest of its IT meters' categories (0: not declared). A window shorter than
   12 months gives an *interim* PUE (``interim``); the PUE proper covers 12 months.

The instantaneous ratio facility W / IT W is a different, noisier quantity: it is computed by
`power_ratio` and exported as ``pue_power_ratio``, never mixed with the energy-based value.
Windows are aligned in ``tz`` (default China Standard Time), since regulators count days,
months and years in local time. Both the agent (from its meters' raw samples) and everything
that reads the store call `window_pue`: the summary, the PUE pipeline and the report read the
meters through `meter_readings` and derive the PUE with `windowed_pue`, so they state one
number for one site and period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from computewatch.i18n import N_
from computewatch.store import Aggregate, Query, query_many, resolution

if TYPE_CHECKING:  # annotations only: the agent's PUE collector needs none of them
    from computewatch.findings import Period
    from computewatch.policy import Policy
    from computewatch.store import Store
    from computewatch.topology import Topology

__all__ = ["ANNUAL", "CATEGORY_POINT", "CHINA_TZ", "DEFINITION", "POWER_BUCKET",
           "POWER_MAX_GAP", "PUE_COLUMNS", "READING_BUCKET", "READING_MARGIN",
           "RESET_PLAUSIBLE_FACTOR", "WINDOWS", "declared_meters", "integrate_power",
           "meter_readings", "monotonic_energy", "power_ratio", "pue_label", "window_edges",
           "window_pue", "windowed_pue"]

CHINA_TZ = "Asia/Shanghai"

READING_BUCKET = timedelta(minutes=15)
"""`meter_readings` keeps each counter's last and highest reading per bucket of this length;
`windowed_pue` cuts windows into slots of the same length and accepts gaps of up to two of
them (or two expected intervals of a meter, if longer)."""

READING_MARGIN = timedelta(hours=1)
"""`meter_readings` reads this much before and after the period, so a meter read as seldom
as hourly (1711号 allows readings every 15, 30 or 60 minutes) has a reading on either side of
it."""

POWER_BUCKET = timedelta(minutes=1)
"""`meter_readings` reads a power-only meter as its mean per bucket of this length (stamped at
the bucket's end, like the counters' readings), the points the trapezoid rule integrates; it
also reads again, at this resolution, the counter buckets where a meter fell silent or came
back."""

POWER_MAX_GAP = timedelta(minutes=5)
"""Power readings further apart than this (or than two expected intervals of the meter, if
longer) leave the time between them missing: power is not known in between, unlike a
counter's energy."""

ANNUAL = timedelta(days=365)
"""A window at least this long is a 12-month PUE; a shorter one an interim PUE."""

CATEGORY_POINT = {1: N_("UPS output"), 2: N_("PDU output"), 3: N_("IT equipment input")}
"""ISO/IEC 30134-2 categories and where each meters IT energy."""

DEFINITION = N_("energy-based PUE = facility energy / IT energy of the site's declared meters "
              "(counters, and power-only meters integrated by the trapezoid rule) over the "
              "slots every meter covers (ISO/IEC 30134-2, GB 40879-2021 RM2); counter resets "
              "on raw readings restart from zero; interim below 12 months; category from "
              "where IT energy is metered (1 UPS, 2 PDU output, 3 IT input); windows in "
              "China time")
"""The method in one sentence, as findings and reports quote it."""

WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "1d": "D", "month": "MS",
           "year": "YS", "all": "all"}
"""Named windows: fixed lengths, calendar periods (pandas offsets) in the window timezone, or
``all``: the whole requested range as one window."""

_REQUIRED_SCOPES = ("facility", "it")
_CATEGORY = {"ups_output": 1, "pdu_output": 2, "it_input": 3}

PUE_COLUMNS = ["window_start", "window_end", "facility_joules", "it_joules", "pue",
               "completeness", "resets", "flag", "category", "interim", "silent_meters",
               "meter_coverage", "undeclared_meters"]
"""The columns `window_pue` returns after the group's ``by`` columns."""


class MeterLike(Protocol):
    """What a PUE needs of a declared meter (`computewatch.topology.Meter` is one)."""

    id: str
    scope: str
    point: str
    interval: float


def pue_label(category: int, interim: bool) -> str:
    """How a PUE is named: ``interim PUE, category 1 (UPS output)``, ``PUE (12 months), ...``."""
    kind = "interim PUE" if interim else "PUE (12 months)"
    where = (f"category {category} ({CATEGORY_POINT[category]})" if category in CATEGORY_POINT
             else "category not declared")
    return f"{kind}, {where}"


def declared_meters(topology: Topology | None) -> dict[str, list[MeterLike]]:
    """Each site's declared meters by site id (sites that declare none are left out)."""
    if topology is None:
        return {}
    return {s.id: list(s.meters) for s in topology.sites if s.meters}


def window_edges(start: datetime, end: datetime, window: str | timedelta,
                 tz: str = CHINA_TZ) -> pd.DatetimeIndex:
    """Boundaries of the windows that cover [start, end), aligned in ``tz``; returned in UTC.

    Fixed windows (15m, 1h, any timedelta) start on a multiple of their length; calendar
    windows (1d, month, year) on local midnight, the first of the month, or of the year.
    """
    spec = WINDOWS.get(window, window) if isinstance(window, str) else window
    if isinstance(spec, str) and spec not in ("D", "MS", "YS", "all"):
        raise ValueError(f"unknown window {window!r} (use {', '.join(WINDOWS)} or a timedelta)")
    lo = pd.Timestamp(start).tz_convert(tz)
    hi = pd.Timestamp(end).tz_convert(tz)
    if hi <= lo:
        return pd.DatetimeIndex([], tz="UTC")
    if spec == "all":
        return pd.DatetimeIndex([lo, hi]).tz_convert("UTC").as_unit("ns")
    if isinstance(spec, timedelta):
        step = pd.Timedelta(spec)
        first = lo.floor(step)
        n = int(np.ceil((hi - first) / step))
        edges = pd.date_range(first, periods=n + 1, freq=step)
    else:
        day = lo.normalize()
        first = {"D": day, "MS": day.replace(day=1), "YS": day.replace(month=1, day=1)}[spec]
        edges = pd.date_range(first, hi + pd.tseries.frequencies.to_offset(spec), freq=spec)
        edges = edges[: int(np.searchsorted(edges, hi, side="left")) + 1]
    return edges.tz_convert("UTC").as_unit("ns")


RESET_PLAUSIBLE_FACTOR = 10.0
"""After a reset the new reading counts as the energy since it only if it is at most this many
times what the meter typically draws over the same time; a counter that restarted from some
other value (a replaced meter) would otherwise add its whole reading as energy."""


def _counter_steps(times: np.ndarray, joules: np.ndarray, peaks: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Energy between consecutive readings (sorted by time), which steps are unknown, and the
    number of resets. See `monotonic_energy`."""
    order = np.argsort(times, kind="stable")
    t = np.asarray(times, dtype=np.int64)[order]
    j = np.asarray(joules, dtype=float)[order]
    if len(j) < 2:
        return np.zeros(0), np.zeros(0, dtype=bool), 0
    prev, after = j[:-1], j[1:]
    d = np.diff(j)
    dropped = d < 0
    inside = np.zeros(len(d), dtype=bool)
    p = np.zeros(len(d))
    if peaks is not None:
        p = np.asarray(peaks, dtype=float)[order][1:]
        inside = np.nan_to_num(p, nan=-np.inf) > after * (1 + 1e-12) + 1e-9
    reset = dropped | inside
    d = np.where(dropped, after, d)  # after a reset the new reading is the energy since it
    d = np.where(inside, np.maximum(p - prev, 0.0) + after, d)  # the bucket's peak kept
    dt = np.diff(t).astype(float)
    ordinary = ~reset & (dt > 0)
    unknown = np.zeros(len(d), dtype=bool)
    if reset.any() and ordinary.sum() >= 2:
        typical = float(np.median(d[ordinary] / dt[ordinary]))
        unknown = reset & (after > RESET_PLAUSIBLE_FACTOR * typical * dt + 1.0)
        d = np.where(unknown, 0.0, d)
    return d, unknown, int(reset.sum())


def monotonic_energy(times: np.ndarray, joules: np.ndarray,
                     peaks: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """The counter with resets removed (restart-from-zero rule), and the number of resets.

    ``peaks``, when given, is each reading's bucket maximum (`meter_readings`): a peak above
    the reading means the counter reset inside the bucket after reaching the peak, so the
    energy up to the peak is kept and the reading counts from zero. Without peaks every
    reading is a raw one. A reading after a reset larger than `RESET_PLAUSIBLE_FACTOR` times
    the meter's typical draw over that time did not restart from zero (a replaced meter):
    that step adds nothing here, and `window_pue` leaves the time across it uncovered.
    """
    d, _, resets = _counter_steps(times, joules, peaks)
    if not len(d):
        return np.zeros(len(np.asarray(joules))), 0
    return np.concatenate([[0.0], np.cumsum(d)]), resets


def integrate_power(times: np.ndarray, watts: np.ndarray, max_gap_ns: int) -> np.ndarray:
    """Cumulative joules of a power-only meter by the trapezoid rule (times in ns, sorted).

    Between readings more than ``max_gap_ns`` apart nothing is added: the slots across such a
    gap are not covered (`window_pue`), so that energy is missing, never guessed.
    """
    w = np.asarray(watts, dtype=float)
    if len(w) < 2:
        return np.zeros(len(w))
    dt = np.diff(np.asarray(times, dtype=np.int64)) / 1e9
    step = np.where(dt * 1e9 <= max_gap_ns, (w[1:] + w[:-1]) / 2.0 * dt, 0.0)
    return np.concatenate([[0.0], np.cumsum(step)])


def _meter_slots(t: np.ndarray, cum: np.ndarray, slots: np.ndarray, max_gap_ns: int,
                 unknown: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Energy per slot (interpolated counter) and whether the meter covers each slot; a step
    between readings further apart than ``max_gap_ns``, or marked ``unknown``, covers none."""
    if len(t) < 2:
        n = len(slots) - 1
        return np.zeros(n), np.zeros(n, dtype=bool)
    energy = np.diff(np.interp(slots, t, cum))
    long_gap = np.diff(t) > max_gap_ns
    if unknown is not None:
        long_gap |= unknown
    gaps_before = np.concatenate([[0], np.cumsum(long_gap)])  # long gaps up to reading i
    left = np.searchsorted(t, slots[:-1], side="right") - 1  # last reading <= slot start
    right = np.searchsorted(t, slots[1:], side="left")  # first reading >= slot end
    inside = (left >= 0) & (right < len(t))
    li, ri = np.clip(left, 0, len(t) - 1), np.clip(right, 0, len(t) - 1)
    covered = inside & (gaps_before[ri] - gaps_before[li] == 0)
    return np.where(covered, energy, 0.0), covered


@dataclass(frozen=True, slots=True)
class _MeterData:
    """One meter's readings as arrays, sorted by time: its counter (with bucket peaks) if it
    reports one, else its power."""

    t: np.ndarray
    joules: np.ndarray | None
    peak: np.ndarray | None
    watts: np.ndarray | None

    @classmethod
    def per_meter(cls, data: pd.DataFrame) -> dict[tuple, _MeterData]:
        """(site, meter) -> its readings, for every meter of ``data`` (columns ``site``,
        ``meter``, ``_t`` in ns, ``joules``, ``watts``, optionally ``peak``): one pass over
        numpy columns, not a sorted frame per meter (a report: twice 150 meters)."""
        t = data["_t"].to_numpy()
        joules = data["joules"].to_numpy(dtype=float, na_value=np.nan)
        watts = data["watts"].to_numpy(dtype=float, na_value=np.nan)
        peak = data["peak"].to_numpy(dtype=float, na_value=np.nan) if "peak" in data else None
        out = {}
        for key, rows in data.groupby(["site", "meter"], sort=False).indices.items():
            rows = rows[np.argsort(t[rows], kind="stable")]  # by time, ties as they came
            counter = rows[~np.isnan(joules[rows])]
            if len(counter):
                out[key] = cls(t[counter], joules[counter],
                               peak[counter] if peak is not None else None, None)
            else:
                power = rows[~np.isnan(watts[rows])]
                out[key] = cls(t[power], None, None, watts[power])
        return out


_NO_DATA = _MeterData(np.zeros(0, dtype=np.int64), None, None, None)


def _meter_energy(m: _MeterData, slots: np.ndarray, counter_gap_ns: int,
                  power_gap_ns: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One meter's energy per slot, its coverage and its resets: from its counter when it
    reports one, else from its power readings."""
    if m.joules is not None:
        d, unknown, resets = _counter_steps(m.t, m.joules, m.peak)
        cum = np.concatenate([[0.0], np.cumsum(d)]) if len(d) else np.zeros(len(m.t))
        e, cov = _meter_slots(m.t, cum, slots, counter_gap_ns, unknown if len(d) else None)
        return e, cov, resets
    if m.watts is not None and len(m.t):
        cum = integrate_power(m.t, m.watts, power_gap_ns)
        e, cov = _meter_slots(m.t, cum, slots, power_gap_ns)
        return e, cov, 0
    n = len(slots) - 1
    return np.zeros(n), np.zeros(n, dtype=bool), 0


def _category(points: Sequence[str | None]) -> int:
    """The lowest ISO/IEC 30134-2 category of the IT meters; 0 when one is not declared."""
    cats = [_CATEGORY.get(p or "", 0) for p in points]
    return 0 if not cats or 0 in cats else min(cats)


def window_pue(readings: pd.DataFrame, start: datetime, end: datetime,
               window: str | timedelta = "1h", *, by: Sequence[str] = ("site",),
               meters: Mapping[str, Sequence[MeterLike]] | None = None,
               expected: Mapping[tuple, Mapping[str, Sequence[str]]] | None = None,
               slot: timedelta = timedelta(minutes=1),
               max_gap: timedelta = timedelta(minutes=5),
               power_max_gap: timedelta = POWER_MAX_GAP, min_completeness: float = 0.9,
               tz: str = CHINA_TZ) -> pd.DataFrame:
    """PUE per ``by`` group and window from meter readings.

    ``readings`` has columns ``time`` (UTC), the ``by`` columns, ``site``, ``meter``,
    ``scope``, and ``joules`` (the counter; NaN or absent for a power-only meter), optionally
    ``peak`` (the counter's bucket maximum, see `monotonic_energy`) and ``watts`` (read where
    a meter has no counter). ``meters`` maps a site id to its declared meters (`declared_meters`):
    those are the site's expected meters, and with ``by=("site",)`` every declared site gets
    rows, a silent one flagged ``no_data``. ``expected`` (older form) maps a group key to
    {scope: [meter, ...]} and wins for that group. Otherwise the meters seen in the data are
    expected. Counter readings further apart than ``max_gap`` and power readings further apart
    than ``power_max_gap`` (each at least two of the meter's declared intervals) leave the
    slots between them uncovered.

    Returns one row per group and window: the ``by`` columns, then `PUE_COLUMNS`:
    ``facility_joules``, ``it_joules``, ``pue``, ``completeness``, ``resets``, ``flag`` (ok |
    incomplete | no_data | no_it_meter | no_facility_meter), ``category`` (ISO/IEC 30134-2,
    0 when not declared), ``interim`` (shorter than 12 months), ``silent_meters`` (expected
    meters covering less than the whole window, least covered first), ``meter_coverage``
    ({meter: share of the window's slots it covers}) and ``undeclared_meters``.
    """
    edges = window_edges(start, end, window, tz)
    cols = [*by, *PUE_COLUMNS]
    if len(edges) < 2:
        return pd.DataFrame(columns=cols)
    slot_ns = int(pd.Timedelta(slot).value)
    lo, hi = edges[0].value, edges[-1].value
    slots = np.arange(lo, hi + 1, slot_ns, dtype=np.int64)
    if slots[-1] != hi:
        slots = np.append(slots, hi)
    slot_window = np.searchsorted(edges.asi8, slots[:-1], side="right") - 1  # ns, like slots
    n_windows = len(edges) - 1
    slots_per_window = np.bincount(slot_window, minlength=n_windows).astype(float)
    interim = [(edges[w + 1] - edges[w]) < pd.Timedelta(ANNUAL) for w in range(n_windows)]
    data = readings.copy()
    for col in ("joules", "watts"):
        if col not in data:
            data[col] = np.nan
    if "site" not in data:
        data["site"] = ""
    data["_t"] = pd.to_datetime(data["time"], utc=True).dt.as_unit("ns").astype("int64")
    declared = dict(meters or {})
    arrays = _MeterData.per_meter(data)
    keys = list(dict.fromkeys([*by, "site", "meter", "scope"]))
    combos = data[keys].drop_duplicates()
    groups: dict[tuple, pd.DataFrame] = {}
    if len(combos):
        groups = {k if isinstance(k, tuple) else (k,): g
                  for k, g in combos.groupby(list(by), sort=True)}
    if tuple(by) == ("site",):
        for site in declared:
            groups.setdefault((site,), combos.iloc[0:0])
    for key in (expected or {}):
        groups.setdefault(tuple(key), combos.iloc[0:0])
    gap_ns = int(pd.Timedelta(max_gap).value)
    power_gap = int(pd.Timedelta(power_max_gap).value)
    rows = []
    for key, g in sorted(groups.items()):
        want = _expected(key, g, by, declared, expected)
        all_covered = np.ones(len(slots) - 1, dtype=bool)
        energy = {s: np.zeros(len(slots) - 1) for s in _REQUIRED_SCOPES}
        coverage: dict[str, np.ndarray] = {}
        resets, heard = 0, False
        for site, meter, scope, _point, interval in want["meters"]:
            m = arrays.get((site, meter), _NO_DATA)
            floor_ns = int(2 * interval * 1e9) if interval else 0
            e, cov, n_resets = _meter_energy(m, slots, max(gap_ns, floor_ns),
                                             max(power_gap, floor_ns))
            heard |= bool(len(m.t))
            resets += n_resets
            energy[scope] += e
            all_covered &= cov
            coverage[meter] = cov
        ok_slots = np.bincount(slot_window, weights=all_covered, minlength=n_windows)
        fac_w = np.bincount(slot_window, weights=energy["facility"] * all_covered,
                            minlength=n_windows)
        it_w = np.bincount(slot_window, weights=energy["it"] * all_covered,
                           minlength=n_windows)
        per_meter = {mid: np.bincount(slot_window, weights=cov, minlength=n_windows)
                     for mid, cov in coverage.items()}
        has_it = any(s == "it" for _, _, s, _, _ in want["meters"])
        has_fac = any(s == "facility" for _, _, s, _, _ in want["meters"])
        category = _category([p for _, _, s, p, _ in want["meters"] if s == "it"])
        for w in range(n_windows):
            n = slots_per_window[w]
            completeness = float(ok_slots[w] / n) if n else 0.0
            shares = {mid: float(c[w] / n) if n else 0.0 for mid, c in per_meter.items()}
            silent = tuple(sorted((mid for mid, v in shares.items() if v < 1.0),
                                  key=lambda mid: (shares[mid], mid)))
            fac, it = float(fac_w[w]), float(it_w[w])
            if not has_it:
                flag, completeness = "no_it_meter", 0.0
            elif not has_fac:
                flag, completeness = "no_facility_meter", 0.0
            elif not heard:
                flag = "no_data"
            elif completeness < 1.0:
                flag = "incomplete"
            else:
                flag = "ok"
            pue = fac / it if (it > 0 and completeness >= min_completeness
                               and flag in ("ok", "incomplete")) else float("nan")
            rows.append([*key, edges[w], edges[w + 1], fac if completeness else float("nan"),
                         it if completeness else float("nan"), pue, completeness, resets, flag,
                         category, interim[w], silent, shares, want["undeclared"]])
    return pd.DataFrame(rows, columns=cols)


def _expected(key: tuple, g: pd.DataFrame, by: Sequence[str],
              declared: Mapping[str, Sequence[MeterLike]],
              expected: Mapping[tuple, Mapping[str, Sequence[str]]] | None) -> dict:
    """The group's expected meters as (site, meter, scope, point, interval) and the meters
    that report but are not declared."""
    if expected and key in expected:
        site_of = {(r.meter, r.scope): r.site for r in g.itertuples()}
        return {"meters": [(site_of.get((m, s), ""), m, s, None, None) for s in _REQUIRED_SCOPES
                           for m in expected[key].get(s, [])], "undeclared": ()}
    seen: dict[str, set[tuple[str, str]]] = {}
    for site, meter, scope in zip(g.site, g.meter, g.scope, strict=True):
        entry = seen.setdefault(site, set())
        if scope in _REQUIRED_SCOPES:
            entry.add((scope, meter))
    if tuple(by) == ("site",):
        seen.setdefault(key[0], set())
    out: list[tuple] = []
    undeclared: list[str] = []
    for site in sorted(seen):
        if site in declared:
            out += [(site, m.id, m.scope, m.point, m.interval) for m in declared[site]
                    if m.scope in _REQUIRED_SCOPES]
            ids = {m.id for m in declared[site]}
            undeclared += sorted({meter for _, meter in seen[site]} - ids)
        else:
            out += [(site, meter, scope, None, None) for scope, meter in sorted(seen[site])]
    return {"meters": out, "undeclared": tuple(undeclared)}


def power_ratio(watts: pd.DataFrame, by: Sequence[str] = ("site",)) -> pd.DataFrame:
    """Instantaneous facility W / IT W per reading time: ``pue_power_ratio``, not the PUE."""
    w = watts[watts.scope.isin(_REQUIRED_SCOPES)]
    pivot = w.pivot_table(index=["time", *by], columns="scope", values="watts", aggfunc="sum")
    out = pd.DataFrame(index=pivot.index)
    if "it" in pivot and "facility" in pivot:
        out["power_ratio"] = pivot["facility"] / pivot["it"].where(pivot["it"] > 0)
    else:  # one side not metered at that moment: no ratio
        out["power_ratio"] = np.nan
    return out.reset_index()


_PLACE = ("hub", "cluster", "site", "meter", "scope")
_READING_COLUMNS = ["time", *_PLACE, "joules", "peak", "watts"]


def _counter_buckets(store: Store, start: datetime, end: datetime, where: Mapping,
                     bucket: timedelta) -> pd.DataFrame:
    """Each counter's last, highest and number of readings per ``bucket``, stamped at the
    bucket's end (columns as `meter_readings` returns them, plus ``count``): three
    aggregates asked together, so a store answers them from one scan (`query_many`)."""
    last, peak, count = query_many(store, [
        Query("facility_power", ("joules_total",), start, end, where=where, group_by=_PLACE,
              window=bucket, agg=agg) for agg in (Aggregate.LAST, Aggregate.MAX,
                                                  Aggregate.COUNT)])
    last = last[last.joules_total.notna()]
    if last.empty:
        return pd.DataFrame(columns=[*_READING_COLUMNS, "count"])
    out = last.rename(columns={"joules_total": "joules"})
    for answer, name in ((peak, "peak"), (count, "count")):
        out = out.merge(answer.rename(columns={"joules_total": name}),
                        on=["time", *_PLACE], how="left")
    return out.assign(time=out.time + bucket, watts=np.nan)[[*_READING_COLUMNS, "count"]]


def _refined(store: Store, counters: pd.DataFrame, where: Mapping,
             bucket: timedelta, fine_step: timedelta = POWER_BUCKET) -> pd.DataFrame:
    """Buckets holding fewer readings than their meter usually has (where a meter fell
    silent or came back), and every bucket of a meter read at most once per bucket (hourly
    meters), read again per `POWER_BUCKET`: stamping such a bucket's last reading at its end
    would put the reading up to a bucket late and count a slot the meter did not cover.
    ``fine_step``: the finest the store answers (rollups: an hour; nothing finer to read)."""
    typical = counters.groupby(["site", "meter"])["count"].transform("median")
    partial = (counters["count"] < typical) | (typical <= 1)  # sparse meters: every reading
    if not partial.any() or fine_step >= bucket:
        return counters[_READING_COLUMNS]
    few = counters[partial]
    fine = _counter_buckets(store, few.time.min() - bucket, few.time.max(),
                            {**where, "meter": sorted(set(few.meter))}, fine_step)
    spans = {(r.site, r.meter, r.time) for r in few.itertuples()}  # bucket ends
    ends = fine.time.dt.ceil(pd.Timedelta(bucket))  # the coarse bucket each minute is in
    inside = [(s, m, e) in spans for s, m, e in zip(fine.site, fine.meter, ends, strict=True)]
    kept = counters[~partial][_READING_COLUMNS]
    return pd.concat([kept, fine[inside][_READING_COLUMNS]], ignore_index=True).sort_values(
        ["site", "meter", "time"], ignore_index=True)


def _slotted(readings: pd.DataFrame, bucket: timedelta) -> pd.DataFrame:
    """Readings marked with the bucket they were read at (`windowed_pue` slots by it)."""
    readings.attrs["slot"] = bucket
    return readings


def meter_readings(store: Store, period: Period,
                   bucket: timedelta = READING_BUCKET) -> pd.DataFrame:
    """Every facility and IT meter's readings of the period, as `window_pue` takes them.

    Counters: each meter's last and highest reading per ``bucket`` (``joules``, ``peak``),
    stamped at the bucket's end: push-down queries, meters x buckets rows, and a reset
    inside a bucket is still seen on the raw readings (`monotonic_energy`). A bucket holding
    fewer readings than its meter usually has (the meter fell silent or came back in it) is
    read per `POWER_BUCKET` instead, so a silence starts and ends where it did. Meters that
    report no counter in the period (power-only meters): their mean power per `POWER_BUCKET`
    (``watts``), stamped at its end like the counters. Other scopes, such as the hosts' RAPL
    counters, are no part of a PUE and are not read. It reads `READING_MARGIN` on either side
    of the period: the readings just before it opens and just after it closes bound its first
    and last slots, without which no window could ever be 100% complete (`window_pue` counts
    energy inside the period only). Columns: ``time``, ``hub``, ``cluster``, ``site``,
    ``meter``, ``scope``, ``joules``, ``peak``, ``watts``.
    """
    where = {"scope": list(_REQUIRED_SCOPES)}
    # Beyond the raw data the store answers whole rollup buckets only (hours, or days).
    step = resolution(store, "facility_power", period.start - max(bucket, READING_MARGIN))
    bucket, fine_step = max(bucket, step), max(POWER_BUCKET, step)
    start = period.start - max(bucket, READING_MARGIN)
    end = period.end + max(READING_MARGIN, step)
    buckets = _counter_buckets(store, start, end, where, bucket)
    counters = _refined(store, buckets, where, bucket, fine_step) if len(buckets) else \
        pd.DataFrame(columns=_READING_COLUMNS)
    series = store.series("facility_power", where)
    if series.empty or "meter" not in series:
        return _slotted(counters.reset_index(drop=True), bucket)
    with_counter = set(zip(buckets.site, buckets.meter, strict=True))
    keys = series[["site", "meter"]].dropna().drop_duplicates()
    power_only = [m for s, m in keys.itertuples(index=False) if (s, m) not in with_counter]
    if not power_only:
        return _slotted(counters.reset_index(drop=True), bucket)
    watts = store.query(Query("facility_power", ("watts",), start, end,
                              where={**where, "meter": sorted(set(power_only))},
                              group_by=_PLACE, window=fine_step, agg=Aggregate.MEAN))
    watts = watts[watts.watts.notna()]
    watts = watts[[(s, m) not in with_counter
                   for s, m in zip(watts.site, watts.meter, strict=True)]]
    if watts.empty:
        return _slotted(counters.reset_index(drop=True), bucket)
    watts = watts.assign(time=watts.time + fine_step, joules=np.nan,
                         peak=np.nan)[_READING_COLUMNS]
    return _slotted(pd.concat([f for f in (counters, watts) if len(f)], ignore_index=True),
                    bucket)


def windowed_pue(readings: pd.DataFrame, period: Period, policy: Policy,
                 window: str | timedelta, *, by: Sequence[str] = ("site",),
                 min_completeness: float | None = None,
                 topology: Topology | None = None) -> pd.DataFrame:
    """`window_pue` over `meter_readings`: slots of `READING_BUCKET` (or the rollups' hour
    the readings were read at, beyond the raw data), counter gaps of up to
    two slots, the topology's declared meters, and the policy's completeness floor (or
    ``min_completeness``): the one PUE that findings, reports and the summary state.
    Columns as `window_pue` returns them."""
    floor = (float(policy.pue.min_completeness.value) if min_completeness is None
             else min_completeness)
    slot = readings.attrs.get("slot", READING_BUCKET)  # hourly where read from rollups
    return window_pue(readings, period.start, period.end, window, by=by,
                      meters=declared_meters(topology), slot=slot,
                      max_gap=2 * slot, min_completeness=floor)
