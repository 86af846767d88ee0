"""Power over Redfish: one ``facility_power`` meter per chassis (BMCs) or per PDU, transfer
switch, power shelf or cooling unit (DCIM services).

The one seam is the HTTP session (a ``requests.Session`` from ``session_factory``): tests point
the collector at a real Redfish service on loopback (``sushy-static`` serving a DMTF mockup),
so the code path is the one a real BMC sees.

This folder's README.md states how a chassis reading is found, the decisions, the failure
codes and the metrics; sample.yaml is the sample configuration. Modules, one job each:
`_config` (`RedfishEndpoint`), `_documents` (pure reading of Redfish documents), `_client`
(one endpoint's HTTP conversation), `_discovery` (every meter of a service and where its
readings are), `_collector` (the runs, failure accounting).
Loading the node config imports `_config` and the pure `_documents` only: the collector and
its HTTP client are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from computewatch.collectors.redfish._config import RedfishEndpoint
from computewatch.collectors.redfish._documents import (
    PART_CONTEXTS,
    environment_readings,
    legacy_psu_input_watts,
    power_control_watts,
    sensor_reading,
)

if TYPE_CHECKING:
    from computewatch.collectors.redfish._client import ERROR_TYPES
    from computewatch.collectors.redfish._collector import EMITTED, RedfishCollector

__all__ = ["EMITTED", "ERROR_TYPES", "PART_CONTEXTS", "RedfishCollector", "RedfishEndpoint",
           "environment_readings", "legacy_psu_input_watts", "power_control_watts",
           "sensor_reading"]


def __getattr__(name: str) -> object:
    """The collector and its HTTP client, imported on first use (the node config needs only
    `_config`)."""
    if name in ("EMITTED", "RedfishCollector"):
        from computewatch.collectors.redfish import _collector as module
    elif name == "ERROR_TYPES":
        from computewatch.collectors.redfish import _client as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value
