"""The order the embedded store keeps a frame's rows in: each series' samples together, in
time order (so its constant fields and its id compress to runs), found cheaply.

A series is a distinct combination of label values; rows are told apart by their labels'
dictionary indices, never by hashing strings per row. Two paths:

- Frames as collectors and the simulator write them, one equal block of rows per timestamp
  (the time-major shape, a device per row position): the order is a transposition, each
  position's rows in time order, and a series begins wherever a label changes along them (a
  pod comes or goes). Every column is reordered by a strided copy (numpy): no sort, no
  gather. A label set that moves between positions gets one run per position (the same
  series id: compression loses a little, nothing else does).
- Any other frame: the labels' indices are folded into one 64-bit hash per row, the rows are
  sorted by (hash, time), and each run of equal hashes is checked to hold one label set (a
  collision falls back to an exact renumbering), so the order is exact whatever the labels'
  cardinality (12 labels with pods overflow any mixed-radix key).

Asked for (``period``: a write going straight to sealed parts, one per clock hour), each
period's rows come first, in that order within it: a part is then one slice of the rows (no
filter, no mask), at no cost (the transposition is made period by period).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from computewatch.samples import TIME

__all__ = ["SeriesOrder", "series_order"]

_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime


@dataclass(frozen=True, slots=True)
class SeriesOrder:
    """Where the rows go: ``blocks`` (timestamps, series) when the frame is time-major (the
    reorder is a transposition, of each run of timestamps ``cuts`` bound), else ``order``
    (row indices); ``starts`` are where each series begins in the new order, ``first`` the
    original row of each series' first sample (series in their new order; a series split
    by a period has a run in each); ``edges`` where each period begins in the new order,
    and ``n`` (asked for a period; else none)."""

    n: int
    starts: np.ndarray
    first: np.ndarray
    blocks: tuple[int, int] | None = None
    order: np.ndarray | None = None
    cuts: tuple[int, ...] = ()
    edges: tuple[int, ...] = ()

    def indices(self) -> np.ndarray:
        if self.order is not None:
            return self.order
        return self._move(np.arange(self.n))

    def lengths(self) -> np.ndarray:
        return np.diff(np.append(self.starts, self.n))

    def apply(self, column: pa.ChunkedArray | pa.Array) -> pa.Array:
        """``column`` in the new order: numpy for fixed-width columns (values and validity
        moved apart; a strided copy for time-major frames), Arrow's take for the rest."""
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)
                or pa.types.is_timestamp(arr.type)):
            return pc.take(arr, pa.array(self.indices()))
        if arr.null_count == 0:
            return pa.array(self._move(arr.to_numpy(zero_copy_only=True)), type=arr.type)
        values = pc.fill_null(arr, pa.scalar(0, arr.type)).to_numpy(zero_copy_only=True)
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        return pa.array(self._move(values), type=arr.type, mask=self._move(missing))

    def _move(self, values: np.ndarray) -> np.ndarray:
        if self.blocks is not None:
            t, s = self.blocks
            if len(self.cuts) <= 2:
                return values.reshape(t, s).T.ravel()
            out = np.empty_like(values)
            for a, b in itertools.pairwise(self.cuts):
                out[a * s:b * s].reshape(s, b - a)[...] = values[a * s:b * s].reshape(b - a, s).T
            return out
        return values[self.order]


def _codes(table: pa.Table, labels: Sequence[str]) -> list[np.ndarray]:
    """Each label's dictionary indices (one dictionary per column across chunks). A column
    of one chunk (the simulator's, a collector's) is taken as it is: Arrow's
    ``combine_chunks`` copied it anyway, at times 0.25 s for the demo's hour of 12 labels."""
    table = table.select(list(labels))
    if any(c.num_chunks > 1 for c in table.columns):
        table = table.unify_dictionaries()
    out = []
    for lab in labels:
        chunks = table.column(lab)
        col = chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col)
        out.append(col.indices.to_numpy(zero_copy_only=False))
    return out


def _blocks(times: np.ndarray, n: int) -> tuple[int, int] | None:
    """(timestamps, rows per timestamp) when the frame is time-major: equal blocks of rows,
    one per timestamp, in time order; else None."""
    later = times != times[0]
    s = int(np.argmax(later)) if later.any() else n
    if n % s or n // s < 2:
        return None
    t = n // s
    tt = times.reshape(t, s)
    if not (tt == tt[:, :1]).all() or not (tt[1:, 0] > tt[:-1, 0]).all():
        return None
    return t, s


def series_order(table: pa.Table, labels: Sequence[str], period: int | None = None
                 ) -> SeriesOrder:
    """The order that puts each series' rows together, in time order; with ``period`` (in
    the time column's units), the rows of each clock period first (its first time //
    ``period``), in that order within it."""
    n = table.num_rows
    times = table.column(TIME).combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    if not labels:
        order = np.argsort(times, kind="stable")
        return SeriesOrder(n, np.zeros(min(n, 1), np.int64), order[:1], order=order,
                           edges=() if period is None else _edges(times[order] // period))
    codes = _codes(table, labels)
    blocks = _blocks(times, n) if n else None
    if blocks is not None:
        # Row k of every block is one device (a slot); its label set changes where a pod
        # comes or goes. Transposed, each slot's rows follow one another in time order, and
        # a series begins wherever any label changes (or a slot does, or a period).
        t, s = blocks
        cuts = [0, t]
        if period is not None:
            periods = times[::s] // period
            cuts[1:1] = (np.flatnonzero(periods[1:] != periods[:-1]) + 1).tolist()
        moved = np.zeros((t, s), bool)  # in block layout: did this row's labels change?
        moved[cuts[:-1]] = True
        for c in codes:
            cc = c.reshape(t, s)
            moved[1:] |= cc[1:] != cc[:-1]
        starts, first = [], []
        for a, b in itertools.pairwise(cuts):  # where each run begins, in the new order
            at = np.flatnonzero(moved[a:b].T.ravel())
            starts.append(a * s + at)
            first.append((a + at % (b - a)) * s + at // (b - a))  # its original row
        return SeriesOrder(n, np.concatenate(starts), np.concatenate(first), blocks=blocks,
                           cuts=tuple(cuts),
                           edges=() if period is None else tuple(c * s for c in cuts))
    keys = np.zeros(n, np.uint64)
    for c in codes:
        keys ^= c.astype(np.uint64)
        keys *= _PRIME
    periods = None if period is None else times // period
    for _ in range(2):
        in_time = n and np.all(times[1:] >= times[:-1])  # arrival order is time order
        if periods is not None:
            order = np.lexsort((keys, periods) if in_time else (times, keys, periods))
        elif in_time:
            order = np.argsort(keys, kind="stable")
        else:
            order = np.lexsort((times, keys))
        ordered = keys[order]
        change = ordered[1:] != ordered[:-1]
        if periods is not None:
            change |= periods[order][1:] != periods[order][:-1]
        same = ~change
        if not any(((c[order][1:] != c[order][:-1]) & same).any() for c in codes):
            break
        # Two label sets share a hash: renumber the combinations exactly (hashing strings'
        # indices, pandas), as slow as it is rare.
        frame = pd.DataFrame({i: c for i, c in enumerate(codes)})
        keys = frame.groupby(list(frame.columns), sort=False).ngroup().to_numpy().astype(
            np.uint64)
    starts = np.flatnonzero(np.concatenate(([n > 0], change)))
    return SeriesOrder(n, starts, order[starts], order=order,
                       edges=() if periods is None else _edges(periods[order]))


def _edges(periods: np.ndarray) -> tuple[int, ...]:
    """Where each period begins in ``periods`` (sorted), and their length."""
    return (0, *(np.flatnonzero(periods[1:] != periods[:-1]) + 1).tolist(), len(periods))
