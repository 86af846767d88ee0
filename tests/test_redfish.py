"""The Redfish collector against real servers on loopback.

- ``sushy-static`` (sushy-tools) serving the DMTF public-rackmount1 mockup, over HTTP and,
  with a self-signed certificate, over HTTPS. It answers every GET without looking at
  credentials and answers a session login with 204 and no token: it implements neither
  auth scheme, so it shows that basic credentials are sent and that session auth fails
  clearly against a service without sessions.
- A small ``http.server`` stub serving the same mockup files with what sushy-static lacks:
  Redfish sessions (login, 401 on a stale token, logout), basic-auth checking, paging with
  ``Members@odata.nextLink``, links removed (to reach each power model on its own), and
  broken answers (HTTP 500, invalid JSON).
- A socket that accepts connections and never answers (timeouts), and a closed port.

Expected values are read from the mockup's JSON files here, never from the collector.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from docstring_metrics import documented_fields, readme_metrics
from servers import installed

import computewatch.collectors.redfish as redfish_module
from computewatch import catalog
from computewatch.collectors import NoData
from computewatch.collectors.redfish import (
    EMITTED,
    ERROR_TYPES,
    RedfishCollector,
    RedfishEndpoint,
    environment_readings,
    power_control_watts,
    sensor_reading,
)
from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.samples import Sample, sample_value
from computewatch.validation import check_sample

MOCKUPS = Path(__file__).resolve().parent / "fixtures" / "redfish"
MOCKUP = MOCKUPS / "public-rackmount1"
LABELS = {"node": "bj-ai-n01", "site": "bj-ai", "cluster": "bj-ai-c1", "hub": "jjj"}
KWH = 3.6e6  # joules per kWh
PASSWORD = "Tr0ub4dor&3-redfish"  # must never reach a log line or a repr


def mockup_json(rel: str) -> dict[str, Any]:
    return json.loads((MOCKUP / rel / "index.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def mockup() -> Path:
    assert (MOCKUP / "index.json").is_file(), f"Redfish mockup missing at {MOCKUP}"
    return MOCKUP


@pytest.fixture(scope="module")
def expected(mockup) -> dict[str, float]:
    """The readings each power model gives for chassis 1U, straight from the mockup."""
    env = mockup_json("Chassis/1U/EnvironmentMetrics")
    power = mockup_json("Chassis/1U/Power")
    psu1 = mockup_json("Chassis/1U/PowerSubsystem/PowerSupplies/Bay1/Metrics")
    total_power = mockup_json("Chassis/1U/Sensors/TotalPower")
    total_energy = mockup_json("Chassis/1U/Sensors/TotalEnergy")
    assert mockup_json("Chassis/1U/PowerSubsystem/PowerSupplies/Bay2")["Status"]["State"] \
        == "Absent"
    assert total_energy["ReadingUnits"] == "kW.h"
    values = {
        "env_watts": env["PowerWatts"]["Reading"],
        "control_watts": power["PowerControl"][0]["PowerConsumedWatts"],
        "psu_input_watts": psu1["InputPowerWatts"]["Reading"],
        "psu_energy_kwh": psu1["EnergykWh"]["Reading"],
        "sensor_watts": total_power["Reading"],
        "sensor_energy_kwh": total_energy["Reading"],
    }
    # The values this file was written against (a changed mockup must be noticed).
    assert values == {"env_watts": 374, "control_watts": 344, "psu_input_watts": 937.4,
                      "psu_energy_kwh": 325675, "sensor_watts": 374,
                      "sensor_energy_kwh": 325675}
    return values


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sushy_static() -> str:
    beside = Path(sys.executable).with_name("sushy-static")
    found = str(beside) if beside.exists() else shutil.which("sushy-static")
    assert found is not None, "sushy-static (PyPI sushy-tools, the test extra) is not installed"
    return found


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    context = ssl._create_unverified_context()  # readiness only; the collector verifies
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sushy-static exited with {proc.returncode}: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/redfish/v1", timeout=1, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sushy-static at {url} not ready after 20 s")


class Sushy:
    """A running sushy-static; ``log`` holds what it printed (request headers included)."""

    def __init__(self, root: Path, workdir: Path, cert: tuple[Path, Path] | None = None):
        self.log_path = workdir / f"sushy-{secrets.token_hex(4)}.log"
        self.proc: subprocess.Popen | None = None
        scheme = "https" if cert else "http"
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = free_port()
            argv = [_sushy_static(), "-i", "127.0.0.1", "-p", str(port), "-m", str(root)]
            if cert:
                argv += ["-c", str(cert[0]), "-k", str(cert[1])]
            with self.log_path.open("ab") as out:
                self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                             env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin"})
            self.url = f"{scheme}://127.0.0.1:{port}"
            try:
                _wait_ready(self.url, self.proc, self.log_path)
                return
            except RuntimeError:
                self.stop()
                if _attempt == 2:
                    raise

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def sushy(mockup, tmp_path_factory) -> Iterator[Sushy]:
    server = Sushy(mockup, tmp_path_factory.mktemp("sushy"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sushy_tls(mockup, tmp_path_factory) -> Iterator[Sushy]:
    """sushy-static over HTTPS with a self-signed certificate for 127.0.0.1."""
    openssl = installed("openssl")  # makes the HTTPS server's certificate
    work = tmp_path_factory.mktemp("sushy-tls")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = Sushy(mockup, work, cert=(cert, key))
    try:
        yield server
    finally:
        server.stop()


class Stub(ThreadingHTTPServer):
    """A Redfish service on loopback that serves the mockup with the features under test."""

    daemon_threads = True

    def __init__(self, root: Path | None, *, fixed: tuple[int, bytes] | None = None,
                 user: str | None = None, password: str = "",
                 drop: dict[str, list[str]] | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None,
                 page_size: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.root, self.fixed = root, fixed
        self.user, self.password = user, password
        self.drop = drop or {}
        self.overrides = overrides or {}
        self.page_size = page_size
        self.tokens: dict[str, str] = {}  # token -> session URI
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.sessions_made = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def document(self, rel: str) -> dict[str, Any] | None:
        if rel in self.overrides:
            doc = copy.deepcopy(self.overrides[rel])
        else:
            path = (self.root / rel / "index.json") if self.root else None
            if path is None or not path.is_file():
                return None
            doc = json.loads(path.read_text(encoding="utf-8"))
        for key in self.drop.get(rel, []):
            doc.pop(key, None)
        return doc

    def gets(self) -> list[str]:
        return [p for m, p, _, _ in self.requests if m == "GET"]


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive replies in two writes would wait for ACKs
    server: Stub

    def log_message(self, format: str, *args: Any) -> None:  # quiet tests
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        return body

    def _error(self, status: int, message: str) -> None:
        self._reply(status, json.dumps({"error": {"code": "Base.1.8.GeneralError",
                                                  "message": message}}).encode())

    def _authorised(self) -> bool:
        srv = self.server
        if srv.user is None:
            return True
        basic = base64.b64encode(f"{srv.user}:{srv.password}".encode()).decode()
        return (self.headers.get("X-Auth-Token") in srv.tokens
                or self.headers.get("Authorization") == f"Basic {basic}")

    def do_GET(self) -> None:
        self._record()
        srv = self.server
        if srv.fixed is not None:
            self._reply(*srv.fixed)
            return
        if not self._authorised():
            self._error(401, "no valid session")
            return
        path, _, query = self.path.partition("?")
        rel = path.rstrip("/").removeprefix("/redfish/v1").strip("/")
        doc = srv.document(rel)
        if doc is None:
            self._error(404, f"{path} not found")
            return
        members = doc.get("Members")
        if srv.page_size and isinstance(members, list):
            skip = int(parse_qs(query).get("$skip", ["0"])[0])
            doc["Members"] = members[skip:skip + srv.page_size]
            if skip + srv.page_size < len(members):
                doc["Members@odata.nextLink"] = f"{path}?$skip={skip + srv.page_size}"
        self._reply(200, json.dumps(doc).encode())

    def do_POST(self) -> None:
        body = self._record()
        srv = self.server
        if self.path.rstrip("/") != "/redfish/v1/SessionService/Sessions" or srv.user is None:
            self._error(405, "not allowed")
            return
        if json.loads(body or b"{}") != {"UserName": srv.user, "Password": srv.password}:
            self._error(401, "login failed")
            return
        srv.sessions_made += 1
        token = secrets.token_hex(16)
        uri = f"/redfish/v1/SessionService/Sessions/{srv.sessions_made}"
        srv.tokens[token] = uri
        self._reply(201, json.dumps({"@odata.id": uri, "UserName": srv.user}).encode(),
                    {"X-Auth-Token": token, "Location": uri})

    def do_DELETE(self) -> None:
        self._record()
        token = self.headers.get("X-Auth-Token", "")
        if self.server.tokens.get(token) == self.path:
            del self.server.tokens[token]
            self._reply(204)
        else:
            self._error(401, "no such session")


@pytest.fixture
def make_stub() -> Iterator[Callable[..., Stub]]:
    started: list[Stub] = []

    def make(root: Path | None = MOCKUP, **kw: Any) -> Stub:
        server = Stub(root, **kw)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def make_collector() -> Iterator[Callable[..., RedfishCollector]]:
    made: list[RedfishCollector] = []

    def make(*endpoints: RedfishEndpoint, labels: dict[str, str] = LABELS) -> RedfishCollector:
        collector = RedfishCollector(labels, endpoints)
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


# --- helpers --------------------------------------------------------------------------------

def endpoint(url: str, **kw: Any) -> RedfishEndpoint:
    return RedfishEndpoint(url=url, **kw)


def collect(collector: RedfishCollector) -> list[Sample]:
    """One run; every sample must be one the catalogue accepts. A run that read nothing
    raises `NoData` with the error counters (``test_nothing_read_is_no_data...``): here its
    samples are returned like any run's."""
    try:
        samples = collector.collect()
    except NoData as exc:
        samples = list(exc.samples)
    codes = {f"redfish_{code}" for code in ERROR_TYPES}
    for s in samples:
        check_sample(s)
        assert s.name != "agent.collector_errors_total" or s.label("error_type") in codes
    return samples


def power(samples: list[Sample], field: str, source: str | None = None) -> float | None:
    return sample_value(samples, f"facility_power.{field}",
                        {"source": source} if source else None)


def errors(samples: list[Sample]) -> dict[str, float]:
    return {s.label("error_type"): s.value for s in samples
            if s.name == "agent.collector_errors_total"}


def source_of(url: str) -> str:
    return url.split("://", 1)[1]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "computewatch.collectors.redfish" and r.levelno >= logging.WARNING]


# --- readings from sushy-static -------------------------------------------------------------

def test_reads_chassis_power_and_energy_from_sushy_static(sushy, expected, make_collector):
    samples = collect(make_collector(endpoint(sushy.url)))
    src = source_of(sushy.url)
    meter = {"meter": f"{src}/1U", "scope": "it", "source": src, "site": "bj-ai",
             "cluster": "bj-ai-c1", "hub": "jjj"}
    assert {s.name: dict(s.labels) for s in samples} == {
        "facility_power.watts": meter, "facility_power.joules_total": meter}
    # watts: EnvironmentMetrics.PowerWatts; energy: the chassis sensor TotalEnergy, in kWh.
    assert sample_value(samples, "facility_power.watts") == expected["env_watts"] == 374
    assert sample_value(samples, "facility_power.joules_total") == pytest.approx(
        expected["sensor_energy_kwh"] * KWH)
    assert sample_value(samples, "facility_power.joules_total") == pytest.approx(1.17243e12)


def test_configured_meter_and_scope(sushy, expected, make_collector):
    c = make_collector(endpoint(sushy.url, chassis=["1U"], meter="bj-ai-r12-u07",
                                scope="facility"))
    samples = collect(c)
    assert sample_value(samples, "facility_power.watts",
                        {"meter": "bj-ai-r12-u07", "scope": "facility"}) == 374


def test_basic_auth_sends_the_credentials_to_sushy_static(sushy, make_collector, monkeypatch):
    monkeypatch.setenv("BMC_PASSWORD", PASSWORD)
    c = make_collector(endpoint(sushy.url, username="monitor-basic", password_env="BMC_PASSWORD",
                                auth="basic"))
    samples = collect(c)
    assert power(samples, "watts") == 374
    sent = base64.b64encode(f"monitor-basic:{PASSWORD}".encode()).decode()
    assert f"Authorization: Basic {sent}" in sushy.log  # sushy-static prints request headers


def test_session_auth_against_sushy_static_fails_clearly(sushy, make_collector, monkeypatch,
                                                         caplog):
    """sushy-static answers the login POST with 204 and no X-Auth-Token: no sessions."""
    monkeypatch.setenv("BMC_PASSWORD", PASSWORD)
    c = make_collector(endpoint(sushy.url, username="monitor", password_env="BMC_PASSWORD"))
    with caplog.at_level(logging.DEBUG, logger="computewatch.collectors.redfish"):
        samples = collect(c)
    assert power(samples, "watts") is None
    assert errors(samples) == {"redfish_auth_failed": 1.0}
    (line,) = warnings_of(caplog)
    assert "without an X-Auth-Token" in line and "auth: basic" in line
    assert f"{sushy.url}/redfish/v1/SessionService/Sessions" in line
    assert PASSWORD not in caplog.text


# --- every DMTF mockup of the fixtures, each served by a real sushy-static -------------------

def mockup_number(mockup: str, rel: str, *path: str | int) -> float:
    """A number from a mockup's JSON (to check the hand-read values below against)."""
    doc: Any = json.loads((MOCKUPS / mockup / rel / "index.json").read_text(encoding="utf-8"))
    for key in path:
        doc = doc[key]
    return doc


# Read by hand from the mockups' JSON: meter -> (watts, energy in kWh or None).
MOCKUP_READINGS: dict[str, dict[str, tuple[float, float | None]]] = {
    # Chassis/1U/EnvironmentMetrics PowerWatts.Reading 374; Sensors/TotalEnergy 325675 kWh.
    "public-rackmount1": {"1U": (374, 325675)},
    # Chassis/Tower/EnvironmentMetrics PowerWatts.Reading 974; Sensors/TotalEnergy 325675 kWh.
    "public-tower": {"Tower": (974, 325675)},
    # PowerEquipment/RackPDUs/1/Metrics: PowerWatts 6438, EnergykWh 56438; and the transfer
    # switch: PowerEquipment/TransferSwitches/1/Metrics 1500.1 W, 56438 kWh. The chassis PDU
    # and TransferSwitch1 are the same devices (Links.PowerDistribution); FloorPDUs/Row1 has
    # no Metrics and no Mains.
    "public-pdu": {"RackPDUs/1": (6438, 56438), "TransferSwitches/1": (1500.1, 56438)},
    # PowerEquipment/PowerShelves/1/Metrics: 6438 W, 56438 kWh (the chassis PowerShelf is the
    # same device).
    "public-power-shelf": {"PowerShelves/1": (6438, 56438)},
    # Chassis/1U: 374 W, 325675 kWh; Card1 and Card2 are ContainedBy 1U.
    "public-smartnic": {"1U": (374, 325675)},
    "public-liquid-cooled-server": {"1U": (374, 325675)},
    # Chassis/1/Power PowerControl[0].PowerConsumedWatts 224; no energy anywhere.
    "public-catfish": {"1": (224, None)},
}
# Mockups with no power to read, and what the refusal must say (in the schema's terms).
MOCKUP_REFUSALS: dict[str, tuple[str, ...]] = {
    # Chassis/MultiBladeEncl/Power: PowerSupplies[0, 1].LastPowerOutputWatts 650, 635 (DC
    # output), no PowerInputWatts, no EfficiencyPercent; Blade1-4 are ContainedBy it.
    "public-bladed": ("MultiBladeEncl: Power has no PowerControl PowerConsumedWatts; "
                      "Power.PowerSupplies report only DC output (LastPowerOutputWatts 650 W, "
                      "635 W), no PowerInputWatts, and no EfficiencyPercent to estimate the "
                      "input", "Blade1, Blade2, Blade3, Blade4: ContainedBy MultiBladeEncl"),
    "public-expansion-box": ("ExpansionEnclosure: Power has no PowerControl",
                             "LastPowerOutputWatts 650 W, 635 W",
                             "ResourceTray1, ResourceTray2, ResourceTray3, ResourceTray4: "
                             "ContainedBy ExpansionEnclosure"),
    # Chassis/Enclosure/Power: two PowerSupplies with neither input nor output.
    "public-bladed-partitions": ("Enclosure: Power has no PowerControl PowerConsumedWatts; "
                                 "Power.PowerSupplies report no PowerInputWatts",),
    # ThermalEquipment/CDUs/1 and Chassis/CDU: temperature and humidity, no power.
    "public-cooling-unit": ("CDUs/1: EnvironmentMetrics has no PowerWatts, EnergyJoules or "
                            "EnergykWh reading", "CDU: EnvironmentMetrics has no PowerWatts"),
}


def test_the_hand_read_mockup_values_are_what_the_json_says():
    assert mockup_number("public-pdu", "PowerEquipment/RackPDUs/1/Metrics", "PowerWatts",
                         "Reading") == 6438
    assert mockup_number("public-pdu", "PowerEquipment/RackPDUs/1/Metrics", "EnergykWh",
                         "Reading") == 56438
    assert mockup_number("public-pdu", "PowerEquipment/TransferSwitches/1/Metrics",
                         "PowerWatts", "Reading") == 1500.1
    assert mockup_number("public-power-shelf", "PowerEquipment/PowerShelves/1/Metrics",
                         "PowerWatts", "Reading") == 6438
    assert mockup_number("public-tower", "Chassis/Tower/EnvironmentMetrics", "PowerWatts",
                         "Reading") == 974
    assert mockup_number("public-catfish", "Chassis/1/Power", "PowerControl", 0,
                         "PowerConsumedWatts") == 224
    for m in ("public-smartnic", "public-liquid-cooled-server", "public-rackmount1"):
        assert mockup_number(m, "Chassis/1U/EnvironmentMetrics", "PowerWatts", "Reading") == 374
        assert mockup_number(m, "Chassis/1U/Sensors/TotalEnergy", "Reading") == 325675
    assert [mockup_number("public-bladed", "Chassis/MultiBladeEncl/Power", "PowerSupplies", i,
                          "LastPowerOutputWatts") for i in (0, 1)] == [650, 635]
    every = {p.name for p in MOCKUPS.iterdir() if p.is_dir()}
    assert every == set(MOCKUP_READINGS) | set(MOCKUP_REFUSALS)  # no mockup left untested


@pytest.mark.parametrize("name", sorted(MOCKUP_READINGS))
def test_each_mockup_is_read_right(name, tmp_path, make_collector):
    server = Sushy(MOCKUPS / name, tmp_path)
    try:
        c = make_collector(endpoint(server.url))
        src = source_of(server.url)
        for _ in range(2):  # discovery, then the planned reads
            samples = collect(c)
            assert errors(samples) == {}
            meters = {s.label("meter") for s in samples if s.measurement == "facility_power"}
            assert meters == {f"{src}/{m}" for m in MOCKUP_READINGS[name]}
            for meter, (watts, kwh) in MOCKUP_READINGS[name].items():
                labels = {"meter": f"{src}/{meter}"}
                assert sample_value(samples, "facility_power.watts", labels) == watts
                energy = sample_value(samples, "facility_power.joules_total", labels)
                assert energy == (None if kwh is None else pytest.approx(kwh * KWH))
    finally:
        server.stop()


@pytest.mark.parametrize("name", sorted(MOCKUP_REFUSALS))
def test_each_mockup_without_power_is_refused_with_the_reason_in_schema_terms(
        name, tmp_path, make_collector, caplog):
    server = Sushy(MOCKUPS / name, tmp_path)
    try:
        c = make_collector(endpoint(server.url))
        with caplog.at_level(logging.WARNING), pytest.raises(NoData) as info:
            c.collect()
    finally:
        server.stop()
    text = str(info.value)
    assert text.startswith(f"redfish: no reading from the endpoint: {source_of(server.url)}: "
                           "unsupported: no power or energy reading in the service")
    for part in MOCKUP_REFUSALS[name]:
        assert part in text
    samples = list(info.value.samples)
    assert errors(samples) == {"redfish_unsupported": 1.0}
    # What the service lacks is not a parse error.
    assert sample_value(samples, "agent.parse_errors_total") is None
    (line,) = warnings_of(caplog)
    assert MOCKUP_REFUSALS[name][0] in line


def test_power_equipment_can_be_listed_like_a_chassis(make_stub, make_collector):
    stub = make_stub(MOCKUPS / "public-pdu")
    c = make_collector(endpoint(stub.url, chassis=["RackPDUs/1"], meter="pdu-r42"))
    samples = collect(c)
    assert errors(samples) == {}
    assert sample_value(samples, "facility_power.watts", {"meter": "pdu-r42"}) == 6438
    stub.requests.clear()
    collect(c)
    assert stub.gets() == ["/redfish/v1/PowerEquipment/RackPDUs/1/Metrics"]  # one GET a run


def test_a_unit_fed_by_another_unit_of_the_service_is_counted_in_it(make_stub, make_collector):
    """RackPDUs/1's mains fed by an outlet of TransferSwitches/1: only the switch counts."""
    mains = json.loads((MOCKUPS / "public-pdu" / "PowerEquipment/RackPDUs/1/Mains/AC1" /
                        "index.json").read_text(encoding="utf-8"))
    mains["Links"] = {"PowerOutlet": {
        "@odata.id": "/redfish/v1/PowerEquipment/TransferSwitches/1/Outlets/A1"}}
    stub = make_stub(MOCKUPS / "public-pdu",
                     overrides={"PowerEquipment/RackPDUs/1/Mains/AC1": mains})
    samples = collect(make_collector(endpoint(stub.url)))
    assert {s.label("meter") for s in samples if s.measurement == "facility_power"} == {
        f"{source_of(stub.url)}/TransferSwitches/1"}


def _four_chassis_of_one_system(watts: list[float]) -> dict[str, dict[str, Any]]:
    """rackmount1 with its one chassis replaced by four that link the same system."""
    system = {"@odata.id": "/redfish/v1/Systems/437XR1138R2"}
    docs: dict[str, dict[str, Any]] = {"Chassis": {"Members": [
        {"@odata.id": f"/redfish/v1/Chassis/Node{i}"} for i in range(len(watts))]}}
    for i, w in enumerate(watts):
        env = f"/redfish/v1/Chassis/Node{i}/EnvironmentMetrics"
        docs[f"Chassis/Node{i}"] = {"@odata.id": f"/redfish/v1/Chassis/Node{i}",
                                    "Id": f"Node{i}", "EnvironmentMetrics": {"@odata.id": env},
                                    "Links": {"ComputerSystems": [system]}}
        docs[f"Chassis/Node{i}/EnvironmentMetrics"] = {"PowerWatts": {"Reading": w}}
    return docs


def test_chassis_that_duplicate_each_other_are_counted_once(make_stub, make_collector, caplog):
    stub = make_stub(overrides=_four_chassis_of_one_system([8000.0] * 4))
    with caplog.at_level(logging.INFO, logger="computewatch.collectors.redfish"):
        samples = collect(make_collector(endpoint(stub.url)))
    power = [s for s in samples if s.name == "facility_power.watts"]
    assert [(s.label("meter"), s.value) for s in power] == [
        (f"{source_of(stub.url)}/Node0", 8000.0)]  # not 4 x 8000 W
    assert sum("duplicates Node0" in r.getMessage() for r in caplog.records) == 3
    # Chassis of one system that read differently are separate parts (blades of a
    # partition): each counts.
    stub = make_stub(overrides=_four_chassis_of_one_system([800.0, 700.0, 800.0, 650.0]))
    samples = collect(make_collector(endpoint(stub.url)))
    assert sorted(s.value for s in samples if s.name == "facility_power.watts") == [
        650.0, 700.0, 800.0]  # Node2 duplicates Node0


def test_a_power_subsystem_link_to_a_sensor_collection_is_read_as_sensors(
        make_stub, make_collector, expected):
    chassis = mockup_json("Chassis/1U")
    chassis["PowerSubsystem"] = {"@odata.id": "/redfish/v1/Chassis/1U/Sensors"}
    for key in ("EnvironmentMetrics", "Sensors", "Power"):
        chassis.pop(key)
    stub = make_stub(overrides={"Chassis/1U": chassis})
    samples = collect(make_collector(endpoint(stub.url)))
    assert errors(samples) == {}
    assert power(samples, "watts") == expected["sensor_watts"] == 374
    assert power(samples, "joules_total") == pytest.approx(expected["sensor_energy_kwh"] * KWH)


def test_dc_output_only_psus_give_an_estimate_only_from_their_stated_efficiency(
        make_stub, make_collector, caplog):
    # The PowerSubsystem model: Bay1 (Bay2 is absent) with OutputPowerWatts only. Its
    # EfficiencyRatings are 75 % at 25 % load, 85 % at 50 %, 80 % at 90 %, and its
    # PowerCapacityWatts is 400: 150 W out is 37.5 % load, 75 + (37.5 - 25) / 25 x 10 = 80 %
    # efficient, so 150 / 0.80 = 187.5 W in.
    bay1 = mockup_json("Chassis/1U/PowerSubsystem/PowerSupplies/Bay1")
    assert bay1["PowerCapacityWatts"] == 400 and bay1["EfficiencyRatings"][:2] == [
        {"LoadPercent": 25, "EfficiencyPercent": 75}, {"LoadPercent": 50, "EfficiencyPercent": 85}]
    metrics = {"OutputPowerWatts": {"Reading": 150}}
    stub = make_stub(drop={"Chassis/1U": ["EnvironmentMetrics", "Sensors", "Power"]},
                     overrides={"Chassis/1U/PowerSubsystem/PowerSupplies/Bay1/Metrics": metrics})
    with caplog.at_level(logging.INFO, logger="computewatch.collectors.redfish"):
        samples = collect(make_collector(endpoint(stub.url)))
    assert power(samples, "watts") == pytest.approx(187.5)
    assert any("watts is an estimate: PowerSupplies OutputPowerWatts / EfficiencyRatings" in
               r.getMessage() for r in caplog.records)  # and it says so
    # The legacy model: the expansion box's two PSUs (650 W and 635 W DC out) with a measured
    # EfficiencyPercent of 92 and 90 added: 650 / 0.92 + 635 / 0.90 W in.
    power_doc = json.loads((MOCKUPS / "public-expansion-box" / "Chassis/ExpansionEnclosure/Power"
                            / "index.json").read_text(encoding="utf-8"))
    for psu, eff in zip(power_doc["PowerSupplies"], (92, 90), strict=True):
        psu["EfficiencyPercent"] = eff
    stub = make_stub(MOCKUPS / "public-expansion-box",
                     overrides={"Chassis/ExpansionEnclosure/Power": power_doc})
    samples = collect(make_collector(endpoint(stub.url)))
    assert power(samples, "watts") == pytest.approx(650 / 0.92 + 635 / 0.90)
    # Without any stated efficiency there is no estimate: test_each_mockup_without_power_...


def test_a_listed_chassis_without_power_is_unsupported_not_a_parse_error(
        make_stub, make_collector, caplog):
    stub = make_stub(MOCKUPS / "public-bladed")
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(stub.url, chassis=["Blade1"])))
    assert errors(samples) == {"redfish_unsupported": 1.0}
    assert sample_value(samples, "agent.parse_errors_total") is None
    (line,) = warnings_of(caplog)
    assert "chassis Blade1: the chassis reports no power or energy: links none of " \
           "EnvironmentMetrics, Sensors, Power, PowerSubsystem" in line


# --- each power model on its own (the stub serves the mockup with links removed) ----------

@pytest.mark.parametrize(("keep", "watts_key", "energy_key"), [
    ("EnvironmentMetrics+Sensors", "env_watts", "sensor_energy_kwh"),
    ("Sensors", "sensor_watts", "sensor_energy_kwh"),
    ("Power", "control_watts", None),
    ("PowerSubsystem", "psu_input_watts", "psu_energy_kwh"),
])
def test_each_power_model(keep, watts_key, energy_key, expected, make_stub, make_collector):
    links = ["EnvironmentMetrics", "Sensors", "Power", "PowerSubsystem"]
    drop = [k for k in links if k not in keep.split("+")]
    stub = make_stub(drop={"Chassis/1U": drop})
    samples = collect(make_collector(endpoint(stub.url)))
    assert errors(samples) == {}
    assert power(samples, "watts") == pytest.approx(expected[watts_key])
    if energy_key is None:  # the legacy model has no energy counter: watts only
        assert power(samples, "joules_total") is None
    else:
        assert power(samples, "joules_total") == pytest.approx(expected[energy_key] * KWH)


def test_later_runs_get_only_the_planned_resources(make_stub, make_collector):
    stub = make_stub()
    c = make_collector(endpoint(stub.url))
    collect(c)
    assert len(stub.gets()) > 40  # discovery walked the sensors
    stub.requests.clear()
    samples = collect(c)
    assert power(samples, "watts") == 374
    assert sorted(stub.gets()) == ["/redfish/v1/Chassis/1U/EnvironmentMetrics",
                                   "/redfish/v1/Chassis/1U/Sensors/TotalEnergy"]


def test_collections_are_followed_across_nextlink_pages(expected, make_stub, make_collector):
    stub = make_stub(page_size=10)  # the 41 sensors come in five pages; TotalEnergy is 34th
    samples = collect(make_collector(endpoint(stub.url)))
    assert power(samples, "joules_total") == pytest.approx(expected["sensor_energy_kwh"] * KWH)
    assert "/redfish/v1/Chassis/1U/Sensors?$skip=40" in stub.gets()


def test_a_contained_chassis_is_part_of_its_container(make_stub, make_collector):
    chassis = mockup_json("Chassis")
    chassis["Members"].append({"@odata.id": "/redfish/v1/Chassis/Blade1"})
    blade = {"@odata.id": "/redfish/v1/Chassis/Blade1", "Id": "Blade1",
             "EnvironmentMetrics": {"@odata.id": "/redfish/v1/Chassis/Blade1/EnvironmentMetrics"},
             "Links": {"ContainedBy": {"@odata.id": "/redfish/v1/Chassis/1U"}}}
    env = {"PowerWatts": {"Reading": 120.5}}
    stub = make_stub(overrides={"Chassis": chassis, "Chassis/Blade1": blade,
                                "Chassis/Blade1/EnvironmentMetrics": env})
    default = collect(make_collector(endpoint(stub.url)))
    assert {s.label("meter") for s in default if s.measurement == "facility_power"} == {
        f"{source_of(stub.url)}/1U"}
    listed = collect(make_collector(endpoint(stub.url, chassis=["Blade1"], meter="blade")))
    assert sample_value(listed, "facility_power.watts", {"meter": "blade"}) == 120.5


# --- sessions (sushy-static has none: the stub implements them) ----------------------------

def test_session_login_relogin_on_401_and_logout(make_stub, make_collector, monkeypatch,
                                                 caplog):
    monkeypatch.setenv("BMC_PASSWORD", PASSWORD)
    stub = make_stub(user="monitor", password=PASSWORD)
    c = make_collector(endpoint(stub.url, username="monitor", password_env="BMC_PASSWORD"))
    with caplog.at_level(logging.DEBUG, logger="computewatch.collectors.redfish"):
        assert power(collect(c), "watts") == 374
        posts = [(p, b) for m, p, _, b in stub.requests if m == "POST"]
        assert posts == [("/redfish/v1/SessionService/Sessions",
                          json.dumps({"UserName": "monitor", "Password": PASSWORD}).encode())]
        gets = [h for m, _, h, _ in stub.requests if m == "GET"]
        assert all(h.get("X-Auth-Token") in stub.tokens for h in gets)
        assert not any("Authorization" in h for h in gets)

        stub.tokens.clear()  # the BMC forgot the session (reboot, timeout)
        samples = collect(c)
        assert power(samples, "watts") == 374
        assert errors(samples) == {}
        assert stub.sessions_made == 2  # one new login, then the reading

        (token,) = stub.tokens
        c.close()
    assert stub.requests[-1][:2] == ("DELETE", "/redfish/v1/SessionService/Sessions/2")
    assert stub.requests[-1][2]["X-Auth-Token"] == token
    assert stub.tokens == {}
    assert PASSWORD not in caplog.text


def test_basic_auth_does_not_log_in(make_stub, make_collector, tmp_path):
    secret = tmp_path / "bmc.pass"
    stub = make_stub(user="monitor", password=PASSWORD)
    c = make_collector(endpoint(stub.url, username="monitor", password_file=secret,
                                auth="basic"))
    secret.write_text(PASSWORD + "\n", encoding="utf-8")  # read on first connect, not before
    assert power(collect(c), "watts") == 374
    assert [m for m, *_ in stub.requests if m != "GET"] == []
    assert stub.sessions_made == 0


def test_refused_login_is_counted_and_the_password_never_shown(make_stub, make_collector,
                                                               monkeypatch, caplog):
    monkeypatch.setenv("BMC_PASSWORD", PASSWORD)
    stub = make_stub(user="monitor", password="something-else")
    c = make_collector(endpoint(stub.url, username="monitor", password_env="BMC_PASSWORD"))
    with caplog.at_level(logging.DEBUG):
        samples = collect(c)
        collect(c)
    assert errors(samples) == {"redfish_auth_failed": 1.0}
    (line,) = warnings_of(caplog)
    assert "login refused (HTTP 401)" in line and "'monitor'" in line
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(c) and PASSWORD not in repr(c._states)


def test_a_missing_password_variable_is_named(make_stub, make_collector, monkeypatch, caplog):
    monkeypatch.delenv("NO_SUCH_BMC_PASSWORD", raising=False)
    stub = make_stub(user="monitor", password=PASSWORD)
    c = make_collector(endpoint(stub.url, username="monitor",
                                password_env="NO_SUCH_BMC_PASSWORD"))
    with caplog.at_level(logging.WARNING):
        samples = collect(c)
    assert errors(samples) == {"redfish_auth_failed": 1.0}
    assert "NO_SUCH_BMC_PASSWORD (password_env) is not set" in warnings_of(caplog)[0]


# --- TLS ------------------------------------------------------------------------------------

def test_https_to_a_plain_http_server_fails_clearly(sushy, make_collector, caplog):
    url = sushy.url.replace("http://", "https://")
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(url)))
    assert power(samples, "watts") is None
    assert errors(samples) == {"redfish_tls_error": 1.0}
    (line,) = warnings_of(caplog)
    assert "TLS handshake failed" in line and "speaking https" in line and url in line


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_unless_the_endpoint_opts_out(sushy_tls, make_collector, caplog):
    assert endpoint(sushy_tls.url).verify_tls is True  # the default
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(sushy_tls.url)))
    assert power(samples, "watts") is None
    assert errors(samples) == {"redfish_tls_error": 1.0}
    assert "certificate not trusted" in warnings_of(caplog)[0]
    assert "verify_tls: false" in warnings_of(caplog)[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(sushy_tls.url, verify_tls=False)))
    assert power(samples, "watts") == 374
    assert errors(samples) == {}
    assert any("verification is off" in m for m in warnings_of(caplog))


# --- failures: counted, logged once per episode with the source, never raised ------------------

def test_http_500_is_counted_logged_once_and_recovers(make_stub, make_collector, caplog):
    stub = make_stub(fixed=(500, b'{"error": {"message": "BMC busy"}}'))
    c = make_collector(endpoint(stub.url))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            samples = collect(c)
    assert errors(samples) == {"redfish_http_error": 3.0}
    (line,) = warnings_of(caplog)
    assert "HTTP 500" in line and "BMC busy" in line and f"{stub.url}/redfish/v1" in line

    stub.fixed = None
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        samples = collect(c)
    assert power(samples, "watts") == 374
    assert errors(samples) == {"redfish_http_error": 3.0}  # a counter: kept, never reset
    assert warnings_of(caplog) == [f"redfish: {source_of(stub.url)}: recovered"]


def test_invalid_json_is_a_parse_error_of_its_source(make_stub, make_collector, caplog):
    stub = make_stub(fixed=(200, b"<html>BMC login page</html>"))
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(stub.url)))
    assert errors(samples) == {"redfish_invalid_json": 1.0}
    assert sample_value(samples, "agent.parse_errors_total",
                        {"collector": "redfish", "source": source_of(stub.url)}) == 1.0
    (line,) = warnings_of(caplog)
    assert "not JSON" in line and "<html>BMC" in line and stub.url in line


def test_unreachable_port(make_collector, caplog):
    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(url)))
    assert samples == [s for s in samples if s.measurement == "agent"]
    assert errors(samples) == {"redfish_unreachable": 1.0}
    (line,) = warnings_of(caplog)
    assert "Connection refused" in line and url in line


def test_a_service_that_never_answers_times_out(silent_port, make_collector, caplog):
    url = f"http://127.0.0.1:{silent_port}"
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(url, timeout="500ms")))
    assert errors(samples) == {"redfish_timeout": 1.0}
    (line,) = warnings_of(caplog)
    assert "no answer within 0.5 s" in line and url in line


def test_a_missing_property_is_counted_then_another_source_is_used(
        make_stub, make_collector, expected, caplog):
    stub = make_stub()
    c = make_collector(endpoint(stub.url))
    assert power(collect(c), "watts") == expected["env_watts"]
    stub.drop = {"Chassis/1U/EnvironmentMetrics": ["PowerWatts"]}
    with caplog.at_level(logging.WARNING):
        samples = collect(c)
    assert power(samples, "watts") is None  # lost for this run only
    assert power(samples, "joules_total") == pytest.approx(expected["sensor_energy_kwh"] * KWH)
    assert errors(samples) == {"redfish_missing_field": 1.0}
    assert sample_value(samples, "agent.parse_errors_total",
                        {"source": source_of(stub.url)}) == 1.0
    (line,) = warnings_of(caplog)
    assert "PowerWatts.Reading is None" in line
    assert f"{stub.url}/redfish/v1/Chassis/1U/EnvironmentMetrics" in line
    samples = collect(c)  # discovery again: the chassis power sensor TotalPower
    assert power(samples, "watts") == expected["sensor_watts"]
    assert errors(samples) == {"redfish_missing_field": 1.0}


def test_a_listed_chassis_that_does_not_exist(sushy, make_collector, caplog):
    with caplog.at_level(logging.WARNING):
        samples = collect(make_collector(endpoint(sushy.url, chassis=["1U", "2U"])))
    assert power(samples, "watts") == 374  # the one that exists is still read
    assert errors(samples) == {"redfish_missing_field": 1.0}
    assert "no chassis '2U' (the service has: 1U)" in warnings_of(caplog)[0]


def test_good_endpoint_reports_beside_broken_ones(sushy, expected, make_stub, silent_port,
                                                  make_collector, caplog):
    broken = make_stub(fixed=(500, b""))
    garbled = make_stub(fixed=(200, b"{not json"))
    c = make_collector(
        endpoint(f"http://127.0.0.1:{free_port()}"),
        endpoint(broken.url),
        endpoint(sushy.url),
        endpoint(garbled.url),
        endpoint(f"http://127.0.0.1:{silent_port}", timeout=0.5),
    )
    with caplog.at_level(logging.WARNING):
        samples = collect(c)
    src = source_of(sushy.url)
    assert power(samples, "watts", src) == expected["env_watts"]
    assert power(samples, "joules_total", src) == pytest.approx(
        expected["sensor_energy_kwh"] * KWH)
    assert {s.label("source") for s in samples if s.measurement == "facility_power"} == {src}
    assert errors(samples) == {"redfish_unreachable": 1.0, "redfish_http_error": 1.0,
                               "redfish_invalid_json": 1.0, "redfish_timeout": 1.0}
    assert len(warnings_of(caplog)) == 4


def test_every_endpoint_failing_still_returns_the_counters(make_collector):
    c = make_collector(endpoint(f"http://127.0.0.1:{free_port()}"),
                       endpoint(f"http://127.0.0.1:{free_port()}"))
    samples = collect(c)
    assert errors(samples) == {"redfish_unreachable": 2.0}
    assert all(s.label("node") == "bj-ai-n01" for s in samples)


# --- configuration --------------------------------------------------------------------------

def load(text: str) -> RedfishEndpoint:
    return load_yaml_model_from_text(text, RedfishEndpoint, source_name="node.yaml")


def test_config_defaults_and_durations():
    ep = load("url: https://10.3.0.21/\ntimeout: 500ms\n")
    assert (ep.url, ep.source, ep.timeout, ep.auth, ep.verify_tls, ep.scope, ep.chassis) == (
        "https://10.3.0.21", "10.3.0.21:443", 0.5, "session", True, "it", [])
    assert load("url: http://127.0.0.1:8000").source == "127.0.0.1:8000"


@pytest.mark.parametrize(("text", "message"), [
    ("url: http://10.3.0.21", "node.yaml:1: url: plain http is allowed only to a loopback"),
    ("url: https://bmc/redfish/v1", "node.yaml:1: url: must be the service's address only"),
    ("url: https://admin:hunter2@bmc", "node.yaml:1: url: credentials do not belong in the url"),
    ("url: https://bmc\nusername: admin\npassword: hunter2",
     "node.yaml:3: password: a password is never written in the config"),
    ("url: https://bmc\nusername: admin\npassword_env: hunter2!",
     "node.yaml:3: password_env: must be the name of an environment variable"),
    ("url: https://bmc\nusername: admin", "node.yaml:2: username: needs password_env or"),
    ("url: https://bmc\nusername: a\npassword_env: P\npassword_file: /p",
     "node.yaml:4: password_file: set password_env or password_file, not both"),
    ("url: https://bmc\nscope: datacenter", "node.yaml:2: scope: must be 'facility', 'it'"),
    ("url: https://bmc\nverify: false", "unknown key 'verify'"),
])
def test_config_errors_name_the_field_and_never_echo_a_secret(text, message):
    with pytest.raises(ConfigError) as err:
        load(text)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


def test_no_secret_in_a_repr(monkeypatch, make_stub, make_collector):
    monkeypatch.setenv("BMC_PASSWORD", PASSWORD)
    stub = make_stub(user="monitor", password=PASSWORD)
    c = make_collector(endpoint(stub.url, username="monitor", password_env="BMC_PASSWORD"))
    collect(c)
    (token,) = stub.tokens
    shown = repr(c) + repr(c._states) + repr(c._states[0].ep)
    assert PASSWORD not in shown and token not in shown


# --- pure reading of the mockup's documents --------------------------------------------------

def test_power_control_parts_are_not_added_to_the_chassis(mockup):
    doc = mockup_json("Chassis/1U/Power")
    uri = "/redfish/v1/Chassis/1U/Power"
    assert power_control_watts(uri, doc).terms[0].path == ("PowerControl", 0,
                                                           "PowerConsumedWatts")
    doc["PowerControl"].append({"MemberId": "1", "PhysicalContext": "CPUSubsystem",
                                "PowerConsumedWatts": 150})
    doc["PowerControl"].append({"MemberId": "2", "Name": "Feed B", "PowerConsumedWatts": 90})
    assert [t.path[1] for t in power_control_watts(uri, doc).terms] == [0, 2]


def test_only_whole_chassis_sensors_qualify(mockup):
    sensors = mockup_json("Chassis/1U/Sensors")
    found = {}
    for m in sensors["Members"]:
        uri = m["@odata.id"]
        hit = sensor_reading(uri, mockup_json(uri.removeprefix("/redfish/v1/")))
        if hit is not None:
            found[uri.rsplit("/", 1)[1]] = (hit[0], hit[2].terms[0].scale)
    # CPU1Power (CPU) and PS1InputPower / PS1Energy (PowerSupply) are parts, not the chassis.
    assert found == {"TotalPower": ("watts", 1.0), "TotalEnergy": ("joules", KWH)}


def test_a_per_line_power_sensor_is_a_part(mockup):
    doc = mockup_json("Chassis/1U/Sensors/TotalPower")
    doc["ElectricalContext"] = "Line1"
    assert sensor_reading("/redfish/v1/Chassis/1U/Sensors/L1Power", doc) is None


def test_environment_metrics_energy_in_kwh_or_joules(mockup):
    doc = mockup_json("Chassis/1U/EnvironmentMetrics")
    watts, joules = environment_readings("/x", doc)
    assert watts is not None and watts.terms[0].path == ("PowerWatts", "Reading")
    assert joules is None  # the mockup's chassis EnvironmentMetrics has no energy
    doc["EnergykWh"] = {"Reading": 12.5}
    _, joules = environment_readings("/x", doc)
    assert (joules.terms[0].path, joules.terms[0].scale) == (("EnergykWh", "Reading"), KWH)
    doc["EnergyJoules"] = {"Reading": 45e6}  # finer: preferred when both are there
    _, joules = environment_readings("/x", doc)
    assert (joules.terms[0].path, joules.terms[0].scale) == (("EnergyJoules", "Reading"), 1.0)


# --- the contract ---------------------------------------------------------------------------

def test_docstring_metrics_table_matches_the_catalogue():
    doc = readme_metrics(redfish_module)
    documented = {f"facility_power.{f}" for f in documented_fields(doc, "facility_power")}
    documented |= {f"agent.{f}" for f in documented_fields(doc, "agent")}
    assert documented == set(EMITTED)
    assert [m.name for m in RedfishCollector({}, []).describe()] == list(EMITTED)
    for name in EMITTED:
        catalog.metric(name)  # raises for a name the catalogue does not declare
