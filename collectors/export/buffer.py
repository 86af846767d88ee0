"""The durable on-disk queue behind the remote-write exporter: data survives a store outage,
an agent crash and a restart, within a bound on bytes.

Layout of the queue's directory (one directory per exporter; a lock file keeps a second
process out)::

    00000000000000000007.seg   segment files, appended in order, named by a rising number
    00000000000000000008.seg   (a new segment is started at ``segment_bytes`` and on open)
    cursor                     where the acknowledged data ends: (segment, offset), checksummed
    lock                       flock()ed while a queue has the directory open

A segment is a run of records, each ``magic "CWQ1" | payload length u32 | samples u32 |
crc32 u32 | payload`` (little-endian; the CRC covers length, samples and payload). A payload
is one line-protocol body; ``samples`` is how many samples it carries, so drops are counted
in samples, exactly.

Delivery is at least once, in order. The sender takes the oldest records (`take`), writes
them, and `ack` moves the cursor past them and deletes segments that are wholly acknowledged.
The cursor is rewritten in place after every acknowledgement, so acknowledged data is not sent
again after a restart. A batch that was written but not yet acknowledged when the process died
is sent again (a duplicate: VictoriaMetrics keeps both copies unless started with
``-dedup.minScrapeInterval``; InfluxDB overwrites the identical point).

fsync policy (``fsync``): ``"always"`` (the default) fdatasyncs the segment after every
append and the directory after a segment is created, so an append that returned survives a
power loss; ``"interval"`` syncs at most every ``fsync_interval_s`` (a power loss can lose
that much); ``"never"`` leaves it to the kernel. Whatever the policy, a process killed with
SIGKILL loses nothing that was appended: the bytes are in the kernel once ``append`` returns;
only the batch the agent had in memory and not yet appended is lost. The cursor is never
fsynced: losing its last update to a power cut only means sending some data twice.

Bound: the segments' bytes stay within ``max_bytes`` (plus at most the batch in flight).
When an append would cross it, the oldest segments are dropped whole and their unsent samples
counted as ``full``; the batch in flight is never dropped (its segment is cut just after it).
The first drop of an episode is logged, and the end of the episode (the queue back under half
the bound) with the episode's total; drops in between are only counted.

Recovery on open: every record after the cursor is read and its checksum checked. A torn
write (a record cut short at the end of a segment) or a bad checksum is skipped with a log
line naming the segment file and offset, counted (``corrupt_segments``, and the record's
samples as its header states them, as ``corrupt``), and the scan resumes at the next valid
record, so the rest drains in order. Appends then go to a new segment. Where the header
itself is unreadable (its magic, or a sample count larger than its payload), the samples lost
are estimated from the bytes skipped (up to the next valid record) at the samples per byte of
the segment's valid records (or of every valid record found, if the segment has none), and
the log line says it is an estimate; with no valid record anywhere to estimate from, the bytes
are counted as ``corrupt_unknown_bytes`` and the log line says the samples are unknown.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "Batch",
    "BufferLockedError",
    "DiskQueue",
    "FsyncPolicy",
    "QueueStats",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 2**20
"""512 MiB. The queue holds line protocol as sent (before gzip): about 137 bytes a sample for
the simulated node's accelerators (many labels, 2.2 fields a line), 45 for a frame with six
fields a line. A node writing 2,000 samples/s fills at most 0.27 MB/s, so the default holds
half an hour of that (a 60 s outage uses 3%), and 2.4 days of an 8-accelerator node that
sends about 19 samples/s (16.5 per accelerator and its own metrics every 15 s)."""

DEFAULT_SEGMENT_BYTES = 8 * 2**20
"""8 MiB: drops at the bound are by whole segments, 1/64 of the default bound at a time."""

FsyncPolicy = Literal["always", "interval", "never"]

MAGIC = b"CWQ1"
_HEADER = struct.Struct("<4sIII")  # magic, payload length, samples, crc32
HEADER_BYTES = _HEADER.size
_CURSOR = struct.Struct("<4sQQI")  # magic, segment, offset, crc32
_CURSOR_MAGIC = b"CWC1"
_SUFFIX = ".seg"


def _crc(length: int, samples: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<II", length, samples)))


def encode_record(payload: bytes, samples: int) -> bytes:
    """One framed record: header (magic, length, samples, checksum) then the payload."""
    return _HEADER.pack(MAGIC, len(payload), samples, _crc(len(payload), samples, payload)) \
        + payload


class BufferLockedError(OSError):
    """Another process (or queue) has the buffer directory open."""


@dataclass(frozen=True, slots=True)
class _Record:
    segment: int
    start: int
    end: int
    samples: int
    queued_at: float  # monotonic; 0 for records found on disk at open


@dataclass(frozen=True, slots=True)
class Batch:
    """The oldest records, taken for one write: their payloads joined, and what they hold."""

    payload: bytes
    samples: int
    records: int
    corrupt_samples: int = 0


@dataclass(frozen=True, slots=True)
class QueueStats:
    bytes: int
    limit_bytes: int
    queued_samples: int
    queued_records: int
    dropped: dict[str, int] = field(default_factory=dict)
    corrupt_segments: int = 0
    corrupt_unknown_bytes: int = 0


def _segment_name(seg: int) -> str:
    return f"{seg:020d}{_SUFFIX}"


def _samples_per_byte(records: Iterable[_Record]) -> float | None:
    """Samples per byte of these records (headers included); None if there are none."""
    nbytes = samples = 0
    for r in records:
        nbytes += r.end - r.start
        samples += r.samples
    return samples / nbytes if nbytes else None


class DiskQueue:
    """Append-only segment files with a persisted read cursor; appenders take turns, and one
    sender takes batches."""

    def __init__(self, directory: Path | str, max_bytes: int = DEFAULT_MAX_BYTES, *,
                 segment_bytes: int | None = None, fsync: FsyncPolicy = "always",
                 fsync_interval_s: float = 1.0, name: str = "") -> None:
        if max_bytes < 4 * (HEADER_BYTES + 1):
            raise ValueError(f"buffer max_bytes {max_bytes} is too small (at least "
                             f"{4 * (HEADER_BYTES + 1)})")
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"buffer fsync {fsync!r}: one of always, interval, never")
        self.directory = Path(directory)
        self.name = name or str(self.directory)
        self.max_bytes = int(max_bytes)
        self.segment_bytes = min(segment_bytes or DEFAULT_SEGMENT_BYTES, self.max_bytes // 4)
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._append_lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._records: deque[_Record] = deque()
        self._inflight = 0
        self._inflight_samples = 0
        self._wakeups = 0
        self._segments: dict[int, int] = {}  # id -> bytes on disk, oldest first
        self._read_fds: dict[int, int] = {}
        self._bytes = 0
        self._samples = 0
        self.dropped: Counter[str] = Counter()
        self.corrupt_segments = 0
        self.corrupt_unknown_bytes = 0
        self._in_episode = False
        self._episode_drops = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise BufferLockedError(f"buffer {self.directory} is in use by another process "
                                    "(give each agent and exporter its own buffer_dir)") from None
        self._cursor_fd = os.open(self.directory / "cursor", os.O_RDWR | os.O_CREAT, 0o644)
        cursor_segment = self._recover()
        # Past the cursor's segment even when every segment is gone: whatever lies at or
        # before the cursor is taken for acknowledged at the next open.
        self._tail = max(*self._segments, cursor_segment, 0) + 1
        self._tail_fd = self._open_segment(self._tail)
        self._make_room(0)  # a smaller bound than the data found on disk

    # -- recovery -------------------------------------------------------------------------
    def _read_cursor(self) -> tuple[int, int]:
        raw = os.pread(self._cursor_fd, _CURSOR.size, 0)
        if not raw:
            return 0, 0
        if len(raw) == _CURSOR.size:
            magic, seg, off, crc = _CURSOR.unpack(raw)
            if magic == _CURSOR_MAGIC and crc == zlib.crc32(raw[:-4]):
                return seg, off
        log.warning("buffer %s: cursor file %s unreadable (%d bytes); sending every segment "
                    "from its start: data sent before may be sent again", self.name,
                    self.directory / "cursor", len(raw))
        return 0, 0

    def _write_cursor(self, seg: int, off: int) -> None:
        raw = _CURSOR.pack(_CURSOR_MAGIC, seg, off, 0)[:-4]
        os.pwrite(self._cursor_fd, raw + struct.pack("<I", zlib.crc32(raw)), 0)

    def _recover(self) -> int:
        """Index the unacknowledged records on disk; returns the cursor's segment."""
        cur_seg, cur_off = self._read_cursor()
        found = sorted(int(p.name[: -len(_SUFFIX)]) for p in self.directory.glob("*" + _SUFFIX)
                       if p.name[: -len(_SUFFIX)].isdigit())
        for seg in found:
            path = self.directory / _segment_name(seg)
            if seg < cur_seg:  # acknowledged; the process died before deleting it
                path.unlink(missing_ok=True)
                continue
            data = path.read_bytes()
            start = cur_off if seg == cur_seg else 0
            found_records = list(self._scan(seg, data, min(start, len(data))))
            if not found_records:  # acknowledged, or nothing readable left in it
                path.unlink()
                continue
            self._segments[seg] = len(data)
            self._bytes += len(data)
            self._records.extend(found_records)
            self._samples += sum(r.samples for r in found_records)
        return cur_seg

    def _scan(self, seg: int, data: bytes, pos: int) -> list[_Record]:
        """The valid records of one segment from ``pos``; bad stretches logged and counted."""
        view = memoryview(data)
        records: list[_Record] = []
        bad: list[tuple[int, str, int, int | None]] = []
        while pos < len(data):
            problem, skip_to, lost = self._check(view, pos)
            if problem is None:
                records.append(_Record(seg, pos, skip_to, lost or 0, 0.0))
            else:
                bad.append((pos, problem, skip_to, lost))
            pos = skip_to
        if bad:
            self.corrupt_segments += 1
            rate = _samples_per_byte(records) or _samples_per_byte(self._records)
            for start, problem, end, lost in bad:
                self._count_corrupt(seg, start, problem, end - start, lost, rate)
        return records

    def _count_corrupt(self, seg: int, pos: int, problem: str, nbytes: int, lost: int | None,
                       rate: float | None) -> None:
        """Count and log one skipped stretch: its samples as stated, estimated, or unknown."""
        if lost is not None:
            what = f"{lost} samples lost" if lost else f"{nbytes} bytes skipped"
        elif nbytes < HEADER_BYTES:  # the start of a header, cut short: no record
            lost, what = 0, f"{nbytes} bytes skipped (less than a record header)"
        elif rate is not None:
            lost = max(1, round(nbytes * rate))
            what = (f"{nbytes} bytes skipped, about {lost} samples lost (estimated from the "
                    f"valid records: {rate * 1000:.1f} samples per kB)")
        else:
            lost = 0
            self.corrupt_unknown_bytes += nbytes
            what = (f"{nbytes} bytes skipped, samples lost unknown (no valid record to "
                    "estimate from; counted as corrupt_unknown_bytes)")
        self.dropped["corrupt"] += lost
        log.error("buffer %s: %s at offset %d of %s: %s; skipped, the rest drains",
                  self.name, problem, pos, self.directory / _segment_name(seg), what)

    @staticmethod
    def _check(view: memoryview, pos: int) -> tuple[str | None, int, int | None]:
        """(problem or None, where the next record starts, its samples: lost if a problem;
        None when the header is unreadable and its samples unknown)."""
        left = len(view) - pos
        if left < HEADER_BYTES:
            return f"torn record header ({left} of {HEADER_BYTES} bytes)", len(view), None
        magic, length, samples, crc = _HEADER.unpack_from(view, pos)
        end = pos + HEADER_BYTES + length
        if magic == MAGIC and end <= len(view) and \
                _crc(length, samples, view[pos + HEADER_BYTES:end]) == crc:
            return None, end, samples
        nxt = bytes(view[pos + 1:]).find(MAGIC)  # where a record may start again
        nxt = len(view) if nxt < 0 else pos + 1 + nxt
        if magic != MAGIC:
            return "unreadable bytes (no valid record header)", nxt, None
        stated = samples if samples <= length else None  # a sample takes a byte at least
        if end <= len(view):
            # The length may be what is corrupt: trust it only if a record follows it.
            if end == len(view) or bytes(view[end:end + 4]) == MAGIC:
                return f"bad checksum (record of {length} bytes, {samples} samples)", end, \
                    stated
        elif nxt == len(view):  # nothing after it: the last write was cut short
            return (f"torn record ({left} of {HEADER_BYTES + length} bytes, {samples} "
                    "samples)", len(view), stated)
        return f"bad record length ({length} bytes, {samples} samples)", nxt, stated

    # -- appending ------------------------------------------------------------------------
    def _open_segment(self, seg: int) -> int:
        fd = os.open(self.directory / _segment_name(seg),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._segments.setdefault(seg, 0)
        if self.fsync == "always":
            self._sync_dir()
        return fd

    def _sync_dir(self) -> None:
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _roll(self) -> None:
        """Seal the tail and start the next segment."""
        if self.fsync != "never":
            self._sync()
        os.close(self._tail_fd)
        sealed = self._tail
        self._tail += 1
        self._tail_fd = self._open_segment(self._tail)
        if not (self._records and self._records[-1].segment == sealed):
            self._delete_segment(sealed)  # wholly acknowledged already

    def append(self, payload: bytes, samples: int) -> bool:
        """Append one record; False when it alone exceeds the bound (counted as ``full``)."""
        record = encode_record(payload, samples)
        with self._append_lock:  # appenders in turn; the sender only waits for the write
            return self._append(record, samples)

    def _append(self, record: bytes, samples: int) -> bool:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"buffer {self.name} is closed")
            if len(record) > self.max_bytes:
                self._count_drop(samples, f"a record of {len(record)} bytes is larger than "
                                          f"the bound ({self.max_bytes} bytes)")
                return False
            size = self._segments[self._tail]
            if size and size + len(record) > self.segment_bytes:
                self._roll()
            self._make_room(len(record))
            size = self._segments[self._tail]  # making room may have started a new tail
            try:
                view = memoryview(record)
                while view:
                    view = view[os.write(self._tail_fd, view):]
            except OSError:
                os.ftruncate(self._tail_fd, size)  # no torn record left behind
                raise
            self._records.append(_Record(self._tail, size, size + len(record), samples,
                                         time.monotonic()))
            self._segments[self._tail] = size + len(record)
            self._bytes += len(record)
            self._samples += samples
            self._dirty = self.fsync != "always"
            if self.fsync == "interval":
                self._sync_if_due()
            self._changed.notify_all()
            fd = self._tail_fd
        if self.fsync == "always":  # outside the lock: the sender may take and send meanwhile
            os.fdatasync(fd)
        return True

    def _sync(self) -> None:
        if self._dirty:
            os.fdatasync(self._tail_fd)
            self._dirty = False
            self._last_sync = time.monotonic()

    def _sync_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._last_sync >= self.fsync_interval_s:
            self._sync()

    def sync_if_due(self) -> None:
        """For the ``interval`` policy: called by the sender so a quiet queue gets synced."""
        with self._lock:
            if not self._closed and self.fsync == "interval":
                self._sync_if_due()

    # -- the bound ------------------------------------------------------------------------
    def _make_room(self, need: int) -> None:
        for seg in list(self._segments):
            if self._bytes + need <= self.max_bytes:
                break
            if seg == self._tail:
                if not self._segments[seg]:
                    break
                self._roll()
                if seg not in self._segments:
                    continue  # it held nothing unsent
            inflight = [r for r in islice(self._records, self._inflight) if r.segment == seg]
            keep = inflight[-1].end if inflight else 0
            lost = self._pop_after_inflight(seg)
            if keep:
                if keep == self._segments[seg]:
                    continue  # nothing but the batch in flight: it is never dropped
                os.truncate(self.directory / _segment_name(seg), keep)
                self._bytes -= self._segments[seg] - keep
                self._segments[seg] = keep
            else:
                self._delete_segment(seg)
            self._count_drop(lost, f"the bound of {self.max_bytes} bytes was reached; dropped "
                                   f"the oldest segment {_segment_name(seg)}")

    def _pop_after_inflight(self, seg: int) -> int:
        """Remove the records of ``seg`` that are not in flight (they follow the batch in
        flight, the older segments having been dropped already); returns their samples."""
        head = [self._records.popleft() for _ in range(self._inflight)]
        lost = 0
        while self._records and self._records[0].segment == seg:
            lost += self._records.popleft().samples
        self._records.extendleft(reversed(head))
        self._samples -= lost
        return lost

    def _count_drop(self, samples: int, why: str) -> None:
        self.dropped["full"] += samples
        if not self._in_episode:
            log.warning("buffer %s full: %s (%d samples); further drops are only counted "
                        "(agent_buffer_dropped_samples_total{reason=\"full\"}) until it drains",
                        self.name, why, samples)
            self._in_episode = True
        self._episode_drops += samples

    def _end_episode(self) -> None:
        if self._in_episode and self._bytes <= self.max_bytes // 2:
            log.warning("buffer %s drains again: %d samples were dropped while it was full",
                        self.name, self._episode_drops)
            self._in_episode, self._episode_drops = False, 0

    def _delete_segment(self, seg: int) -> None:
        fd = self._read_fds.pop(seg, None)
        if fd is not None:
            os.close(fd)
        (self.directory / _segment_name(seg)).unlink(missing_ok=True)
        self._bytes -= self._segments.pop(seg, 0)

    # -- sending --------------------------------------------------------------------------
    def take(self, max_samples: int, max_records: int | None = None) -> Batch | None:
        """Mark the oldest records in flight and read them (up to ``max_samples``, at least
        one record); None when the queue is empty. One batch may be in flight at a time."""
        with self._lock:
            if self._closed or not self._records:
                return None
            if self._inflight:
                raise RuntimeError(f"buffer {self.name}: a batch is already in flight")
            picked: list[_Record] = []
            n = 0
            for r in self._records:
                if picked and (n + r.samples > max_samples or
                               (max_records is not None and len(picked) >= max_records)):
                    break
                picked.append(r)
                n += r.samples
            self._inflight, self._inflight_samples = len(picked), n
            fds = {r.segment: self._read_fd(r.segment) for r in picked}
        parts, samples, corrupt = [], 0, 0
        for r in picked:  # in-flight records are never cut or deleted: read without the lock
            raw = os.pread(fds[r.segment], r.end - r.start, r.start)
            problem, _, _ = self._check(memoryview(raw), 0)
            if problem is None and len(raw) == r.end - r.start:
                parts.append(raw[HEADER_BYTES:])
                samples += r.samples
            else:
                log.error("buffer %s: %s at offset %d of %s (changed on disk since it was "
                          "written); skipped", self.name, problem or "short read", r.start,
                          self.directory / _segment_name(r.segment))
                corrupt += r.samples
        if corrupt:
            with self._lock:
                self.dropped["corrupt"] += corrupt
                self.corrupt_segments += 1
        return Batch(b"".join(parts), samples, len(picked), corrupt)

    def _read_fd(self, seg: int) -> int:
        fd = self._read_fds.get(seg)
        if fd is None:
            fd = self._read_fds[seg] = os.open(self.directory / _segment_name(seg), os.O_RDONLY)
        return fd

    def oldest_age(self) -> float:
        """Seconds since the oldest record not in flight was appended (inf if from disk)."""
        with self._lock:
            if len(self._records) <= self._inflight:
                return 0.0
            t = self._records[self._inflight].queued_at
            return float("inf") if t == 0.0 else time.monotonic() - t

    def pending_samples(self) -> int:
        """Samples queued and not in flight."""
        with self._lock:
            return self._samples - self._inflight_samples

    def ack(self, batch: Batch, *, rejected: bool = False) -> None:
        """The batch in flight is done (stored, or refused for good and counted as
        ``rejected``): move the cursor past it and delete the segments it finished."""
        with self._lock:
            if self._closed or self._inflight != batch.records:
                return
            done = [self._records.popleft() for _ in range(self._inflight)]
            self._inflight = self._inflight_samples = 0
            self._samples -= sum(r.samples for r in done)
            if rejected:
                self.dropped["rejected"] += batch.samples
            last = done[-1]
            self._write_cursor(last.segment, last.end)
            first_open = self._records[0].segment if self._records else self._tail
            for seg in [s for s in self._segments if s < first_open and s != self._tail]:
                self._delete_segment(seg)
            self._end_episode()
            self._changed.notify_all()

    def release(self, batch: Batch) -> None:
        """Put the batch in flight back, unsent (the sender will take it again)."""
        with self._lock:
            if self._inflight == batch.records:
                self._inflight = self._inflight_samples = 0
                self._changed.notify_all()

    def wait(self, timeout_s: float, min_samples: int = 1) -> bool:
        """Wait until at least ``min_samples`` (at least one record) wait to be taken."""
        return self._wait_for(timeout_s, lambda: len(self._records) > self._inflight and
                              self._samples - self._inflight_samples >= min_samples)

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until everything appended has been acknowledged."""
        return self._wait_for(timeout_s, lambda: not self._records)

    def _wait_for(self, timeout_s: float, ready: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            woken = self._wakeups
            while True:
                ok = ready()
                left = deadline - time.monotonic()
                if ok or self._closed or left <= 0 or self._wakeups != woken:
                    return ok
                self._changed.wait(left)

    def wake(self) -> None:
        """End every wait now (the sender is being stopped or hurried)."""
        with self._changed:
            self._wakeups += 1
            self._changed.notify_all()

    # -- state ----------------------------------------------------------------------------
    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(self._bytes, self.max_bytes, self._samples, len(self._records),
                              dict(self.dropped), self.corrupt_segments,
                              self.corrupt_unknown_bytes)

    def close(self) -> None:
        with self._append_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            if self.fsync != "never":
                self._sync()
            for fd in (self._tail_fd, self._cursor_fd, *self._read_fds.values()):
                os.close(fd)
            self._read_fds.clear()
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._changed.notify_all()

    def __enter__(self) -> DiskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats()
        return (f"<DiskQueue {self.directory} {s.queued_samples} samples in {s.queued_records} "
                f"records, {s.bytes}/{s.limit_bytes} bytes>")
