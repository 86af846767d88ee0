"""Server power from BMCs over Redfish: one ``facility_power`` meter per chassis.

The one seam is the HTTP session (a ``requests.Session`` from ``session_factory``): tests point
the collector at a real Redfish service on loopback (``sushy-static`` serving a DMTF mockup),
so the code path is the one a real BMC sees.

This folder's README.md states how a chassis reading is found, the decisions, the failure
codes and the metrics; sample.yaml is the sample configuration. Modules, one job each:
`_config` (`RedfishEndpoint`), `_documents` (pure reading of Redfish documents), `_client`
(one endpoint's HTTP conversation), `_collector` (discovery, reads, failure accounting).
Loading the node config imports the light modules only: `RedfishCollector` is imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.collectors.redfish._client import ERROR_TYPES
from computewatch.collectors.redfish._config import RedfishEndpoint
from computewatch.collectors.redfish._documents import (
    PART_CONTEXTS,
    environment_readings,
    legacy_psu_input_watts,
    power_control_watts,
    sensor_reading,
)

if TYPE_CHECKING:
    from computewatch.collectors.redfish._collector import EMITTED, RedfishCollector

__all__ = ["EMITTED", "ERROR_TYPES", "PART_CONTEXTS", "RedfishCollector", "RedfishEndpoint",
           "environment_readings", "legacy_psu_input_watts", "power_control_watts",
           "sensor_reading"]


def __getattr__(name: str) -> object:
    """The collector itself, imported on first use (the node config needs only `_config`)."""
    if name not in ("EMITTED", "RedfishCollector"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from computewatch.collectors.redfish import _collector

    value = getattr(_collector, name)
    globals()[name] = value
    return value
