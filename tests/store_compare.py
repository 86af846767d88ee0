"""Shared by the store backend tests: one random accelerator frame and a frame comparison.

The embedded DuckDB store is the reference semantics; a backend passes when it returns the
same windows and groups and the same values (``rtol``) for the same data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

T0 = datetime(2026, 9, 1, tzinfo=UTC)
HOURS = 6
START = T0 + timedelta(seconds=13)
"""Where the tests' windows start: on a sample, not on the hour."""


def random_accelerators(seed: int = 11, n: int = 12_000) -> pd.DataFrame:
    """Four sites, 5 devices each, unique whole-second times (so "last" is well defined);
    one site has no hub (absent label), most window boundaries have samples on them, and
    one device has a sample 1 ms before each hourly window from `START` begins."""
    rng = np.random.default_rng(seed)
    sites = np.array(["bj-1", "bj-2", "sh-1", "gy-1"])
    hubs = {"bj-1": "jjj", "bj-2": "jjj", "sh-1": "yrd", "gy-1": None}
    site = rng.choice(sites, n)
    device = np.char.add(site.astype(str), np.char.add("-", rng.integers(0, 5, n).astype(str)))
    seconds = rng.choice(HOURS * 3600, n, replace=False)
    times = pd.to_datetime(T0) + pd.to_timedelta(np.sort(seconds), unit="s")
    edges = [START + timedelta(hours=k) - timedelta(milliseconds=1) for k in range(1, HOURS)]
    site[-len(edges):], device[-len(edges):] = "bj-1", "bj-1-0"
    times = times[:-len(edges)].append(pd.DatetimeIndex(edges))
    return pd.DataFrame({
        "time": times,
        "site": site,
        "hub": [hubs[s] for s in site],
        "device": device,
        "utilization_ratio": rng.random(n),
        "power_watts": rng.random(n) * 700,
    })


def assert_same(got: pd.DataFrame, want: pd.DataFrame, keys: list[str], fields: list[str], *,
                rtol: float = 1e-9) -> None:
    """Same rows (keys, in order) and values within ``rtol``; NaN matches NaN."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want), f"{len(got)} rows, want {len(want)}"
    for k in keys:
        assert got[k].astype(str).tolist() == want[k].astype(str).tolist(), k
    for f in fields:
        np.testing.assert_allclose(got[f].to_numpy(float), want[f].to_numpy(float), rtol=rtol,
                                   atol=0, err_msg=f, equal_nan=True)
