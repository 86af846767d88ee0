"""What every collector shares: the protocol, the outcome codes and the errors it raises.

A collector is any object with a ``name`` and ``collect() -> Iterable[Sample]``. It reaches its
device through one injected seam (the NVML module, a ``run(argv, timeout)`` callable, an HTTP
session), so tests and the simulator swap the driver, never the collector.

A collector signals a whole-run failure by raising: `DriverAbsent` when the driver or device
is not there (the agent logs it once and keeps the other collectors going), `CollectorError`
for anything else. Partial failures (one GPU lost, one unparseable line) are not raised: the
collector reports what it could and counts the rest as samples (``accelerator.health`` 0,
``agent.parse_errors_total``). A run that reaches its devices but reads nothing from them (a
table with a header and no rows) raises `NoData`: down, with the reason, never up and empty.

A collector with cumulative counters of its own (parse errors per source) reports them through
an optional ``self_samples(time) -> list[Sample]`` method instead of in its runs: the agent adds
them to its own metrics every cycle, zeros included, so they are there from the first scrape
and stay there while the device cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Protocol, runtime_checkable

from computewatch.samples import Sample

__all__ = ["Collector", "CollectorError", "DriverAbsent", "NoData", "ParseError", "ResultCode",
           "placement_labels"]


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


class DriverAbsent(CollectorError):
    """No driver or no device: the collector disables itself until the next run."""

    code = ResultCode.ABSENT


class NoData(CollectorError):
    """The device answered but gave no reading (an empty table): down, with the reason."""

    code = ResultCode.NO_DATA


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


def placement_labels(config: Mapping[str, str]) -> dict[str, str]:
    """The node/site/cluster/hub labels every sample of an agent carries, empty ones dropped."""
    return {k: str(config[k]) for k in ("node", "site", "cluster", "hub") if config.get(k)}
