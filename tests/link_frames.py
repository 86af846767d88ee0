"""Hand-made ``link_latency`` minutes for the latency tests: what a prober writes per minute
(probes sent, probes answered within the budget, loss, the RTT summary), laid out window by
window so a test can state what each window holds and compute its expectations by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

T0 = datetime(2026, 3, 2, tzinfo=UTC)
W = timedelta(minutes=5)
MIN = timedelta(minutes=1)
BUDGET = {"metro": 0.001, "regional": 0.005, "national": 0.020}  # the shipped policy, as RTTs
SENT = 60


def at(i: int, start: datetime = T0) -> datetime:
    """Start of window ``i``."""
    return start + i * W


def minutes(src: str, dst: str, tier: str, windows: list, *, start: datetime = T0,
            loss: float | list = 0.0, fiber: float | None = None,
            rtt_min: float | list | None = None, budget: float | None = None,
            hubs: tuple[str, str] | None = None, probe: str = "udp") -> pd.DataFrame:
    """One row per minute, five minutes per window.

    ``windows`` holds one entry per window: the probes (of 60 a minute) answered within the
    budget, as one number for all five minutes, a list of five, or None for no data.
    ``loss`` and ``rtt_min`` are one value for all windows or one entry per window (a loss
    entry may be a list of five). A minute whose probes all came back within the budget has
    p50, p95, p99 at 0.5, 0.7, 0.8 x budget; any other minute at 1.2, 1.5, 1.6 x budget.
    ``budget_seconds`` is the tier's budget unless ``budget`` says otherwise."""
    b = BUDGET[tier]
    stored_budget = b if budget is None else budget
    rows = []
    for i, spec in enumerate(windows):
        if spec is None:
            continue
        per_minute = spec if isinstance(spec, list) else [spec] * 5
        window_loss = loss[i] if isinstance(loss, list) else loss
        window_min = rtt_min[i] if isinstance(rtt_min, list) else rtt_min
        for m, within in enumerate(per_minute):
            lost = window_loss[m] if isinstance(window_loss, list) else window_loss
            scale = (0.5, 0.7, 0.8) if within >= SENT * (1 - lost) else (1.2, 1.5, 1.6)
            row = {"time": start + i * W + m * MIN, "src_site": src, "dst_site": dst,
                   "src_hub": hubs[0] if hubs else f"{src}-hub",
                   "dst_hub": hubs[1] if hubs else f"{dst}-hub", "tier": tier, "probe": probe,
                   "samples": float(SENT), "replies_within_budget": float(within),
                   "loss_ratio": lost, "budget_seconds": stored_budget,
                   "rtt_min_seconds": window_min if window_min is not None else 0.4 * b,
                   "rtt_p50_seconds": scale[0] * b, "rtt_p95_seconds": scale[1] * b,
                   "rtt_p99_seconds": scale[2] * b, "rtt_max_seconds": 2.0 * b}
            if fiber is not None:
                row["fiber_min_seconds"] = fiber
            rows.append(row)
    return pd.DataFrame(rows)
