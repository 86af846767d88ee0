"""The bridge under load while slow clients hold connections: nothing accepted is lost.

A shorter run of `bench/bench_bridge.py` (which does 1,000 posts a second for 60 s): the
bridge process, a sink process and a load process on loopback; 100 slow clients drip request
heads one byte a second and are cut off at the 2 s header deadline, again and again, while
the webhooks keep being accepted; every accepted notification is delivered (the sink counts
it) or dead-lettered, and every cut-off is counted.
"""

from __future__ import annotations

import pytest

from bench.bench_bridge import run_load

pytestmark = pytest.mark.realtime  # three processes for about 10 s


def test_every_accepted_notification_is_delivered_or_dead_lettered_under_slow_clients(
        tmp_path):
    r = run_load(5.0, 300.0, 100, header_timeout="2s", work=tmp_path)
    assert r["sent"] == 1500
    assert r["statuses"] == {200: 1500}, r["statuses"]  # the slow clients took nothing
    assert r["accepted"] == 1500
    assert r["delivered"] + r["dead_lettered"] == r["accepted"] and r["queued"] == 0
    assert r["sink"] == r["delivered"]
    assert r["cut"] >= 100  # every slow client cut off at least once in 5 s
    assert r["rejected"].get("header_timeout", 0) >= r["cut"]
