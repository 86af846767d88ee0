"""Modbus TCP requests through pymodbus: connecting, reading registers, failures as codes.

One TCP connection per endpoint (host, port), opened on a socket of our own so the operating
system's reason reaches the log. pymodbus logs every failed request at ERROR; while this
collector talks to a meter those records are dropped (for its own thread only) in favour of
the collector's one line per episode. pymodbus is imported on first contact.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from computewatch.collectors.modbus._config import ModbusMeter
from computewatch.collectors.modbus._maps import Register
from computewatch.collectors.modbus._state import Endpoint, Failure

if TYPE_CHECKING:  # pymodbus is imported when a meter is first contacted
    from pymodbus.client import ModbusTcpClient

__all__ = ["QUIET_FILTER", "close_client", "connect_endpoint", "quiet_pymodbus", "read_registers"]

_EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                    4: "device failure", 5: "acknowledge", 6: "device busy",
                    10: "gateway path unavailable", 11: "gateway target failed to respond"}


class _QuietPymodbus(logging.Filter):
    """Drops pymodbus's own records in threads that are talking to a meter for us."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "on", False)


QUIET_FILTER = _QuietPymodbus()


@contextmanager
def quiet_pymodbus() -> Iterator[None]:
    QUIET_FILTER.local.on = True
    try:
        yield
    finally:
        QUIET_FILTER.local.on = False


def connect_endpoint(ep: Endpoint) -> ModbusTcpClient:
    """A client on a socket we opened ourselves, so that the OS's reason reaches our log."""
    from pymodbus.client import ModbusTcpClient

    if ep.down is not None:  # already refused this run: do not wait on it once per meter
        raise Failure(ep.down.error_type, str(ep.down), drop_connection=True)
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=ep.timeout)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"connect timed out after {ep.timeout:g} s"
        ep.down = Failure("modbus_unreachable", f"cannot connect to {ep.host}:{ep.port}: "
                           f"{reason}", drop_connection=True)
        raise ep.down from None
    client = ModbusTcpClient(ep.host, port=ep.port, timeout=ep.timeout, retries=0)
    client.socket = sock  # connect() keeps a socket it already has
    return client


def read_registers(client: Any, spec: ModbusMeter, reg: Register, timeout: float) -> list[int]:
    from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

    read = (client.read_holding_registers if reg.table == "holding"
            else client.read_input_registers)
    where = f"{reg.table} register {reg.address}"
    try:
        resp = read(reg.address, count=reg.words, device_id=spec.unit_id)
    except ConnectionException as exc:
        raise Failure("modbus_unreachable", f"connection lost reading {where}: {exc}",
                       drop_connection=True) from None
    except ModbusIOException:
        raise Failure("modbus_timeout", f"no answer within {timeout:g} s reading {where}",
                       drop_connection=True) from None
    except ModbusException as exc:
        raise Failure("modbus_exception", f"{where}: {exc}", drop_connection=True) from None
    except OSError as exc:
        raise Failure("modbus_unreachable", f"{where}: {exc}", drop_connection=True) from None
    except Exception as exc:  # pymodbus's less common failures are not all typed
        raise Failure("modbus_exception", f"{where}: {type(exc).__name__}: {exc}",
                       drop_connection=True) from None
    if resp.isError():
        code = getattr(resp, "exception_code", None)
        name = _EXCEPTION_NAMES.get(code, "unknown") if isinstance(code, int) else "unknown"
        raise Failure("modbus_exception", f"exception {code} ({name}) reading {where} "
                       f"x{reg.words}", drop_connection=False)
    words = list(resp.registers)
    if len(words) != reg.words:
        raise Failure("modbus_exception", f"{where}: asked for {reg.words} registers, got "
                       f"{len(words)}", drop_connection=True)
    return words


def close_client(ep: Endpoint) -> None:
    if ep.client is not None:
        try:
            ep.client.close()
        finally:
            ep.client = None
