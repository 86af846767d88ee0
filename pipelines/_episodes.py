"""Runs of consecutive bad windows, merged into episodes with a start and an end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Episode", "episodes", "sustained_below"]


@dataclass(frozen=True, slots=True)
class Episode:
    first: int  # index of the first bad window
    last: int  # index of the last bad window (inclusive)

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def episodes(bad: Sequence[bool] | np.ndarray, min_length: int = 1) -> list[Episode]:
    """Maximal runs of True at least ``min_length`` long (windows without data are False)."""
    b = np.asarray(bad, dtype=bool)
    if not b.any():
        return []
    edges = np.diff(np.concatenate([[0], b.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [Episode(int(s), int(e)) for s, e in zip(starts, ends, strict=True)
            if e - s + 1 >= min_length]


def grid(index: pd.DatetimeIndex | Sequence, values: pd.Series) -> np.ndarray:
    """``values`` (indexed by window start) laid on the full window grid, NaN where missing."""
    return values.reindex(index).to_numpy(dtype=float)


def sustained_below(values: np.ndarray, weights: np.ndarray, threshold: float,
                    span: int) -> list[Episode]:
    """Episodes of at least ``span`` windows whose rolling mean stays below ``threshold``.

    A run of ``span`` consecutive windows is below when its weighted mean is below the
    threshold (windows without data, NaN or weight 0, count for nothing); overlapping below
    runs make one episode, so one busy window does not end an episode as long as the runs
    around it stay below on average. Windows at the episode's ends that hold data at or above
    the threshold are trimmed while the episode stays ``span`` long (it starts and ends on a
    shortfall, not on the busy edge of a run). The shortfall must itself last: an episode
    counts only when at least ``span`` of its windows are not at or above the threshold
    (below it, or without data: a gap neither makes nor breaks a shortfall), so five low
    hours and one busy one are not six hours below. A tie is not below (a tolerance of 1e-9
    absorbs float rounding). Should an episode's own mean not be below (only possible for
    contrived alternations), its lowest run stands for it.
    """
    v = np.asarray(values, dtype=float)
    w = np.where(np.isnan(v), 0.0, np.asarray(weights, dtype=float))
    vw = np.where(w > 0, v * w, 0.0)
    n = len(v)
    if span < 1 or n < span:
        return []
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cv = np.concatenate([[0.0], np.cumsum(vw)])
    run_w = cw[span:] - cw[:-span]
    run_v = cv[span:] - cv[:-span]
    with np.errstate(invalid="ignore", divide="ignore"):
        run_mean = np.where(run_w > 0, run_v / np.where(run_w > 0, run_w, 1.0), np.nan)
    high = (w > 0) & (v >= threshold - 1e-9)

    def holds(first: int, last: int) -> bool:
        total = w[first:last + 1].sum()
        return (total > 0 and vw[first:last + 1].sum() / total < threshold - 1e-9
                and (last - first + 1) - int(high[first:last + 1].sum()) >= span)

    out = []
    for runs in episodes(run_mean < threshold - 1e-9):
        first, last = runs.first, runs.last + span - 1
        while last - first + 1 > span and high[first]:
            first += 1
        while last - first + 1 > span and high[last]:
            last -= 1
        if holds(first, last):
            out.append(Episode(first, last))
            continue
        lowest = runs.first + int(np.nanargmin(run_mean[runs.first:runs.last + 1]))
        if holds(lowest, lowest + span - 1):
            out.append(Episode(lowest, lowest + span - 1))
    return out
