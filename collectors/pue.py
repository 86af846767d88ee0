"""PUE in the agent: the site's meter readings, turned into energy-based PUE per window.

A site agent that reads its facility and IT meters (Redfish, SNMP, Modbus, RAPL) also reports
the site's PUE, with the same derivation the pipelines use (`computewatch.pue`). Two parts,
so the agent's scheduling and delivery stay as they are:

- `MeterTap` is an exporter: it keeps a rolling window of the ``facility_power`` samples the
  power collectors produce (nothing leaves the process);
- `PueCollector` is a collector: each run it derives, per site, the last complete window of
  each configured length from the tap's readings and emits ``pue.energy_ratio``,
  ``pue.completeness_ratio``, ``pue.facility_joules``, ``pue.it_joules`` (label ``window``)
  and the instantaneous ``pue.power_ratio`` of the latest readings.

The derivation works on the raw readings: counter resets are undone reading by reading, and a
meter that reports watts only (every UPS-MIB UPS) is integrated by the trapezoid rule and
added to the counters' energy. Given the site's declared meters (``collectors.pue.topology``
names the topology that declares them), each of them is expected, and one that is silent
lowers the completeness; without declarations the meters the agent has heard from are
expected, so a meter silent since the agent started goes unnoticed.

Metrics
-------

- pue
  - tags: hub, cluster, site, window (``15m`` | ``1h``; ``instant`` for power_ratio)
  - fields:
    - energy_ratio (float, factor): facility J / IT J over the window; absent when the
      window's completeness is below the policy floor
    - completeness_ratio (float, ratio 0..1): share of the window every meter covered
    - facility_joules, it_joules (float, joules): the window's energies
    - power_ratio (float, factor): facility W / IT W at the latest reading
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from computewatch.collectors.export import ExportResult
from computewatch.pue import WINDOWS, power_ratio, window_pue

if TYPE_CHECKING:
    from computewatch.pue import MeterLike
from computewatch.samples import Sample

__all__ = ["MeterTap", "PueCollector"]


class MeterTap:
    """An in-process exporter remembering recent ``facility_power`` readings."""

    name = "meter-tap"

    def __init__(self, keep: timedelta = timedelta(hours=2)) -> None:
        self.keep = keep
        self._readings: deque[Sample] = deque()
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Sample], source: str = "") -> ExportResult:
        power = [s for s in batch if s.measurement == "facility_power"]
        with self._lock:
            self._readings.extend(power)
            if self._readings:
                horizon = max(s.time for s in self._readings) - self.keep
                while self._readings and self._readings[0].time < horizon:
                    self._readings.popleft()
        return ExportResult.ok(len(power))

    def frame(self, field: str) -> pd.DataFrame:
        with self._lock:
            rows = [{"time": s.time, "site": s.label("site", ""), "hub": s.label("hub", ""),
                     "cluster": s.label("cluster", ""), "meter": s.label("meter", ""),
                     "scope": s.label("scope", ""), field: s.value}
                    for s in self._readings if s.field == field]
        return pd.DataFrame(rows, columns=["time", "site", "hub", "cluster", "meter", "scope",
                                           field])

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        pass


class PueCollector:
    name = "pue"

    def __init__(self, tap: MeterTap, windows: Sequence[str] = ("15m", "1h"),
                 min_completeness: float = 0.9, max_gap: timedelta = timedelta(minutes=5),
                 clock=lambda: datetime.now(UTC),
                 meters: Mapping[str, Sequence[MeterLike]] | None = None) -> None:
        unknown = [w for w in windows if w not in WINDOWS]
        if unknown:
            raise ValueError(f"unknown PUE window {unknown[0]!r} (use {', '.join(WINDOWS)})")
        self.tap, self.windows = tap, tuple(windows)
        self.min_completeness, self.max_gap, self._clock = min_completeness, max_gap, clock
        self.meters = dict(meters or {})

    def collect(self) -> list[Sample]:
        counters = self.tap.frame("joules_total").rename(columns={"joules_total": "joules"})
        power = self.tap.frame("watts")
        energy = pd.concat([f for f in (counters, power) if len(f)], ignore_index=True) \
            if len(counters) or len(power) else counters
        if energy.empty:
            return []
        now = self._clock()
        places = energy.drop_duplicates("site").set_index("site")[["hub", "cluster"]]
        out: list[Sample] = []
        for name in self.windows:
            length = WINDOWS[name]
            assert isinstance(length, timedelta)
            end = pd.Timestamp(now).floor(pd.Timedelta(length)).to_pydatetime()
            got = window_pue(energy, end - length, end, length, by=("site",),
                             meters=self.meters, min_completeness=self.min_completeness,
                             max_gap=self.max_gap, power_max_gap=self.max_gap)
            for r in got.itertuples():
                hub, cluster = (places.at[r.site, "hub"], places.at[r.site, "cluster"]) \
                    if r.site in places.index else ("", "")
                labels = {"site": r.site, "hub": hub, "cluster": cluster, "window": name}
                labels = {k: v for k, v in labels.items() if v}
                out.append(Sample.of("pue.completeness_ratio", r.completeness, labels, end))
                if r.completeness > 0:
                    out.append(Sample.of("pue.facility_joules", r.facility_joules, labels, end))
                    out.append(Sample.of("pue.it_joules", r.it_joules, labels, end))
                if r.pue == r.pue:  # not NaN: complete enough to state
                    out.append(Sample.of("pue.energy_ratio", r.pue, labels, end))
        watts = self.tap.frame("watts")
        if not watts.empty:
            # Each meter's latest reading (meters are read one after another, not at once).
            latest = watts.sort_values("time").groupby("meter", as_index=False).last()
            latest["time"] = latest.groupby("site").time.transform("max")
            for r in power_ratio(latest).itertuples():
                if r.power_ratio == r.power_ratio:  # below 1 is refused and counted by the agent
                    labels = {"site": r.site, "window": "instant"}
                    out.append(Sample.of("pue.power_ratio", r.power_ratio, labels, r.time))
        return out
