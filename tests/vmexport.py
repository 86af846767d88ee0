"""Reading back what a real VictoriaMetrics stored: every raw sample, through /api/v1/export."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request


def exported(url: str, match: str) -> list[dict]:
    """Every series matching ``match``, with all its raw values and timestamps (ms)."""
    urllib.request.urlopen(url + "/internal/force_flush", timeout=10).read()
    q = urllib.parse.urlencode({"match[]": match, "start": "0"})
    with urllib.request.urlopen(f"{url}/api/v1/export?{q}", timeout=60) as r:
        return [json.loads(line) for line in r.read().splitlines() if line.strip()]


def sample_count(url: str, match: str) -> int:
    return sum(len(s["values"]) for s in exported(url, match))


def wait_for_count(url: str, match: str, want: int, timeout_s: float = 30.0) -> int:
    """Poll until ``want`` raw samples match (or the time is up); returns the last count."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = sample_count(url, match)
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.2)
