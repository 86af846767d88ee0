"""Energy-based PUE per window from meter energy counters, with resets, gaps and completeness.

PUE = E_facility / E_IT over the same period (ISO/IEC 30134-2; GB 40879-2021 method RM2),
computed from energy counters, never from instantaneous power. The method, stated once here
and quoted by reports:

1. Each meter's counter readings are made monotonic: a reading lower than the one before is
   a counter reset (meter restart, replacement, or a wrap the collector could not unwrap),
   and the counter is taken to restart from zero, so the increment is the new reading (the
   Prometheus ``increase`` rule). Energy between the last reading and the reset is lost
   (at most one reading interval), never invented.
2. Between two readings the energy is spread evenly over time (the counter is linearly
   interpolated), and the period is cut into slots (default 1 minute). A slot is *covered*
   by a meter when the readings around it are no more than ``max_gap`` apart; energy across
   a longer gap is known in total but not when it was used, so those slots are not covered.
3. A window's energies are summed over the slots covered by *every* expected meter of the
   facility and IT scopes of the site, so numerator and denominator always describe the same
   time. ``completeness`` is the share of the window's slots that qualify.
4. The PUE is reported only when completeness reaches ``min_completeness`` (policy, default
   0.90 after 发改环资〔2017〕1711号); otherwise it is NaN and the window is flagged. A site
   with no IT meter at all is flagged ``no_it_meter``.

The instantaneous ratio facility W / IT W is a different, noisier quantity: it is computed by
`power_ratio` and exported as ``pue_power_ratio``, never mixed with the energy-based value.
Windows are aligned in ``tz`` (default China Standard Time), since regulators count days,
months and years in local time. Both the agent (from its meters' samples) and everything that
reads the store call `window_pue`: the summary, the PUE pipeline and the report read the
meters through `meter_readings` (each meter's last counter reading per 15-minute bucket) and
derive the PUE with `windowed_pue`, so they state one number for one site and period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from computewatch.store import Aggregate, Query

if TYPE_CHECKING:  # annotations only: the agent's PUE collector needs none of them
    from computewatch.findings import Period
    from computewatch.policy import Policy
    from computewatch.store import Store

__all__ = ["CHINA_TZ", "DEFINITION", "READING_BUCKET", "WINDOWS", "meter_readings",
           "monotonic_energy", "power_ratio", "window_edges", "window_pue", "windowed_pue"]

CHINA_TZ = "Asia/Shanghai"

READING_BUCKET = timedelta(minutes=15)
"""`meter_readings` keeps each meter's last reading per bucket of this length; `windowed_pue`
cuts windows into slots of the same length and accepts gaps of up to two of them."""

DEFINITION = ("energy-based PUE = facility energy / IT energy from meter counters over the "
              "slots every meter covers (ISO/IEC 30134-2, GB 40879-2021 RM2); counter resets "
              "restart from zero; windows in China time")
"""The method in one sentence, as findings and reports quote it."""

WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "1d": "D", "month": "MS",
           "year": "YS", "all": "all"}
"""Named windows: fixed lengths, calendar periods (pandas offsets) in the window timezone, or
``all``: the whole requested range as one window."""

_REQUIRED_SCOPES = ("facility", "it")


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


def monotonic_energy(times: np.ndarray, joules: np.ndarray) -> tuple[np.ndarray, int]:
    """The counter with resets removed (restart-from-zero rule), and the number of resets."""
    order = np.argsort(times, kind="stable")
    j = np.asarray(joules, dtype=float)[order]
    d = np.diff(j)
    resets = d < 0
    d = np.where(resets, j[1:], d)  # after a reset the new reading is the energy since it
    out = np.concatenate([[0.0], np.cumsum(d)]) if len(j) else j
    return out, int(resets.sum())


def _meter_slots(t: np.ndarray, cum: np.ndarray, slots: np.ndarray,
                 max_gap_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Energy per slot (interpolated counter) and whether the meter covers each slot."""
    if len(t) < 2:
        n = len(slots) - 1
        return np.zeros(n), np.zeros(n, dtype=bool)
    energy = np.diff(np.interp(slots, t, cum))
    long_gap = np.diff(t) > max_gap_ns
    gaps_before = np.concatenate([[0], np.cumsum(long_gap)])  # long gaps up to reading i
    left = np.searchsorted(t, slots[:-1], side="right") - 1  # last reading <= slot start
    right = np.searchsorted(t, slots[1:], side="left")  # first reading >= slot end
    inside = (left >= 0) & (right < len(t))
    li, ri = np.clip(left, 0, len(t) - 1), np.clip(right, 0, len(t) - 1)
    covered = inside & (gaps_before[ri] - gaps_before[li] == 0)
    return np.where(covered, energy, 0.0), covered


def window_pue(readings: pd.DataFrame, start: datetime, end: datetime,
               window: str | timedelta = "1h", *, by: Sequence[str] = ("site",),
               expected: Mapping[tuple, Mapping[str, Sequence[str]]] | None = None,
               slot: timedelta = timedelta(minutes=1),
               max_gap: timedelta = timedelta(minutes=5), min_completeness: float = 0.9,
               tz: str = CHINA_TZ) -> pd.DataFrame:
    """PUE per ``by`` group and window from counter readings.

    ``readings`` has columns ``time`` (UTC), the ``by`` columns, ``meter``, ``scope`` and
    ``joules`` (the counter). ``expected`` maps a group key (tuple of ``by`` values) to
    {scope: [meter, ...]}: a meter listed there but absent from the data makes the window
    incomplete. Without it, the meters seen in the data for the group are expected.

    Returns one row per group and window: the ``by`` columns, ``window_start``,
    ``window_end``, ``facility_joules``, ``it_joules``, ``pue``, ``completeness``, ``resets``
    and ``flag`` (ok | incomplete | no_it_meter | no_facility_meter).
    """
    edges = window_edges(start, end, window, tz)
    cols = [*by, "window_start", "window_end", "facility_joules", "it_joules", "pue",
            "completeness", "resets", "flag"]
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
    data = readings.copy()
    data["_t"] = pd.to_datetime(data["time"], utc=True).dt.as_unit("ns").astype("int64")
    groups = {}
    if len(data):
        groups = {k if isinstance(k, tuple) else (k,): g
                  for k, g in data.groupby(list(by), sort=True)}
    for key in (expected or {}):
        groups.setdefault(tuple(key), data.iloc[0:0])
    rows = []
    for key, g in sorted(groups.items()):
        want = {s: list(m) for s, m in (expected or {}).get(key, {}).items()} or {
            s: sorted(g.loc[g.scope == s, "meter"].unique()) for s in _REQUIRED_SCOPES}
        all_covered = np.ones(len(slots) - 1, dtype=bool)
        energy = {s: np.zeros(len(slots) - 1) for s in _REQUIRED_SCOPES}
        resets = 0
        for scope in _REQUIRED_SCOPES:
            for meter in want.get(scope, []):
                m = g[(g.meter == meter) & (g.scope == scope)]
                t = m["_t"].to_numpy()
                order = np.argsort(t, kind="stable")
                cum, n_resets = monotonic_energy(t, m["joules"].to_numpy())
                resets += n_resets
                e, cov = _meter_slots(t[order], cum, slots, int(pd.Timedelta(max_gap).value))
                energy[scope] += e
                all_covered &= cov
        for w in range(n_windows):
            in_w = slot_window == w
            ok = in_w & all_covered
            completeness = float(ok.sum() / slots_per_window[w]) if slots_per_window[w] else 0.0
            fac = float(energy["facility"][ok].sum())
            it = float(energy["it"][ok].sum())
            if not want.get("it"):
                flag, completeness = "no_it_meter", 0.0
            elif not want.get("facility"):
                flag, completeness = "no_facility_meter", 0.0
            elif completeness < 1.0:
                flag = "incomplete"
            else:
                flag = "ok"
            pue = fac / it if (it > 0 and completeness >= min_completeness
                               and flag in ("ok", "incomplete")) else float("nan")
            rows.append([*key, edges[w], edges[w + 1], fac if completeness else float("nan"),
                         it if completeness else float("nan"), pue, completeness, resets, flag])
    return pd.DataFrame(rows, columns=cols)


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


def meter_readings(store: Store, period: Period,
                   bucket: timedelta = READING_BUCKET) -> pd.DataFrame:
    """Each meter's last counter reading per ``bucket``, stamped at the bucket's end.

    One push-down query (facility and IT meters x buckets rows; other scopes, such as the
    hosts' RAPL counters, are no part of a PUE and are not read). It starts one bucket early:
    the reading just before the period opens is the baseline of its first slot, without which
    no window could ever be 100% complete. Columns: ``time``, ``hub``, ``cluster``, ``site``,
    ``meter``, ``scope``, ``joules`` (the input `window_pue` takes).
    """
    q = Query("facility_power", ("joules_total",), period.start - bucket, period.end,
              where={"scope": list(_REQUIRED_SCOPES)},
              group_by=("hub", "cluster", "site", "meter", "scope"), window=bucket,
              agg=Aggregate.LAST)
    df = store.query(q)
    df = df[df.joules_total.notna()]
    return df.assign(time=df.time + bucket).rename(columns={"joules_total": "joules"})


def windowed_pue(readings: pd.DataFrame, period: Period, policy: Policy,
                 window: str | timedelta, *, by: Sequence[str] = ("site",),
                 min_completeness: float | None = None) -> pd.DataFrame:
    """`window_pue` over `meter_readings`: slots of `READING_BUCKET`, gaps of up to two
    slots, and the policy's completeness floor (or ``min_completeness``): the one PUE that
    findings, reports and the summary state. Columns as `window_pue` returns them."""
    floor = (float(policy.pue.min_completeness.value) if min_completeness is None
             else min_completeness)
    return window_pue(readings, period.start, period.end, window, by=by, slot=READING_BUCKET,
                      max_gap=2 * READING_BUCKET, min_completeness=floor)
