"""Server power from BMCs over Redfish: one ``facility_power`` meter per chassis.

The one seam is the HTTP session (a ``requests.Session`` from ``session_factory``): tests point
the collector at a real Redfish service on loopback (``sushy-static`` serving a DMTF mockup),
so the code path is the one a real BMC sees.

How a chassis reading is found. Redfish has two power models and BMCs ship either or both;
the collector looks once (discovery), remembers where the readings are (a plan of resource
URIs and property paths) and then GETs only those resources each run (one or two requests
per chassis instead of dozens). It discovers again after any failure and every hour.

- ``watts``, first found wins: ``EnvironmentMetrics.PowerWatts``; a chassis power sensor
  (``Sensors`` member with ``ReadingType`` Power, ``PhysicalContext`` Chassis and
  ``ElectricalContext`` Total or none); the legacy ``Power.PowerControl[].PowerConsumedWatts``;
  the sum of the power supplies' input power (``PowerSubsystem/PowerSupplies/*/Metrics``
  ``InputPowerWatts``, or legacy ``PowerSupplies[].PowerInputWatts``).
- ``joules_total``, first found wins: ``EnvironmentMetrics.EnergyJoules`` or ``EnergykWh``;
  a chassis energy sensor (``ReadingType`` EnergyJoules, EnergyWh or EnergykWh); the sum of
  the power supplies' ``EnergykWh``. kWh and Wh are converted to joules (1 kWh = 3.6e6 J).
  Without any of these the chassis reports ``watts`` only: energy is never integrated from
  power here, since the PUE method needs the meter's own counter. A kWh counter steps in
  3.6 MJ: fine for hourly and longer PUE windows, coarse for 15-minute ones.

Decisions:

- One meter per chassis: the chassis input power, which is what the rack PDU upstream sees.
  ``PowerControl`` entries are summed unless their ``PhysicalContext`` names a part inside
  the chassis (CPU, memory, GPU, storage, fans, ...: `PART_CONTEXTS`), so a BMC that reports
  a total plus per-subsystem domains is not counted twice, and a dual-feed BMC that reports
  one entry per feed is counted whole.
- Power supplies are a breakdown of the chassis meter, not more meters: the PUE method sums
  every meter of a scope, so a per-PSU series with the same scope would count the server
  twice, and the catalogue has no label to mark a sub-meter. PSU readings are therefore only
  used to build the chassis meter when the chassis reports nothing better, and only when
  every present PSU reports (a partial sum would under-read). A PSU's
  ``LastPowerOutputWatts`` is never used: it is DC output and leaves out the conversion loss.
- With the default chassis selection (every chassis of the service), a chassis with no power
  reading is skipped quietly (drive enclosures, backplanes), and a chassis contained in
  another chassis that reports power (a blade in its enclosure) is skipped, since its power
  is part of the container's. A chassis listed in ``chassis`` is always read, and one without
  any reading is an error.
- ``meter`` defaults to ``<host>:<port>/<chassis id>``. A configured ``meter`` is the meter
  id when ``chassis`` lists exactly one id, and otherwise a prefix (``<meter>/<chassis id>``),
  so the id follows from the config alone and never changes with what the BMC answers.
- Plain ``http://`` is accepted only for a loopback address (a local mockup or tunnel);
  credentials in the URL are refused; TLS certificates are verified unless an endpoint says
  ``verify_tls: false`` (logged once when first connecting).
- Secrets: the password is read from ``password_env`` or ``password_file`` when the
  collector first connects, kept as a ``SecretStr``, and never logged or shown in a repr;
  neither is the session token.

Failure handling: each endpoint is read in its own thread, so a hung or broken BMC delays or
stops only its own meters. A failure is counted in ``agent.collector_errors_total`` with
``error_type`` ``redfish_<code>`` (`ERROR_TYPES`: unreachable, timeout, tls_error,
auth_failed, http_error, invalid_json, missing_field, error) and logged once per episode with
the endpoint and the resource URL; the episode ends when that failure does not recur in a
run. Unparseable answers (invalid_json, missing_field) are also counted per endpoint in
``agent.parse_errors_total{source="<host>:<port>"}``. The codes carry the ``redfish_`` prefix
(as NVML's per-field errors carry ``nvml_``) because the agent itself counts whole-run
failures of this collector under ``timeout``. A connection failure (unreachable, timeout,
tls_error, auth_failed) ends that endpoint's run; any other failure loses only the chassis
or the quantity it concerns. `RedfishCollector.collect` never raises for an endpoint's
failure, even when every endpoint fails: it returns the error counters.

Session auth (the default): ``POST /redfish/v1/SessionService/Sessions``, the
``X-Auth-Token`` kept for later requests, one new login when a request answers 401, and
the session deleted on `RedfishCollector.close`. ``auth: basic`` sends the credentials with
every request instead. An endpoint without ``username`` is read without credentials.

Metrics
-------

- facility_power
  - tags:
    - hub, cluster, site (placement, from the agent's labels; no node, a meter is not a node)
    - meter (``<host>:<port>/<chassis id>``, or the configured ``meter``)
    - scope (the endpoint's ``scope``: ``facility`` | ``it`` | ``cooling`` | ``other``;
      default ``it``)
    - source (the BMC as ``<host>:<port>``)
  - fields:
    - watts (float, watts): chassis input power; every chassis with a power reading
    - joules_total (float, joules, counter): chassis energy counter; BMCs with
      EnvironmentMetrics energy, a chassis energy sensor or PSU energy metrics
- agent
  - tags: node, site, cluster, hub, collector (``redfish``), error_type
    (collector_errors_total: ``redfish_<code>``, see `ERROR_TYPES`), source
    (parse_errors_total: the BMC as ``<host>:<port>``)
  - fields:
    - collector_errors_total (float, count, counter): endpoint failures by code, since the
      agent started
    - parse_errors_total (float, count, counter): answers that were not JSON or lacked a
      property, per endpoint, since the agent started

Example output (line protocol)::

    facility_power,hub=jjj,meter=10.3.0.21:443/1U,scope=it,site=bj-ai,source=10.3.0.21:443 joules_total=1172430000000,watts=374 1772416800000000000

Raw output for a bug report: ``curl -sk -u USER https://BMC/redfish/v1/Chassis/<id>/Power``
(and ``/PowerSubsystem``, ``/EnvironmentMetrics``, ``/Sensors``).
"""  # noqa: E501 (the example line is one line of line protocol)

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from computewatch import catalog
from computewatch.collectors._base import placement_labels
from computewatch.collectors._settings import Duration
from computewatch.config import PathError
from computewatch.samples import Sample

if TYPE_CHECKING:  # requests is imported when the collector first connects
    import requests

__all__ = ["EMITTED", "ERROR_TYPES", "PART_CONTEXTS", "RedfishCollector", "RedfishEndpoint",
           "environment_readings", "legacy_psu_input_watts", "power_control_watts",
           "sensor_reading"]

log = logging.getLogger(__name__)

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
    "agent.parse_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

ERROR_TYPES: tuple[str, ...] = (
    "unreachable", "timeout", "tls_error", "auth_failed", "http_error", "invalid_json",
    "missing_field", "error",
)
"""Failure codes; each is counted as ``error_type="redfish_<code>"``."""

PART_CONTEXTS = frozenset({
    "CPU", "CPUSubsystem", "GPU", "GPUSubsystem", "FPGA", "Accelerator", "ASIC", "Memory",
    "MemorySubsystem", "StorageDevice", "StorageSubsystem", "NetworkingDevice",
    "ExpansionSubsystem", "Backplane", "Board", "VoltageRegulator", "Fan", "CoolingSubsystem",
    "Pump", "Transceiver", "Battery", "TrustedModule", "Switch", "Manager",
})
"""``PhysicalContext`` values of a part inside a chassis: PowerControl entries with one of
these are a breakdown of the chassis power, not added to it."""

_SERVICE_ROOT = "/redfish/v1"
_SESSIONS = "/redfish/v1/SessionService/Sessions"
_REPLAN_S = 3600.0  # look for the readings again this often, in case the BMC changed
_MAX_PARALLEL = 16  # endpoints read at once
_MAX_PAGES = 1000  # a collection whose nextLink never ends must not loop forever
_CONNECTION_CODES = frozenset({"unreachable", "timeout", "tls_error", "auth_failed"})
_PARSE_CODES = frozenset({"invalid_json", "missing_field"})
_ENERGY_SCALE = {"EnergyJoules": 1.0, "EnergyWh": 3600.0, "EnergykWh": 3.6e6}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADERS = {"Accept": "application/json", "OData-Version": "4.0"}


# --- configuration ------------------------------------------------------------------------

class RedfishEndpoint(BaseModel):
    """One Redfish service (a BMC): where it is, how to log in, which chassis to read."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str
    """``https://bmc.example[:port]``; ``http://`` only for a loopback address."""
    username: str = ""
    password_env: str | None = None
    """Name of the environment variable that holds the password (not the password)."""
    password_file: Path | None = None
    """File whose content (trailing newline removed) is the password."""
    auth: Literal["session", "basic"] = "session"
    verify_tls: bool = True
    timeout: Duration = 5.0
    """Per request: connecting, and then each wait for data."""
    chassis: list[str] = []
    """Chassis ids to read; empty: every chassis of the service that reports power."""
    scope: Literal["facility", "it", "cooling", "other"] = "it"
    meter: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_password(cls, data: Any) -> Any:
        """A password written into the config is refused without being echoed."""
        if isinstance(data, Mapping):
            for key in ("password", "pass", "passwd", "secret", "token"):
                if key in data:
                    raise PathError((key,), "a password is never written in the config: put it "
                                    "in an environment variable (password_env) or a file "
                                    "(password_file)")
            url = data.get("url")
            if isinstance(url, str) and "@" in urlsplit(url.strip()).netloc:
                raise PathError(("url",), "credentials do not belong in the url: use username "
                                "and password_env or password_file")
        return data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        """Normalise to ``scheme://host[:port]`` and refuse what would leak credentials."""
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("must be https://<bmc host>[:port] (http:// only for a loopback "
                             "address)")
        try:
            parts.port  # noqa: B018 (raises for a port that is not a number)
        except ValueError:
            raise ValueError("the port is not a number between 0 and 65535") from None
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be the service's address only, e.g. https://bmc.example; "
                             "the /redfish/v1 path is added by the collector")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("plain http is allowed only to a loopback address (a local mockup "
                             "or tunnel): BMC credentials would cross the network in clear "
                             "text; use https://")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _check_credentials(self) -> RedfishEndpoint:
        # PathError without a value: these fields may hold a pasted password, never echo one.
        if self.password_env is not None and self.password_file is not None:
            raise PathError(("password_file",), "set password_env or password_file, not both")
        if self.password_env is not None and not _ENV_NAME.match(self.password_env):
            raise PathError(("password_env",), "must be the name of an environment variable "
                            "that holds the password (letters, digits and _, e.g. "
                            "BMC_PASSWORD), not the password itself")
        has_password = self.password_env is not None or self.password_file is not None
        if has_password and not self.username:
            raise PathError(("username",), "required when password_env or password_file "
                            "is set")
        if self.username and not has_password:
            raise PathError(("username",), "needs password_env or password_file (a password "
                            "is never written in the config)")
        seen: set[str] = set()
        for i, cid in enumerate(self.chassis):
            if not cid or cid in seen:
                raise PathError(("chassis", i), "empty or repeated chassis id", cid)
            seen.add(cid)
        if self.meter is not None and not self.meter.strip():
            raise PathError(("meter",), "must not be empty (leave it out for the default)")
        return self

    @property
    def source(self) -> str:
        """The ``source`` label: ``host:port``, the port made explicit."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- what a plan is ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Term:
    """One number in one resource: ``doc[path...] * scale``."""

    uri: str
    path: tuple[str | int, ...]
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class _Reading:
    """A quantity as the sum of terms, and where it came from (for messages)."""

    what: str
    terms: tuple[_Term, ...]


@dataclass(slots=True)
class _ChassisPlan:
    chassis: str
    uri: str
    meter: str = ""
    watts: _Reading | None = None
    joules: _Reading | None = None
    contained_by: str | None = None


class _Fail(Exception):
    """One failure of one endpoint; ``code`` is an `ERROR_TYPES` entry."""

    def __init__(self, code: str, message: str, url: str = "", chassis: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.url, self.chassis = code, message, url, chassis


# --- pure reading of Redfish documents ----------------------------------------------------

def _number(value: Any) -> float | None:
    """A finite, non-negative reading; numeric strings (some old firmware) are accepted."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _dig(doc: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or not -len(doc) <= part < len(doc):
                return None
            doc = doc[part]
        elif isinstance(doc, Mapping):
            doc = doc.get(part)
        else:
            return None
    return doc


def _link(doc: Mapping[str, Any], *path: str) -> str | None:
    """The ``@odata.id`` of a navigation property, or None."""
    target = _dig(doc, path)
    uri = target.get("@odata.id") if isinstance(target, Mapping) else None
    return uri if isinstance(uri, str) and uri else None


def _absent(doc: Any) -> bool:
    """Whether a resource or array member says it is not installed."""
    return _dig(doc, ("Status", "State")) == "Absent"


def _last_segment(uri: str) -> str:
    return uri.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def environment_readings(uri: str, doc: Mapping[str, Any]) -> tuple[_Reading | None,
                                                                    _Reading | None]:
    """Watts and energy of an EnvironmentMetrics resource, where it has them."""
    watts = joules = None
    if _number(_dig(doc, ("PowerWatts", "Reading"))) is not None:
        watts = _Reading("EnvironmentMetrics PowerWatts",
                         (_Term(uri, ("PowerWatts", "Reading")),))
    for prop, scale in (("EnergyJoules", 1.0), ("EnergykWh", 3.6e6)):  # finer one first
        if _number(_dig(doc, (prop, "Reading"))) is not None:
            joules = _Reading(f"EnvironmentMetrics {prop}", (_Term(uri, (prop, "Reading"),
                                                                   scale),))
            break
    return watts, joules


def sensor_reading(uri: str, doc: Mapping[str, Any]) -> tuple[str, int, _Reading] | None:
    """(``watts`` | ``joules``, rank, reading) for a whole-chassis power or energy sensor.

    Rank 0 is ``ElectricalContext`` Total, 1 none; per-line or per-phase sensors are parts.
    """
    if doc.get("PhysicalContext") != "Chassis" or _absent(doc):
        return None
    if _number(doc.get("Reading")) is None:
        return None
    electrical = doc.get("ElectricalContext")
    if electrical not in (None, "Total"):
        return None
    rank = 0 if electrical == "Total" else 1
    kind = doc.get("ReadingType")
    name = f"sensor {_last_segment(uri)}"
    if kind == "Power":
        return "watts", rank, _Reading(name, (_Term(uri, ("Reading",)),))
    if kind in _ENERGY_SCALE:
        return "joules", rank, _Reading(name, (_Term(uri, ("Reading",), _ENERGY_SCALE[kind]),))
    return None


def power_control_watts(uri: str, doc: Mapping[str, Any]) -> _Reading | None:
    """Sum of the legacy PowerControl entries that describe the whole chassis."""
    terms = []
    for i, entry in enumerate(doc.get("PowerControl") or []):
        if not isinstance(entry, Mapping) or _absent(entry):
            continue
        if entry.get("PhysicalContext") in PART_CONTEXTS:
            continue
        if _number(entry.get("PowerConsumedWatts")) is not None:
            terms.append(_Term(uri, ("PowerControl", i, "PowerConsumedWatts")))
    return _Reading("Power PowerControl PowerConsumedWatts", tuple(terms)) if terms else None


def legacy_psu_input_watts(uri: str, doc: Mapping[str, Any]) -> _Reading | None:
    """Sum of the legacy PowerSupplies[].PowerInputWatts, if every present PSU has one."""
    terms = []
    for i, psu in enumerate(doc.get("PowerSupplies") or []):
        if not isinstance(psu, Mapping) or _absent(psu):
            continue
        if _number(psu.get("PowerInputWatts")) is None:
            return None
        terms.append(_Term(uri, ("PowerSupplies", i, "PowerInputWatts")))
    return _Reading("Power PowerSupplies PowerInputWatts", tuple(terms)) if terms else None


# --- HTTP ----------------------------------------------------------------------------------

def _default_session() -> requests.Session:
    import requests

    return requests.Session()


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception under requests' and urllib3's wrappers."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = exc.__cause__ or exc.__context__
        if nxt is None and exc.args and isinstance(exc.args[0], BaseException):
            nxt = exc.args[0]
        if nxt is None:
            break
        exc = nxt
    return exc


def _describe(exc: BaseException) -> str:
    cause = _root_cause(exc)
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = getattr(cause, "verify_message", None) or str(cause) or type(cause).__name__
    return re.sub(r"<[^>]* at 0x[0-9a-f]+>: ", "", text)  # urllib3 object reprs say nothing


class _Client:
    """One endpoint's HTTP conversation: credentials, login, GET, paging and logout."""

    def __init__(self, ep: RedfishEndpoint,
                 session_factory: Callable[[], requests.Session]) -> None:
        self.ep = ep
        self._factory = session_factory
        self._http: requests.Session | None = None
        self._password: SecretStr | None = None
        self._token: SecretStr | None = None
        self._session_uri: str | None = None

    def __repr__(self) -> str:  # the password and token stay out of every repr
        return f"_Client({self.ep.url!r}, auth={self.ep.auth!r}, user={self.ep.username!r})"

    # --- credentials and sessions -------------------------------------------------------

    def _secret(self) -> SecretStr:
        if self._password is None:
            ep = self.ep
            if ep.password_env is not None:
                value = os.environ.get(ep.password_env)
                if value is None:
                    raise _Fail("auth_failed", f"the environment variable {ep.password_env} "
                                "(password_env) is not set for the agent")
            else:
                assert ep.password_file is not None  # the config validator ensures one is set
                try:
                    value = ep.password_file.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise _Fail("auth_failed", f"cannot read password_file "
                                f"{ep.password_file}: {exc.strerror or exc}") from None
            self._password = SecretStr(value)
        return self._password

    def _login(self) -> None:
        password = self._secret().get_secret_value()
        resp = self._send("POST", _SESSIONS,
                          json={"UserName": self.ep.username, "Password": password})
        url = self._abs(_SESSIONS)
        if resp.status_code in (401, 403):
            raise _Fail("auth_failed", f"session login refused (HTTP {resp.status_code}): check "
                        f"the username {self.ep.username!r} and the password", url)
        if not 200 <= resp.status_code < 300:
            raise _Fail("http_error", f"session login: HTTP {resp.status_code} "
                        f"{resp.reason}{_redfish_message(resp)}", url)
        token = resp.headers.get("X-Auth-Token")
        if not token:
            raise _Fail("auth_failed", f"session login answered HTTP {resp.status_code} without "
                        "an X-Auth-Token header: the service does not implement Redfish "
                        "sessions; set auth: basic for this endpoint", url)
        self._token = SecretStr(token)
        where = resp.headers.get("Location")
        if not where:  # some services name the new session only in the body
            try:
                body = json.loads(resp.content)
            except ValueError:
                body = None
            oid = body.get("@odata.id") if isinstance(body, dict) else None
            where = oid if isinstance(oid, str) else None
        self._session_uri = where if where and self._same_origin(self._abs(where)) else None

    def _auth(self) -> dict[str, Any]:
        if not self.ep.username:
            return {}
        if self.ep.auth == "basic":
            return {"auth": (self.ep.username, self._secret().get_secret_value())}
        if self._token is None:
            self._login()
        assert self._token is not None
        return {"headers": {**_HEADERS, "X-Auth-Token": self._token.get_secret_value()}}

    # --- requests -----------------------------------------------------------------------

    def _abs(self, uri: str) -> str:
        return urljoin(self.ep.url + "/", uri)

    def _same_origin(self, url: str) -> bool:
        def origin(u: str) -> tuple[str, str | None, int]:
            p = urlsplit(u)
            return p.scheme, p.hostname, p.port or (443 if p.scheme == "https" else 80)

        try:
            return origin(url) == origin(self.ep.url)
        except ValueError:  # a link with a port that is not a number
            return False

    def _send(self, method: str, uri: str, **kw: Any) -> requests.Response:
        """One request, redirects followed only within the service; transport errors mapped."""
        import requests

        if self._http is None:
            self._http = self._factory()
            if not self.ep.verify_tls and self.ep.url.startswith("https:"):
                log.warning("redfish: %s: TLS certificate verification is off for this "
                            "endpoint (verify_tls: false)", self.ep.source)
        kw.setdefault("headers", _HEADERS)
        url = self._abs(uri)
        for _hop in range(4):
            if not self._same_origin(url):
                raise _Fail("http_error", "refused to follow a link or redirect to another "
                            "host (credentials stay with the configured service)", url)
            try:
                resp = self._http.request(method, url, timeout=self.ep.timeout,
                                          verify=self.ep.verify_tls, allow_redirects=False,
                                          **kw)
            except requests.Timeout:
                raise _Fail("timeout", f"no answer within {self.ep.timeout:g} s", url) from None
            except requests.exceptions.SSLError as exc:
                raise _Fail("tls_error", _tls_message(_describe(exc)), url) from None
            except requests.ConnectionError as exc:
                raise _Fail("unreachable", f"cannot connect: {_describe(exc)}", url) from None
            except requests.RequestException as exc:
                raise _Fail("http_error", _describe(exc), url) from None
            if resp.is_redirect and method == "GET" and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                continue
            return resp
        raise _Fail("http_error", "too many redirects", url)

    def get(self, uri: str) -> dict[str, Any]:
        """A resource as a JSON object; 401 with a session logs in again, once."""
        auth = self._auth()
        resp = self._send("GET", uri, **auth)
        if resp.status_code == 401 and self.ep.auth == "session" and self.ep.username:
            self._token = None
            resp = self._send("GET", uri, **self._auth())
        url = self._abs(uri)
        if resp.status_code in (401, 403):
            raise _Fail("auth_failed", f"HTTP {resp.status_code}: the credentials of "
                        f"{self.ep.username or 'nobody'!r} were refused", url)
        if not 200 <= resp.status_code < 300:
            raise _Fail("http_error", f"HTTP {resp.status_code} "
                        f"{resp.reason}{_redfish_message(resp)}", url)
        try:
            doc = json.loads(resp.content)
        except ValueError as exc:
            start = resp.content[:40].decode("utf-8", "replace")
            raise _Fail("invalid_json", f"the answer is not JSON ({exc}; it starts "
                        f"{start!r})", url) from None
        if not isinstance(doc, dict):
            raise _Fail("invalid_json", f"expected a JSON object, got {type(doc).__name__}",
                        url)
        return doc

    def members(self, uri: str, first: Mapping[str, Any] | None = None) -> list[str]:
        """The member URIs of a collection, following ``Members@odata.nextLink`` pages."""
        out: list[str] = []
        seen: set[str] = set()
        page_uri: str | None = uri
        doc = first
        while page_uri is not None and page_uri not in seen and len(seen) < _MAX_PAGES:
            seen.add(page_uri)
            if doc is None:
                doc = self.get(page_uri)
            members = doc.get("Members")
            if not isinstance(members, list):
                raise _Fail("missing_field", "the collection has no Members list",
                            self._abs(page_uri))
            for m in members:
                oid = m.get("@odata.id") if isinstance(m, Mapping) else None
                if not isinstance(oid, str):
                    raise _Fail("missing_field", f"a collection member has no @odata.id: {m!r}",
                                self._abs(page_uri))
                out.append(oid)
            nxt = doc.get("Members@odata.nextLink")
            page_uri, doc = (nxt if isinstance(nxt, str) and nxt else None), None
        return out

    def close(self) -> None:
        """Delete the session (best effort) and drop the connection pool."""
        if self._http is None:
            return
        if self._token is not None and self._session_uri:
            try:
                self._send("DELETE", self._session_uri,
                           headers={**_HEADERS, "X-Auth-Token": self._token.get_secret_value()})
            except _Fail as exc:
                log.debug("redfish: %s: deleting the session failed: %s", self.ep.source,
                          exc.message)
        self._token = self._session_uri = None
        self._http.close()
        self._http = None


def _redfish_message(resp: requests.Response) -> str:
    """``: <message>`` from a Redfish error body, or nothing."""
    try:
        body = json.loads(resp.content)
    except ValueError:
        return ""
    message = _dig(body, ("error", "message")) or _dig(
        body, ("error", "@Message.ExtendedInfo", 0, "Message"))
    return f": {message}" if isinstance(message, str) and message else ""


def _tls_message(detail: str) -> str:
    if "certificate" in detail.lower():
        return (f"TLS certificate not trusted ({detail}); install the BMC's CA for the agent "
                "(e.g. REQUESTS_CA_BUNDLE) or set verify_tls: false for this endpoint")
    return f"TLS handshake failed ({detail}); is the service speaking https on this port?"


# --- the collector ------------------------------------------------------------------------

@dataclass(eq=False)
class _State:
    """What the collector keeps per endpoint between runs."""

    ep: RedfishEndpoint
    client: _Client
    plans: list[_ChassisPlan] | None = None
    planned_at: float = 0.0
    logged: set[tuple[str, str]] = field(default_factory=set)  # failures of this episode


@dataclass
class _Result:
    samples: list[Sample] = field(default_factory=list)
    failures: list[_Fail] = field(default_factory=list)


class RedfishCollector:
    """Reads chassis power and energy from Redfish services, one meter per chassis."""

    name = "redfish"

    def __init__(self, labels: Mapping[str, str], endpoints: Sequence[RedfishEndpoint],
                 session_factory: Callable[[], requests.Session] | None = None) -> None:
        self._place = placement_labels(labels)
        self._meter_place = {k: v for k, v in self._place.items() if k != "node"}
        factory = session_factory or _default_session
        self._states = [_State(ep, _Client(ep, factory)) for ep in endpoints]
        self._errors: Counter[str] = Counter()  # code -> count, since the agent started
        self._parse_errors: Counter[str] = Counter()  # source -> count

    def __repr__(self) -> str:
        return f"RedfishCollector({[s.ep.url for s in self._states]!r})"

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every endpoint; failures are counted, never raised."""
        states = self._states
        if len(states) <= 1:
            results = [self._run(s) for s in states]
        else:
            with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(states)),
                                    thread_name_prefix="redfish") as pool:
                results = list(pool.map(self._run, states))
        samples: list[Sample] = []
        for state, result in zip(states, results, strict=True):
            samples += result.samples
            self._account(state, result.failures)
        return samples + self.error_samples()

    def error_samples(self, time: datetime | None = None) -> list[Sample]:
        """The failure counters, cumulative since the collector started."""
        time = time or datetime.now(UTC)
        out = [Sample.of("agent.collector_errors_total", float(n),
                         {**self._place, "collector": self.name,
                          "error_type": f"redfish_{code}"}, time)
               for code, n in sorted(self._errors.items())]
        out += [Sample.of("agent.parse_errors_total", float(n),
                          {**self._place, "collector": self.name, "source": src}, time)
                for src, n in sorted(self._parse_errors.items())]
        return out

    def close(self) -> None:
        """Log out of every session; a later collect logs in again."""
        for state in self._states:
            state.client.close()

    # --- one endpoint -------------------------------------------------------------------

    def _run(self, state: _State) -> _Result:
        result = _Result()
        try:
            self._read_endpoint(state, result)
        except _Fail as exc:
            result.failures.append(exc)
        except Exception as exc:  # a surprise in one endpoint's answer must not stop the rest
            log.debug("redfish: %s: unexpected failure", state.ep.source, exc_info=True)
            result.failures.append(_Fail("error", f"{type(exc).__name__}: {exc}"))
            state.plans = None
        return result

    def _read_endpoint(self, state: _State, result: _Result) -> None:
        cache: dict[str, dict[str, Any]] = {}
        if state.plans is None or time.monotonic() - state.planned_at > _REPLAN_S:
            state.plans = None
            plans = self._discover(state, cache, result.failures)
            state.plans = plans
            state.planned_at = time.monotonic()
        now = datetime.now(UTC)
        stale = bool(result.failures)
        for plan in state.plans:
            for field_, reading in (("watts", plan.watts), ("joules_total", plan.joules)):
                if reading is None:
                    continue
                try:
                    value = self._value(state.client, reading, cache)
                except _Fail as exc:
                    if exc.code in _CONNECTION_CODES:
                        raise
                    exc.chassis = plan.chassis
                    result.failures.append(exc)
                    stale = True
                    continue
                labels = {**self._meter_place, "meter": plan.meter, "scope": state.ep.scope,
                          "source": state.ep.source}
                result.samples.append(Sample.of(f"facility_power.{field_}", value, labels, now))
        if stale:
            state.plans = None  # look again next run: the BMC may have moved its readings

    def _value(self, client: _Client, reading: _Reading, cache: dict[str, dict[str, Any]],
               ) -> float:
        total = 0.0
        for term in reading.terms:
            doc = cache.get(term.uri)
            if doc is None:
                doc = cache[term.uri] = client.get(term.uri)
            raw = _dig(doc, term.path)
            value = _number(raw)
            if value is None:
                where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in term.path)
                raise _Fail("missing_field", f"{reading.what}: {where} is {raw!r}, not a "
                            "reading", client._abs(term.uri))
            total += value * term.scale
        return total

    # --- discovery ----------------------------------------------------------------------

    def _discover(self, state: _State, cache: dict[str, dict[str, Any]],
                  failures: list[_Fail]) -> list[_ChassisPlan]:
        """Find every chassis to read and where its readings are."""
        client, ep = state.client, state.ep
        root = client.get(_SERVICE_ROOT)
        chassis_uri = _link(root, "Chassis")
        if chassis_uri is None:
            raise _Fail("missing_field", "the service root has no Chassis link",
                        client._abs(_SERVICE_ROOT))
        by_id = {_last_segment(u): u for u in client.members(chassis_uri)}
        wanted = ep.chassis or list(by_id)
        plans: list[_ChassisPlan] = []
        parents: dict[str, str | None] = {}
        for cid in wanted:
            uri = by_id.get(cid)
            if uri is None:
                failures.append(_Fail("missing_field", f"no chassis {cid!r} (the service has: "
                                      f"{', '.join(by_id) or 'none'})",
                                      client._abs(chassis_uri), cid))
                continue
            try:
                plan = self._plan_chassis(client, cid, uri, cache)
            except _Fail as exc:
                if exc.code in _CONNECTION_CODES:
                    raise
                exc.chassis = cid
                failures.append(exc)
                continue
            parents[cid] = plan.contained_by
            if plan.watts is None and plan.joules is None:
                if ep.chassis:
                    failures.append(_Fail("missing_field", "the chassis reports no power or "
                                          "energy (looked at EnvironmentMetrics, Sensors, "
                                          "Power, PowerSubsystem)", client._abs(uri), cid))
                else:
                    log.debug("redfish: %s: chassis %s reports no power; skipped", ep.source,
                              cid)
                continue
            plans.append(plan)
        if not ep.chassis:
            plans = _outermost(plans, parents)
            if not plans and not failures:
                failures.append(_Fail("missing_field", "no chassis reports power (looked at: "
                                      f"{', '.join(by_id) or 'none'})",
                                      client._abs(chassis_uri)))
        for plan in plans:
            if ep.meter is None:
                plan.meter = f"{ep.source}/{plan.chassis}"
            else:
                # Decided by the config alone, so a chassis failing discovery renames nothing.
                plan.meter = ep.meter if len(ep.chassis) == 1 else f"{ep.meter}/{plan.chassis}"
        return plans

    def _plan_chassis(self, client: _Client, cid: str, uri: str,
                      cache: dict[str, dict[str, Any]]) -> _ChassisPlan:
        """Where the chassis' watts and energy are; a source that fails is passed over."""
        def get(u: str) -> dict[str, Any]:
            if u not in cache:
                cache[u] = client.get(u)
            return cache[u]

        doc = get(uri)
        plan = _ChassisPlan(cid, uri)
        container = _link(doc, "Links", "ContainedBy")
        plan.contained_by = _last_segment(container) if container else None
        sources: list[tuple[str, Callable[[str], tuple[_Reading | None, _Reading | None]]]] = [
            ("EnvironmentMetrics", lambda u: environment_readings(u, get(u))),
            ("Sensors", lambda u: self._sensor_readings(client, u, get)),
            ("Power", lambda u: (power_control_watts(u, get(u))
                                 or legacy_psu_input_watts(u, get(u)), None)),
            ("PowerSubsystem", lambda u: self._psu_readings(client, u, get)),
        ]
        passed_over: list[_Fail] = []
        for prop, read in sources:
            if plan.watts is not None and plan.joules is not None:
                break
            link = _link(doc, prop)
            if link is None:
                continue
            try:
                watts, joules = read(link)
            except _Fail as exc:
                if exc.code in _CONNECTION_CODES:
                    raise
                passed_over.append(exc)
                continue
            plan.watts, plan.joules = plan.watts or watts, plan.joules or joules
        if passed_over:
            if plan.watts is None and plan.joules is None:
                raise passed_over[0]
            for exc in passed_over:
                log.debug("redfish: %s: chassis %s: passed over: %s [%s]", client.ep.source,
                          cid, exc.message, exc.url)
        return plan

    def _sensor_readings(self, client: _Client, uri: str,
                         get: Callable[[str], dict[str, Any]],
                         ) -> tuple[_Reading | None, _Reading | None]:
        """The best whole-chassis power and energy sensors of a Sensors collection."""
        best: dict[str, tuple[int, _Reading]] = {}
        for member in client.members(uri, get(uri)):
            try:
                doc = get(member)
            except _Fail as exc:
                if exc.code in _CONNECTION_CODES:
                    raise
                log.debug("redfish: %s: sensor %s skipped: %s", client.ep.source, member,
                          exc.message)
                continue  # one broken sensor must not hide the others
            found = sensor_reading(member, doc)
            if found is not None:
                kind, rank, reading = found
                if kind not in best or rank < best[kind][0]:
                    best[kind] = (rank, reading)
        return (best["watts"][1] if "watts" in best else None,
                best["joules"][1] if "joules" in best else None)

    def _psu_readings(self, client: _Client, uri: str, get: Callable[[str], dict[str, Any]],
                      ) -> tuple[_Reading | None, _Reading | None]:
        """Sums over the present PSUs of a PowerSubsystem; None where any PSU lacks one."""
        supplies = _link(get(uri), "PowerSupplies")
        if supplies is None:
            return None, None
        terms: dict[str, list[_Term]] = {"InputPowerWatts": [], "EnergykWh": []}
        complete = dict.fromkeys(terms, True)
        for member in client.members(supplies, get(supplies)):
            psu = get(member)
            if _absent(psu):
                continue
            metrics_uri = _link(psu, "Metrics")
            metrics = get(metrics_uri) if metrics_uri is not None else {}
            for prop in terms:
                if metrics_uri is not None and _number(_dig(metrics, (prop, "Reading"))) \
                        is not None:
                    terms[prop].append(_Term(metrics_uri, (prop, "Reading"),
                                             3.6e6 if prop == "EnergykWh" else 1.0))
                else:
                    complete[prop] = False
        watts, joules = (
            _Reading(f"PowerSupplies {prop}", tuple(terms[prop]))
            if complete[prop] and terms[prop] else None for prop in terms)
        return watts, joules

    # --- counting and logging -----------------------------------------------------------

    def _account(self, state: _State, failures: list[_Fail]) -> None:
        """Count every failure; log each once per episode, and the recovery."""
        source = state.ep.source
        now_failing: set[tuple[str, str]] = set()
        for f in failures:
            self._errors[f.code] += 1
            if f.code in _PARSE_CODES:
                self._parse_errors[source] += 1
            key = (f.code, f.chassis)
            where = f" [{f.url}]" if f.url else ""
            chassis = f" chassis {f.chassis}:" if f.chassis else ""
            if key in state.logged or key in now_failing:
                log.debug("redfish: %s:%s %s%s", source, chassis, f.message, where)
            else:
                log.warning("redfish: %s:%s %s%s (counted as error_type redfish_%s; logged "
                            "once until it recovers)", source, chassis, f.message, where, f.code)
            now_failing.add(key)
        if state.logged and not now_failing:
            log.warning("redfish: %s: recovered", source)
        state.logged = now_failing


def _outermost(plans: list[_ChassisPlan], parents: Mapping[str, str | None],
               ) -> list[_ChassisPlan]:
    """Drop chassis contained, at any depth, in another chassis that is read."""
    read = {p.chassis for p in plans}
    keep = []
    for p in plans:
        seen, up = {p.chassis}, parents.get(p.chassis)
        while up is not None and up not in seen and up not in read:
            seen.add(up)
            up = parents.get(up)
        if up is None or up in seen:
            keep.append(p)
    return keep
