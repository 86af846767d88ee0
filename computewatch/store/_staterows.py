"""Rollup states in pandas, for stores whose server cannot compute them (InfluxDB).

The same states as the embedded store's SQL (`computewatch.store._rollups`), so rollups
written from here answer as the embedded store's do: per key (a series and hour, or a group
and window) and field, ``n`` (samples), ``sum``, ``min``, ``max``, ``last`` (the value at the
latest ``last_time``) and ``last_time``; and the sketch of a latency field, ``n`` samples per
bucket ``k`` (`computewatch.store._rollups.bucket_of`). Frames here are long: the key
columns, `FIELD` and the `computewatch.store._rollups.STATES` columns (state rows), or the
key columns, `FIELD`, `K` and ``n`` (sketch rows). Raw samples come in as the key columns,
`FIELD` and `VALUE`, with their sample time in ``time``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from computewatch.samples import TIME
from computewatch.store import _rollups as ru

__all__ = ["FIELD", "VALUE", "K", "hour_sketches", "hour_states", "merge_sketches",
           "merge_states", "sample_states", "sketch_quantile"]

FIELD, VALUE, K = "field", "value", "k"


def sample_states(samples: pd.DataFrame) -> pd.DataFrame:
    """Raw samples as state rows of one sample each (a missing value is no sample), so
    samples and rollup rows merge alike."""
    samples = samples[samples[VALUE].notna()]
    v = samples[VALUE].astype("float64")
    out = samples.drop(columns=[VALUE])
    return out.assign(n=np.ones(len(out), dtype=np.int64), sum=v, min=v, max=v, last=v,
                      last_time=samples[TIME])


def merge_states(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """State rows merged per ``keys`` and field: ``n`` and ``sum`` add up, ``min`` and
    ``max`` of theirs, ``last`` the one with the latest ``last_time`` (as the embedded
    store's ``arg_max``), ``last_time`` the latest."""
    by = [*keys, FIELD]
    if rows.empty:  # the columns' types kept, for the frames it is merged with
        return rows.reindex(columns=[*by, *ru.STATES])
    ordered = rows.sort_values("last_time", kind="stable", na_position="first")
    g = ordered.groupby(by, sort=True, dropna=False)
    out = g.agg(n=("n", "sum"), sum=("sum", "sum"), min=("min", "min"), max=("max", "max"),
                last=("last", "last"), last_time=("last_time", "max"))
    out["n"] = out["n"].astype("int64")
    return out.reset_index()


def hour_states(samples: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Per series (``labels``), UTC hour (in ``time``) and field, the states of raw samples."""
    rows = sample_states(samples)
    rows[TIME] = rows[TIME].dt.floor("h")
    return merge_states(rows, [TIME, *labels])


def hour_sketches(samples: pd.DataFrame, labels: Sequence[str],
                  fields: Sequence[str]) -> pd.DataFrame:
    """Per series, UTC hour and field of ``fields``, the samples counted per sketch bucket."""
    rows = samples[samples[FIELD].isin(list(fields)) & samples[VALUE].notna()]
    rows = rows.assign(**{TIME: rows[TIME].dt.floor("h"),
                          K: ru.bucket_of(rows[VALUE].to_numpy(dtype="float64"))})
    return merge_sketches(rows.assign(n=1), [TIME, *labels])


def merge_sketches(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Sketch rows summed per ``keys``, field and bucket."""
    by = [*keys, FIELD, K]
    if rows.empty:
        return rows.reindex(columns=[*by, "n"]).astype({K: "int64", "n": "int64"})
    return rows.groupby(by, sort=True, dropna=False)["n"].sum().astype("int64").reset_index()


def sketch_quantile(rows: pd.DataFrame, keys: Sequence[str], phi: float) -> pd.DataFrame:
    """The ``phi`` quantile per ``keys`` and field of sketch rows: the rank ``phi (N - 1)``
    interpolated between the values of the buckets holding its floor and ceiling, as the
    embedded store's SQL over its sketches does (``quantile_cont``'s interpolation)."""
    by = [*keys, FIELD]
    rows = merge_sketches(rows, keys).sort_values([*by, K], ignore_index=True)
    if rows.empty:
        return rows[by].assign(**{VALUE: pd.Series([], dtype="float64")})
    g = rows.groupby(by, sort=False, dropna=False)["n"]
    cum, tot = g.cumsum(), g.transform("sum")
    rank = phi * (tot - 1)
    lo = rows[cum > np.floor(rank)].groupby(by, sort=False, dropna=False)[K].min()
    hi = rows[cum > np.ceil(rank)].groupby(by, sort=False, dropna=False)[K].min()
    frac = (rank - np.floor(rank)).groupby([rows[c] for c in by], sort=False,
                                           dropna=False).first()
    v_lo = pd.Series(ru.value_of(lo.to_numpy()), index=lo.index)
    v_hi = pd.Series(ru.value_of(hi.reindex(lo.index).to_numpy()), index=lo.index)
    out = v_lo + frac.reindex(lo.index) * (v_hi - v_lo)
    return out.rename(VALUE).reset_index()
