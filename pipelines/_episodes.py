"""Runs of consecutive bad windows, merged into episodes with a start and an end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Episode", "episodes"]


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
