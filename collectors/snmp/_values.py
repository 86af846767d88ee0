"""SNMP answers as numbers, and pysnmp's failures as `ERROR_TYPES`.

- A negative reading means "not measured" (APC answers -1 for what a model does not meter).
- A scalar OID ending in ``.0`` that the device lacks is "not implemented", never a hint to
  add the ``.0``.
- Numbers sent as text (DisplayString "12.5") are accepted; other non-numeric types are
  ``bad_value``.
- pysnmp is imported on first use (`hlapi`): an agent without SNMP devices never loads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["ERROR_TYPES", "WORST", "DeviceFailure", "Problem", "as_number", "error_type_of",
           "hlapi"]

ERROR_TYPES: tuple[str, ...] = (
    "snmp_timeout",
    "snmp_unresolved",
    "snmp_auth",
    "snmp_no_such_object",
    "snmp_bad_value",
    "snmp_unsupported",
    "snmp_error",
)
"""The ``error_type`` values of ``agent.collector_errors_total{collector="snmp"}``."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a source gave no value: no_such_object, bad_value or not_measured, and detail."""

    kind: str
    detail: str


WORST = {"bad_value": 2, "no_such_object": 1, "not_measured": 0}


class DeviceFailure(Exception):
    """The device as a whole did not answer a request; ends its poll for this run."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def as_number(value: Any, what: str, oid: str = "") -> tuple[float | None, Problem | None]:
    """An SNMP value as a number, or why not.

    For a scalar GET that finds nothing, ``oid`` decides the message: an OID with its
    instance suffix (``.0``) is one the device does not implement; one without may be a
    scalar missing its suffix or a table column read without ``sum: true``.
    """
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902, rfc1905

    if value is None or isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance
                                   | rfc1905.EndOfMibView):
        kind = type(value).__name__ if value is not None else "no value"
        if not isinstance(value, rfc1905.NoSuchInstance | rfc1905.NoSuchObject):
            return None, Problem("no_such_object", f"{what}: {kind}")
        if oid.endswith(".0"):
            return None, Problem("no_such_object", f"the device does not implement {what}: "
                                                   f"{kind}")
        return None, Problem("no_such_object", f"{what}: {kind}; a scalar needs its instance "
                                               "suffix (.0), a table column needs sum: true")
    if isinstance(value, rfc1902.IpAddress | rfc1902.Opaque | rfc1902.Bits):
        return None, Problem("bad_value", f"{what}: a {type(value).__name__}, not a number")
    if isinstance(value, univ.Integer):
        number = float(int(value))
    elif isinstance(value, univ.OctetString):
        text = bytes(value).decode("utf-8", "replace").strip()
        try:
            number = float(text)
        except ValueError:
            return None, Problem("bad_value", f"{what}: text {text[:40]!r}, not a number")
        if not math.isfinite(number):
            return None, Problem("bad_value", f"{what}: {text!r} is not a finite number")
    else:
        return None, Problem("bad_value", f"{what}: a {type(value).__name__}, not a number")
    if number < 0:
        return None, Problem("not_measured", f"{what} = {number:g} (not measured)")
    return number, None


def error_type_of(indication: object) -> str:
    """pysnmp's errorIndication as one of `ERROR_TYPES`."""
    name = type(indication).__name__
    if name == "RequestTimedOut":
        return "snmp_timeout"
    if name in {"WrongDigest", "UnknownUserName", "UnknownSecurityName", "AuthenticationError",
                "AuthenticationFailure", "UnsupportedSecurityLevel", "NotInTimeWindow",
                "DecryptionError", "EncryptionError", "UnsupportedAuthProtocol",
                "UnsupportedPrivProtocol", "NoSuchContext", "NoSuchView", "NotInView",
                "NoAccessEntry", "NoGroupName"}:
        return "snmp_auth"
    return "snmp_error"


@cache
def hlapi() -> Any:
    """pysnmp's asyncio high-level API, imported on first use: the agent may never need it."""
    import pysnmp.hlapi.v3arch.asyncio as api

    return api
