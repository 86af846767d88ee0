"""Reads through the Prometheus HTTP API (``/api/v1/...``), spoken by VictoriaMetrics too.

`PromAPI` sends what `computewatch.store._promql` builds and turns the answers into the
frames the `Store` protocol promises: ``time`` (window start, UTC), the group-by tags
(``''`` where a series lacks one) and one column per field. Every request is a POST form
(long ``where`` lists do not hit URL limits); instant queries are never used, because
VictoriaMetrics hides the last 30 s from them (``-search.latencyOffset``), while
``query_range`` answers what it holds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd
import requests

from computewatch import catalog
from computewatch.redact import redact
from computewatch.samples import TIME
from computewatch.store._promql import (
    Dialect,
    Evaluation,
    evaluations,
    expression,
    matchers,
    ms,
    regex_escape,
    selector,
)
from computewatch.store._protocol import Aggregate, Query, StoreError, check_query

__all__ = ["PromAPI"]

log = logging.getLogger(__name__)

FUTURE = timedelta(days=2)
"""How far past now a sample may lie (VictoriaMetrics accepts up to 2 days ahead)."""
EARLIEST_MS = 86_400_000
"""Where "all time" starts: 1970-01-02 (VictoriaMetrics 1.79 answers nothing for a range
that reaches back to the epoch itself)."""


def _seconds(t_ms: int) -> str:
    return f"{t_ms // 1000}.{t_ms % 1000:03d}"


class PromAPI:
    """One Prometheus-compatible read endpoint: ``base`` is what ``/api/v1/...`` hangs off.

    ``left_open`` says whether a range ``[r]`` at ``T`` covers ``(T-r, T]`` (VictoriaMetrics,
    Prometheus 3) or ``[T-r, T]`` (Prometheus 2); None asks the server's build info.
    ``params`` go with every request (VictoriaMetrics: ``nocache=1``).
    """

    def __init__(self, base: str, *, dialect: Dialect, source: str,
                 left_open: bool | None = None, params: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> None:
        self.base = base.rstrip("/")
        self.dialect = dialect
        self.source = source
        self._left_open = left_open
        self.params = dict(params or {})
        self.timeout_s = timeout_s
        self._http = requests.Session()
        self._http.headers.update(headers or {})

    # -- transport ------------------------------------------------------------------------
    def call(self, path: str, data: Mapping[str, Any] | Sequence[tuple[str, Any]],
             what: str, *, method: str = "POST") -> Any:
        """POST a form (or GET, where the API has no POST) to ``base + path``; the ``data``
        of a success, else a StoreError."""
        items = list(data.items()) if isinstance(data, Mapping) else list(data)
        items += list(self.params.items())
        url = self.base + path
        try:
            if method == "GET":
                r = self._http.get(url, params=items, timeout=self.timeout_s)
            else:
                r = self._http.post(url, data=items, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise StoreError(f"{self.source}: {redact(url)}: {type(exc).__name__}: "
                             f"{redact(exc)}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400 or not isinstance(body, dict) or body.get("status") != "success":
            detail = (body.get("error") if isinstance(body, dict) else None) or r.text[:500]
            raise StoreError(f"{self.source}: {what} failed: HTTP {r.status_code}: "
                             f"{detail.strip()}")
        return body.get("data")

    def post(self, path: str, data: Sequence[tuple[str, Any]], what: str) -> None:
        """POST a form whose answer has no body (VictoriaMetrics' delete_series: 204)."""
        url = self.base + path
        try:
            r = self._http.post(url, data=[*data, *self.params.items()], timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise StoreError(f"{self.source}: {redact(url)}: {type(exc).__name__}: "
                             f"{redact(exc)}") from None
        if r.status_code >= 400:
            raise StoreError(f"{self.source}: {what} failed: HTTP {r.status_code}: "
                             f"{r.text[:500].strip()}")

    def get(self, path: str) -> Any:
        try:
            r = self._http.get(self.base + path, params=self.params, timeout=self.timeout_s)
            r.raise_for_status()
            return r.json().get("data")
        except (requests.RequestException, ValueError) as exc:
            raise StoreError(f"{self.source}: {redact(self.base + path)}: {redact(exc)}") from None

    def close(self) -> None:
        self._http.close()

    @property
    def left_open(self) -> bool:
        """Prometheus 3 ranges are left-open, 2's closed; VictoriaMetrics (left-open) answers
        the build info with no version (a Prometheus store's ``rollups=`` may name one)."""
        if self._left_open is None:
            version = str((self.get("/api/v1/status/buildinfo") or {}).get("version", ""))
            try:
                major = int(version.split(".")[0]) if version else 3
            except ValueError:
                major = 2
            self._left_open = major >= 3
        return self._left_open

    def query_range(self, expr: str, first_ms: int, last_ms: int, step_ms: int) -> list[dict]:
        data = self.call("/api/v1/query_range",
                         {"query": expr, "start": _seconds(first_ms), "end": _seconds(last_ms),
                          "step": _seconds(step_ms)}, f"query {expr!r}")
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise StoreError(f"{self.source}: query {expr!r}: expected a matrix, got {data!r:.200}")
        return data["result"]

    # -- Store reads ----------------------------------------------------------------------
    def query(self, q: Query) -> pd.DataFrame:
        meas = check_query(q, self.source)
        label_matchers = matchers(meas, q.where, self.source)
        plans = list(evaluations(q, left_open=self.left_open, source=self.source)) \
            if label_matchers is not None else []
        builders = {f: partial(expression, q, selector(meas.metric(f).prometheus,
                                                       label_matchers or []),
                               dialect=self.dialect) for f in q.fields}
        merged = self.answer(q, builders, plans)
        if q.agg is Aggregate.COUNT:
            merged[list(q.fields)] = merged[list(q.fields)].fillna(0).astype("int64")
        return merged[[TIME, *q.group_by, *q.fields]]

    def answer(self, q: Query, builders: Mapping[str, Callable[[int], str]],
               plans: Sequence[Evaluation]) -> pd.DataFrame:
        """One column per ``builders`` key: the values its expression (given the range in
        ms) takes at ``plans``' evaluation times, per window start and ``q.group_by``
        group; outer-merged, in time and group order (``float64``; empty columns where
        nothing answered)."""
        keys = [TIME, *q.group_by]
        merged: pd.DataFrame | None = None
        for name, build in builders.items():
            part = self._field_frame(q, name, build, plans)
            merged = part if merged is None else merged.merge(part, on=keys, how="outer")
        if merged is None or merged.empty:
            return _empty([*keys, *builders], q.group_by)
        return merged.sort_values(keys, ignore_index=True)

    def _field_frame(self, q: Query, f: str, build: Callable[[int], str],
                     plans: Sequence[Evaluation]) -> pd.DataFrame:
        times: list[datetime] = []
        groups: list[list[str]] = [[] for _ in q.group_by]
        values: list[float] = []
        for ev in plans:
            expr = build(ev.range_ms)
            for result in self.query_range(expr, ev.first_ms, ev.last_ms, ev.step_ms):
                metric = result.get("metric", {})
                labels = [metric.get(g, "") for g in q.group_by]
                for t, v in result.get("values", ()):
                    value = float(v)
                    if math.isnan(value):
                        continue
                    times.append(ev.window_start(round(float(t) * 1000)))
                    for col, lab in zip(groups, labels, strict=True):
                        col.append(lab)
                    values.append(value)
        frame = {TIME: pd.to_datetime(times, utc=True).as_unit("us") if times
                 else pd.DatetimeIndex([], tz=UTC).as_unit("us")}
        frame.update({g: pd.Series(col, dtype="str") for g, col in zip(q.group_by, groups,
                                                                          strict=True)})
        frame[f] = pd.Series(values, dtype="float64")
        out = pd.DataFrame(frame)
        if out.duplicated([TIME, *q.group_by]).any():
            raise StoreError(f"{self.source}: field {f!r} answered twice for one window and "
                             "group; is a label used both as a tag and by the engine?")
        return out

    def names(self, meas: catalog.Measurement, label_matchers: Sequence[str]) -> list[str]:
        """The field series of a measurement that exist (any time)."""
        fields = "|".join(regex_escape(meas.metric(f).prometheus) for f in meas.fields)
        match = "{" + ", ".join([f'__name__=~"{fields}"', *label_matchers]) + "}"
        data = self.call("/api/v1/label/__name__/values",  # GET only in Prometheus 2
                         [("match[]", match), *self.all_time()], f"names of {meas.name!r}",
                         method="GET")
        return sorted(data or [])

    def all_time(self) -> list[tuple[str, str]]:
        return [("start", _seconds(EARLIEST_MS)),
                ("end", _seconds(ms(datetime.now(UTC) + FUTURE)))]

    def all_time_range(self) -> tuple[int, str]:
        """An evaluation time and the range selector suffix that covers all time before it."""
        hi = ms(datetime.now(UTC) + FUTURE)
        return hi, f"[{hi - EARLIEST_MS}ms]"

    def series(self, measurement: str,
               where: Mapping[str, str | Sequence[str]] | None = None) -> pd.DataFrame:
        meas = catalog.measurement(measurement)
        label_matchers = matchers(meas, where, self.source)
        rows: set[tuple[str, ...]] = set()
        if label_matchers is not None:
            for name in self.names(meas, label_matchers):
                rows |= self.label_sets(meas, selector(name, label_matchers), repr(name))
        df = pd.DataFrame(sorted(rows), columns=list(meas.labels), dtype="str")
        return df.reset_index(drop=True)

    def label_sets(self, meas: catalog.Measurement, s: str, what: str) -> set[tuple[str, ...]]:
        """The measurement's labels (``''`` where absent) of every series ``s`` selects."""
        data = self.call("/api/v1/series", [("match[]", s), *self.all_time()],
                         f"series of {what}")
        return {tuple(one.get(lab, "") for lab in meas.labels) for one in data or []}

    def any_series(self, meas: catalog.Measurement) -> str:
        fields = "|".join(regex_escape(meas.metric(f).prometheus) for f in meas.fields)
        return "{" + f'__name__=~"{fields}"' + "}"

    def time_bounds(self, measurement: str) -> tuple[datetime, datetime] | None:
        s = self.any_series(catalog.measurement(measurement))
        first = self.first_ms(s)
        if first is None:
            return None
        last = self.last_ms(s, first)
        return _utc(first), _utc(last if last is not None else first)

    def first_ms(self, s: str) -> int | None:
        """The time (ms) of the earliest sample of the series ``s`` selects, or None."""
        hi, r = self.all_time_range()
        if self.dialect is Dialect.METRICSQL:
            first = self._scalar(f"min(tfirst_over_time({s}{r}))", hi)
            return None if first is None else round(first * 1000)
        return self._bisect(s, EARLIEST_MS, hi, earliest=True)

    def last_ms(self, s: str, after_ms: int) -> int | None:
        """The time (ms) of the latest sample of ``s``, none of which is before ``after_ms``."""
        hi, r = self.all_time_range()
        if self.dialect is Dialect.METRICSQL:
            last = self._scalar(f"max(tlast_over_time({s}{r}))", hi)
            return None if last is None else round(last * 1000)
        return self._bisect(s, after_ms, hi, earliest=False)

    def _scalar(self, expr: str, at_ms: int) -> float | None:
        result = self.query_range(expr, at_ms, at_ms, 1000)
        for r in result:
            for _, v in r.get("values", ()):
                value = float(v)
                if not math.isnan(value):
                    return value
        return None

    def _bisect(self, s: str, lo: int, hi: int, *, earliest: bool) -> int | None:
        """The first (or last) sample time in ``[lo, hi)``, narrowing 1000 windows at a time.

        PromQL has no timestamp of the first sample in a range: count the series with samples
        in 1000 windows, keep the first (last) window that has any, and repeat inside it
        down to 2 ms, then ask which of the two milliseconds holds it.
        """
        while hi - lo > 2:
            step = max(2, -(-(hi - lo) // 1000))
            points = -(-(hi - lo) // step)
            r = step if self.left_open else step - 1
            # last_over_time keeps the metric name, so series of different fields with the
            # same labels stay apart (count_over_time would make them collide)
            result = self.query_range(f"count(last_over_time({s}[{r}ms]))",
                                      lo + step - 1, lo + (points - 1) * step + step - 1, step)
            hits = sorted(round(float(t) * 1000) for res in result for t, v in res["values"]
                          if float(v) > 0)
            if not hits:
                return None
            end = hits[0] if earliest else hits[-1]  # evaluation time = window end - 1 ms
            lo, hi = end - step + 1, min(end + 1, hi)
        if hi - lo <= 1:
            return lo
        # [lo, lo+2) holds the sample: ask a 1 ms range which of the two milliseconds it is.
        # Earliest: at lo, (lo-1, lo] or [lo-1, lo], and nothing lies before lo. Latest: lo+1,
        # as (lo, lo+1] or [lo+1, lo+2], and nothing lies at lo+2 or after.
        if earliest:
            return lo if self._present(s, lo) else lo + 1
        return lo + 1 if self._present(s, lo + 1 if self.left_open else lo + 2) else lo

    def _present(self, s: str, at_ms: int) -> bool:
        value = self._scalar(f"count(last_over_time({s}[1ms]))", at_ms)
        return bool(value)


def _utc(t_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=t_ms)


def _empty(columns: list[str], group_by: Sequence[str]) -> pd.DataFrame:
    """No rows: ``time``, the groups as strings, the values as float64."""
    frame = {TIME: pd.DatetimeIndex([], tz=UTC).as_unit("us")}
    frame.update({g: pd.Series([], dtype="str") for g in group_by})
    frame.update({c: pd.Series([], dtype="float64")
                  for c in columns if c != TIME and c not in group_by})
    return pd.DataFrame(frame)[columns]
