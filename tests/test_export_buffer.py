"""The durable queue: order, restart, the bound with exact drop counts, torn and corrupt data."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from computewatch.collectors.export.buffer import HEADER_BYTES, BufferLockedError, DiskQueue


def payload(i: int) -> bytes:
    return f"load,series=s{i} value={i} {1_700_000_000_000_000_000 + i}\n".encode()


def drain(q: DiskQueue, max_samples: int = 1_000_000) -> list[bytes]:
    """Every line the queue hands out, acknowledging each batch."""
    lines = []
    while (batch := q.take(max_samples)) is not None:
        lines.extend(batch.payload.splitlines(keepends=True))
        q.ack(batch)
    return lines


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def test_records_come_out_in_order_and_acked_ones_are_not_sent_again(tmp_path):
    with DiskQueue(tmp_path, segment_bytes=200) as q:
        for i in range(10):
            assert q.append(payload(i), 1)
        assert len(segments(tmp_path)) > 2  # the records span several segments
        first = q.take(max_samples=3)
        assert first is not None and first.records == 3 and first.samples == 3
        assert first.payload == payload(0) + payload(1) + payload(2)
        q.ack(first)
        second = q.take(max_samples=2)  # taken, never acknowledged: the process "dies"
        assert second is not None and second.payload == payload(3) + payload(4)
    with DiskQueue(tmp_path, segment_bytes=200) as q:
        assert q.stats().queued_samples == 7
        assert drain(q) == [payload(i) for i in range(3, 10)]  # the unacked batch again
        assert q.stats().queued_samples == 0
    with DiskQueue(tmp_path, segment_bytes=200) as q:
        assert q.take(10) is None
        assert len(segments(tmp_path)) == 1  # only the fresh tail is left


def test_appends_after_a_restart_follow_the_old_data(tmp_path):
    with DiskQueue(tmp_path) as q:
        q.append(payload(0), 1)
    with DiskQueue(tmp_path) as q:
        q.append(payload(1), 1)
        assert drain(q) == [payload(0), payload(1)]


def test_the_bound_drops_the_oldest_segments_and_counts_samples_exactly(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    max_bytes = 4096
    q = DiskQueue(tmp_path, max_bytes=max_bytes, segment_bytes=512)
    appended = {}
    for i in range(200):
        samples = 1 + i % 7  # records carry different numbers of samples
        assert q.append(payload(i), samples)
        appended[payload(i)] = samples
        assert sum(p.stat().st_size for p in segments(tmp_path)) <= max_bytes
        assert q.stats().bytes == sum(p.stat().st_size for p in segments(tmp_path))
    got = drain(q)
    # What is left is the newest data, contiguous and in order.
    first = int(got[0].split(b"=")[1].split(b" ")[0].lstrip(b"s"))
    assert got == [payload(i) for i in range(first, 200)]
    lost = sum(n for p, n in appended.items() if p not in set(got))
    assert lost > 0
    assert q.stats().dropped == {"full": lost}
    # One line for the episode, not one per dropped segment.
    full_lines = [r for r in caplog.records if " full: " in r.getMessage()]
    assert len(full_lines) == 1
    assert "drains again" in caplog.records[-1].getMessage()
    assert f"{lost} samples were dropped" in caplog.records[-1].getMessage()
    q.close()


def test_the_batch_in_flight_is_never_dropped(tmp_path):
    q = DiskQueue(tmp_path, max_bytes=2048, segment_bytes=512)
    for i in range(3):
        q.append(payload(i), 1)
    batch = q.take(max_samples=2)
    assert batch is not None and batch.samples == 2
    for i in range(3, 100):  # an outage: the store never answers, the queue overflows
        q.append(payload(i), 1)
    s = q.stats()
    assert s.dropped["full"] > 0
    assert s.queued_samples + s.dropped["full"] + 0 == 100  # nothing unaccounted for
    q.ack(batch)  # the store finally took it
    rest = drain(q)
    assert len(rest) + 2 + q.stats().dropped["full"] == 100
    assert rest == sorted(rest, key=lambda p: int(p.split(b" ")[-1]))
    q.close()
    with DiskQueue(tmp_path, max_bytes=2048, segment_bytes=512) as again:
        assert again.take(10) is None  # the cut-off records did not come back


def test_a_torn_write_at_the_end_is_skipped_counted_and_named(tmp_path, caplog):
    with DiskQueue(tmp_path) as q:
        for i in range(5):
            q.append(payload(i), 3)
    seg = segments(tmp_path)[0]
    size = seg.stat().st_size
    with seg.open("r+b") as f:  # power lost in the middle of the last record
        f.truncate(size - 10)
    last_start = size - len(payload(4)) - HEADER_BYTES
    caplog.set_level(logging.ERROR)
    with DiskQueue(tmp_path) as q:
        s = q.stats()
        assert s.corrupt_segments == 1 and s.dropped == {"corrupt": 3}
        msg = caplog.records[-1].getMessage()
        assert seg.name in msg and f"offset {last_start}" in msg and "torn record" in msg
        assert drain(q) == [payload(i) for i in range(4)]
        q.append(payload(9), 1)  # new data goes to a new segment, after the torn one
        assert drain(q) == [payload(9)]


def test_a_bad_checksum_in_a_middle_segment_skips_one_record(tmp_path, caplog):
    with DiskQueue(tmp_path, segment_bytes=300) as q:
        for i in range(12):
            q.append(payload(i), 2)
    segs = segments(tmp_path)
    assert len(segs) >= 3
    middle = segs[1]
    # The first record of the middle segment: flip one byte of its payload.
    data = bytearray(middle.read_bytes())
    victim_line = bytes(data[HEADER_BYTES:data.index(b"\n") + 1])
    data[HEADER_BYTES + 5] ^= 0x20
    middle.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    with DiskQueue(tmp_path, segment_bytes=300) as q:
        assert q.stats().corrupt_segments == 1 and q.stats().dropped == {"corrupt": 2}
        msg = caplog.records[-1].getMessage()
        assert "bad checksum" in msg and middle.name in msg and "offset 0" in msg
        assert drain(q) == [payload(i) for i in range(12) if payload(i) != victim_line]


def test_an_unreadable_header_resumes_at_the_next_record(tmp_path, caplog):
    with DiskQueue(tmp_path) as q:
        for i in range(4):
            q.append(payload(i), 1)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    second = HEADER_BYTES + len(payload(0))
    data[second:second + HEADER_BYTES] = b"\xff" * HEADER_BYTES  # the header is garbage
    seg.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    with DiskQueue(tmp_path) as q:
        assert q.stats().corrupt_segments == 1
        assert "unreadable bytes" in caplog.records[-1].getMessage()
        assert f"offset {second}" in caplog.records[-1].getMessage()
        assert drain(q) == [payload(0), payload(2), payload(3)]


def test_a_broken_cursor_sends_everything_again_and_says_so(tmp_path, caplog):
    with DiskQueue(tmp_path) as q:
        for i in range(3):
            q.append(payload(i), 1)
        batch = q.take(1)
        assert batch is not None
        q.ack(batch)
    (tmp_path / "cursor").write_bytes(b"garbage")
    caplog.set_level(logging.WARNING)
    with DiskQueue(tmp_path) as q:
        assert "cursor file" in caplog.records[-1].getMessage()
        assert drain(q) == [payload(i) for i in range(3)]


def test_one_directory_one_queue(tmp_path):
    with DiskQueue(tmp_path), pytest.raises(BufferLockedError, match=str(tmp_path)):
        DiskQueue(tmp_path)


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_every_fsync_policy_keeps_what_was_appended(tmp_path, policy):
    with DiskQueue(tmp_path, fsync=policy, fsync_interval_s=0.01) as q:
        for i in range(20):
            q.append(payload(i), 1)
            q.sync_if_due()
    with DiskQueue(tmp_path) as q:
        assert drain(q) == [payload(i) for i in range(20)]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="fsync 'sometimes'"):
        DiskQueue("/nonexistent", fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too small"):
        DiskQueue("/nonexistent", max_bytes=10)


WRITER = textwrap.dedent("""
    import sys
    from computewatch.collectors.export.buffer import DiskQueue
    q = DiskQueue(sys.argv[1], fsync=sys.argv[2])
    i = 0
    while True:
        q.append(f"load value={i} {i}\\n".encode() * 50, 50)
        print(i, flush=True)  # only after append returned
        i += 1
""")


@pytest.mark.parametrize("policy", ["always", "never"])
def test_sigkill_loses_nothing_that_was_appended(tmp_path, policy):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), policy],
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None
    acknowledged = -1
    deadline = time.monotonic() + 20
    while acknowledged < 300 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert acknowledged >= 300, "the writer never got going"
    with DiskQueue(tmp_path) as q:
        lines = drain(q)
        # Linux may cut a write() short when SIGKILL arrives mid-copy: at most the record
        # in flight (never acknowledged) is torn, skipped and counted; nothing else.
        stats = q.stats()
        assert stats.corrupt_segments <= 1 and stats.dropped.get("corrupt", 0) <= 50
    values = [int(line.split(b"=")[1].split(b" ")[0]) for line in lines[::50]]
    assert values == list(range(len(values)))  # in order, nothing missing in between
    assert len(values) - 1 >= acknowledged  # every append that returned is there


def test_data_after_a_fully_drained_restart_is_not_taken_for_acknowledged(tmp_path):
    with DiskQueue(tmp_path) as q:
        q.append(payload(0), 1)
        assert drain(q) == [payload(0)]  # the cursor now points into segment 1
    with DiskQueue(tmp_path) as q:  # nothing left: segment 1 is gone
        q.append(payload(1), 1)  # the store is down: never acknowledged
    with DiskQueue(tmp_path) as q:
        assert drain(q) == [payload(1)]


def test_a_corrupt_length_in_the_middle_does_not_take_the_rest_of_the_segment(tmp_path, caplog):
    with DiskQueue(tmp_path) as q:
        for i in range(5):
            q.append(payload(i), 4)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    second = HEADER_BYTES + len(payload(0))
    data[second + 4:second + 8] = (10**6).to_bytes(4, "little")  # length far past the end
    seg.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    with DiskQueue(tmp_path) as q:
        assert q.stats().dropped == {"corrupt": 4} and q.stats().corrupt_segments == 1
        assert "bad record length" in caplog.records[-1].getMessage()
        assert drain(q) == [payload(i) for i in (0, 2, 3, 4)]


def test_a_corrupt_header_counts_the_samples_it_loses(tmp_path, caplog):
    """Issue 15: a record whose header is garbage was skipped with 0 samples counted."""
    with DiskQueue(tmp_path) as q:
        for i in range(4):
            q.append(payload(i), 50)  # payloads of one size: records of one size
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    record = HEADER_BYTES + len(payload(0))
    data[record:record + HEADER_BYTES] = b"\xff" * HEADER_BYTES  # the second header is garbage
    seg.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    with DiskQueue(tmp_path) as q:
        # The skipped stretch is one record long; the valid records carry 50 samples each.
        assert q.stats().dropped == {"corrupt": 50}
        assert q.stats().corrupt_unknown_bytes == 0
        msg = caplog.records[-1].getMessage()
        assert f"{record} bytes skipped" in msg and "about 50 samples lost" in msg
        assert "estimated" in msg
        assert drain(q) == [payload(0), payload(2), payload(3)]


def test_a_corrupt_header_with_nothing_to_estimate_from_counts_unknown_bytes(tmp_path, caplog):
    with DiskQueue(tmp_path) as q:
        q.append(payload(0), 200)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[:4] = b"XXXX"  # the only record's magic
    seg.write_bytes(bytes(data))
    caplog.set_level(logging.ERROR)
    with DiskQueue(tmp_path) as q:
        s = q.stats()
        assert s.corrupt_segments == 1 and s.dropped.get("corrupt", 0) == 0
        assert s.corrupt_unknown_bytes == len(data)
        msg = caplog.records[-1].getMessage()
        assert f"{len(data)} bytes skipped" in msg and "unknown" in msg
        assert drain(q) == []
