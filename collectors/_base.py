"""What every collector shares: the protocol, the outcome codes and the errors it raises.

A collector is any object with a ``name`` and ``collect() -> Iterable[Sample]``. It reaches its
device through one injected seam (the NVML module, a ``run(argv, timeout)`` callable, an HTTP
session), so tests and the simulator swap the driver, never the collector.

A collector signals a whole-run failure by raising: `DriverAbsent` when the driver or device
is not there (the agent logs it once and keeps the other collectors going), `NoData` when it
reached its devices but read nothing (a table with a header and no rows; configured meters
all dead, refused or not measuring: the collector is down, not "up with nothing"),
`CollectorError` for anything else. Partial failures (one GPU lost, one meter of five dead,
one unparseable line) are not raised: the collector reports what it could and counts the rest
as samples (``accelerator.health`` 0, ``agent.parse_errors_total``).

An error may carry ``samples``: what the collector can still say about itself (its error
counters); the agent exports them with the run's result code. A collector with cumulative
counters of its own (parse errors per source) may instead report them through an optional
``self_samples(time) -> list[Sample]`` method: the agent adds them to its own metrics every
cycle, zeros included, so they are there from the first scrape and stay there while the
device cannot be read.

A collector that reads devices may also take a `DeviceLabels` hook through an optional
``set_device_labels(hook)`` method: it passes each device's labels through the hook where it
builds them, and gives every series of the device what the hook returns. The agent installs
workload attribution's there, so a held device's samples are made with their pod's labels
once instead of being copied with them after every run.

`LabelSets` keeps a collector's label tuples from one run to the next, so that a series
carries the same tuple object every cycle while its labels stay the same.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from enum import IntEnum
from typing import Protocol, runtime_checkable

from computewatch.samples import Sample

__all__ = ["Collector", "CollectorError", "DeviceLabels", "DriverAbsent", "LabelSets", "NoData",
           "ParseError", "ResultCode", "as_read", "placement_labels", "readings_or_no_data"]

DeviceLabels = Callable[[dict[str, str]], dict[str, str]]
"""A device's labels -> the labels its series carry: the same dict when nothing is added, else
a new one (the hook never changes the dict it is given)."""


def as_read(labels: dict[str, str]) -> dict[str, str]:
    """The `DeviceLabels` hook of a collector no agent gave one: the labels as read."""
    return labels


Labels = tuple[tuple[str, str], ...]


class LabelSets:
    """A collector's label tuples (sorted, as `Sample` holds them), kept across its runs.

    A series whose labels are unchanged gets last cycle's tuple object, not an equal new
    one: the agent's catalogue check and the relabel step look a series up by its tuple,
    and an identical key is found without comparing 13 label pairs; nor are a cycle's
    hundreds of fresh pairs made and collected. A changed label (a new pod holds the
    device, a new driver, a MIG layout) is seen by comparing the labels given with the
    ones kept, so the tuple is made again. ``limit`` entries at most (processes' pids make
    new label sets for as long as a node runs): past it they start again."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._sets: dict[Hashable, tuple[dict[str, str], Labels]] = {}
        self._plus: dict[tuple[int, Labels], tuple[Labels, Labels]] = {}

    def of(self, key: Hashable, labels: Mapping[str, str]) -> Labels:
        """``labels`` sorted; the tuple kept under ``key`` (a device, say) while they are
        the same labels."""
        hit = self._sets.get(key)
        if hit is not None and hit[0] == labels:
            return hit[1]
        out = tuple(sorted((k, str(v)) for k, v in labels.items()))
        if len(self._sets) >= self._limit:
            self._sets = {}
        self._sets[key] = (dict(labels), out)
        return out

    def plus(self, base: Labels, extra: Labels) -> Labels:
        """``base`` (a tuple `of` gave) with the ``extra`` pairs added or replaced, sorted;
        the same tuple for the same ``base`` object and pairs. Keyed by the base's id, not
        its 13 pairs' hash: the entry holds the base, so the id is not reused while the
        entry lives."""
        key = (id(base), extra)
        hit = self._plus.get(key)
        if hit is not None and hit[0] is base:
            return hit[1]
        out = tuple(sorted({**dict(base), **dict(extra)}.items()))
        if len(self._plus) >= self._limit:
            self._plus = {}
        self._plus[key] = (base, out)
        return out


class ResultCode(IntEnum):
    """``agent.collector_result_code``: an enumeration as a label-free integer (Telegraf's)."""

    OK = 0
    ABSENT = 1
    PARSE_ERROR = 2
    TIMEOUT = 3
    ERROR = 4
    NO_DATA = 5


class CollectorError(RuntimeError):
    """A collector run failed as a whole; the message names the source."""

    code = ResultCode.ERROR
    samples: tuple[Sample, ...] = ()  # the collector's own metrics, exported all the same


class DriverAbsent(CollectorError):
    """No driver or no device: the collector disables itself until the next run."""

    code = ResultCode.ABSENT


class NoData(CollectorError):
    """No reading: the device answered with nothing to read (a table with a header and no
    rows), or devices are configured and none gave one (each dead, refused or not measuring;
    the message says why for each). ``agent.collector_result_code`` 5, ``collector_up`` 0."""

    code = ResultCode.NO_DATA

    def __init__(self, message: str, samples: Iterable[Sample] = ()) -> None:
        super().__init__(message)
        self.samples = tuple(samples)


class ParseError(CollectorError):
    """Device output that matches no known format; names the source and the line."""

    code = ResultCode.PARSE_ERROR

    def __init__(self, source: str, message: str, line_no: int | None = None,
                 line: str | None = None) -> None:
        where = f"{source}" + (f" line {line_no}" if line_no is not None else "")
        text = f"{where}: {message}" + (f": {line.strip()!r}" if line is not None else "")
        super().__init__(text)
        self.source, self.line_no, self.line = source, line_no, line


@runtime_checkable
class Collector(Protocol):
    name: str

    def collect(self) -> Iterable[Sample]: ...


def readings_or_no_data(samples: list[Sample], reason: Callable[[], str]) -> list[Sample]:
    """The run's samples when one of them is a reading; `NoData` (carrying the collector's own
    ``agent.*`` counters) when every sample is about the collector itself."""
    if any(s.measurement != "agent" for s in samples):
        return samples
    raise NoData(reason(), samples)


def placement_labels(config: Mapping[str, str]) -> dict[str, str]:
    """The node/site/cluster/hub labels every sample of an agent carries, empty ones dropped."""
    return {k: str(config[k]) for k in ("node", "site", "cluster", "hub") if config.get(k)}
