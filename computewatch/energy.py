"""Energy-based PUE over a period, from facility-power energy counters in the store.

PUE = E_facility / E_IT over the same period (ISO/IEC 30134-2; GB 40879-2021 method RM2),
never the ratio of instantaneous powers. A meter's energy over the period is the increase of
its counter: here max - min of the readings, which is exact for a counter that did not
reset inside the period. The windowed derivation with resets, gaps and completeness is the
job of the PUE collector issue and will replace this helper's internals, not its callers.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from computewatch.store import Aggregate, Query, Store

__all__ = ["period_energy_pue"]


def period_energy_pue(store: Store, start: datetime, end: datetime,
                      by: tuple[str, ...] = ("site",)) -> pd.DataFrame:
    """Columns: the ``by`` tags, ``facility_j``, ``it_j`` and ``pue`` (NaN without IT energy)."""
    group = tuple(dict.fromkeys((*by, "meter", "scope")))
    hi = store.query(Query("facility_power", ("joules_total",), start, end, group_by=group,
                           agg=Aggregate.MAX))
    lo = store.query(Query("facility_power", ("joules_total",), start, end, group_by=group,
                           agg=Aggregate.MIN))
    cols = [*by, "facility_j", "it_j", "pue"]
    if hi.empty:
        return pd.DataFrame(columns=cols)
    keys = [*group]
    merged = hi.merge(lo, on=["time", *keys], suffixes=("_hi", "_lo"))
    merged["joules"] = merged.joules_total_hi - merged.joules_total_lo
    per = merged.pivot_table(index=list(by), columns="scope", values="joules", aggfunc="sum")
    out = pd.DataFrame(index=per.index)
    out["facility_j"] = per.get("facility")
    out["it_j"] = per.get("it")
    out["pue"] = out.facility_j / out.it_j.where(out.it_j > 0)
    return out.reset_index()[cols]
