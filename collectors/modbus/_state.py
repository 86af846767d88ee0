"""What the collector keeps between runs: per meter, per endpoint, and the energy unwrapping.

Energy counters and rollover: ``joules_total`` is the meter's register, unwrapped. A counter
declared with a modulus (default 2**bits for unsigned integer types; none for signed and
floating types, whose registers do not wrap in practice) that drops by *more* than 7/8 of its
modulus is taken as a wrap: the modulus is added to every later reading, so the series keeps
increasing by exactly what the meter counted. Any other drop is a counter *reset* (an operator
cleared the meter, the meter was replaced): the wraps seen so far are forgotten and the series
restarts from the register's new value, as a Prometheus counter does after a restart. The
state lives in the agent: after an agent restart the series restarts from the raw register,
which downstream sees as one more reset.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from computewatch.collectors.modbus._config import ModbusMeter
from computewatch.collectors.modbus._maps import Registers

if TYPE_CHECKING:  # pymodbus is imported when a meter is first contacted
    from pymodbus.client import ModbusTcpClient

__all__ = ["Endpoint", "Failure", "Meter", "Unwrap"]

_WRAP_SHARE = 1 / 8
"""A drop counts as a rollover when the counter then stands less than this share of its
modulus above where it was (mod the modulus); any bigger jump is a reset."""


class Unwrap:
    """A raw energy register made monotonic across rollovers; resets are passed on."""

    def __init__(self, modulus: int | float | None) -> None:
        self.modulus = modulus
        self.last: int | float | None = None
        self.wraps = 0

    def update(self, raw: int | float) -> tuple[int | float, str | None]:
        """The unwrapped raw value, and ``"wrap"`` or ``"reset"`` when the register dropped."""
        event = None
        if self.last is not None and raw < self.last:
            m = self.modulus
            if m is not None and (raw - self.last) % m < m * _WRAP_SHARE:
                self.wraps += 1
                event = "wrap"
            else:
                self.wraps = 0
                event = "reset"
        self.last = raw
        return raw + self.wraps * (self.modulus or 0), event


@dataclass
class Meter:
    spec: ModbusMeter
    registers: Registers
    labels: tuple[tuple[str, str], ...]
    counter: Unwrap | None
    errors: Counter[str] = field(default_factory=Counter)
    episode: set[tuple[str, str]] = field(default_factory=set)  # (field or "*", error_type)


@dataclass
class Endpoint:
    host: str
    port: int
    timeout: float
    meters: list[Meter]
    client: ModbusTcpClient | None = None
    down: Failure | None = None  # this run's connect failure: the other meters skip it


class Failure(Exception):
    """One failed read: its error_type, and whether the connection is now unusable."""

    def __init__(self, error_type: str, message: str, *, drop_connection: bool) -> None:
        super().__init__(message)
        self.error_type, self.drop_connection = error_type, drop_connection
