"""The SNMP collector against real snmpsim-command-responder processes on loopback.

The simulator serves the device recordings of the snmpsim-data package, one per community
(and SNMPv3 context): ``public`` is the APC AP8641 recording copied to ``public.snmprec``;
the Eaton UPS recordings are bz2-compressed and decompressed first. Every power or UPS
recording of the package is also served under its own name for ``profile: auto``. Every
expected value below was read from the ``.snmprec`` files and converted by hand.
"""

from __future__ import annotations

import asyncio
import bz2
import importlib.util
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import snmpsim_data
from docstring_metrics import readme_metrics

import computewatch.collectors.snmp as snmp_module
from computewatch import catalog
from computewatch.collectors import DriverAbsent, NoData
from computewatch.collectors.snmp import (
    EMITTED,
    ERROR_TYPES,
    SnmpCollector,
    SnmpDevice,
    load_profile,
    shipped_profiles,
)
from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.samples import Sample, sample_value
from computewatch.validation import check_sample

DATA = Path(snmpsim_data.__file__).parent / "data"
RECORDINGS = DATA / "UPS"
RESPONDER = Path(sys.executable).with_name("snmpsim-command-responder")
PLACE = {"node": "bj-ai-gw0", "site": "bj-ai", "cluster": "bj-ai-c1", "hub": "jjj"}
V3_USER, V3_KEY = "watcher", "watcher-auth-key"
FAST = {"timeout": 0.5, "retries": 0}

# pysnmp 7.1 warns about its own camelCase internals when an engine starts.
pytestmark = pytest.mark.filterwarnings("ignore:.* is deprecated. Please use:DeprecationWarning")

# Values read from the recordings, by hand:
AP8641_RPDU2_W = 121 * 10.0  # rPDU2DeviceStatusPower.1 = 121 hundredths of kW
AP8641_RPDU2_J = 19516 * 360_000.0  # rPDU2DeviceStatusEnergy.1 = 19516 tenths of kWh
AP8641_LEGACY_W = 1230.0  # rPDUIdentDevicePowerWatts.0
AP8932_RPDU2_W = 16 * 10.0
AP8932_RPDU2_J = 6426 * 360_000.0
AP7902B_LEGACY_W = 192.0  # its rPDU2 power and energy columns answer -1
EATON_93E_W = 5100 + 3600 + 2700.0  # upsOutputPower.1-3 and xupsOutputWatts.1-3 agree
EATON_93E_LOAD_X_RATING_W = 0.21 * 72090  # xupsOutputLoad.0 = 21 %, upsConfigOutputPower.0
EATON_9PX_W = 50.0  # xupsOutputWatts.1
EATON_9PX_J = 533733 * 3600.0  # xupsOutputCumulativePowerUsage.0 = 533733 Wh


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int, community: str = "public") -> bool:
    """One raw SNMP GET of sysUpTime (not through the collector under test)."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
    )

    async def probe() -> bool:
        engine = SnmpEngine()
        try:
            target = await UdpTransportTarget.create(("127.0.0.1", port), timeout=0.3, retries=0)
            indication, *_ = await get_cmd(engine, CommunityData(community, mpModel=1), target,
                                           ContextData(),
                                           ObjectType(ObjectIdentity("1.3.6.1.2.1.1.3.0")),
                                           lookupMib=False)
            return indication is None
        finally:
            engine.close_dispatcher()

    return asyncio.run(probe())


@pytest.fixture(scope="module")
def simulator(tmp_path_factory, request) -> int:
    """One snmpsim-command-responder serving every recording; returns its UDP port."""
    root = tmp_path_factory.mktemp("snmpsim")
    data, cache = root / "data", root / "cache"
    data.mkdir()
    cache.mkdir()
    shutil.copy(RECORDINGS / "apc-8641.snmprec", data / "public.snmprec")
    for name in ("apc-7902b", "apc-8932"):
        shutil.copy(RECORDINGS / f"{name}.snmprec", data / f"{name}.snmprec")
    for name, community in (("eaton-93e-80", "eaton-93e"), ("eaton-9px-partial", "eaton-9px")):
        with bz2.open(RECORDINGS / f"{name}.snmprec.bz2") as src:
            (data / f"{community}.snmprec").write_bytes(src.read())
    for rel in AUTO_RECORDINGS:  # each under its own name, for profile: auto
        path = DATA / rel
        text = bz2.decompress(path.read_bytes()) if path.suffix == ".bz2" else path.read_bytes()
        name = path.name.removesuffix(".bz2").removesuffix(".snmprec")
        if name == "juniper-ac":
            text = _trim_juniper(text)
        (data / f"{name}.snmprec").write_bytes(text)
    port = free_udp_port()
    argv = [str(RESPONDER), f"--data-dir={data}", f"--agent-udpv4-endpoint=127.0.0.1:{port}",
            f"--cache-dir={cache}", f"--v3-user={V3_USER}", f"--v3-auth-key={V3_KEY}",
            "--v3-auth-proto=SHA"]
    if os.geteuid() == 0:  # it insists on dropping root, then cannot import from /root
        argv += ["--process-user=root", "--process-group=root"]
    log_path = root / "responder.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    request.addfinalizer(stop)
    # It indexes ~20 recordings before it answers: seconds when quiet, more than 20 beside
    # other runs on 2 cores (18 setup errors so, 6 December); the wait ends when it answers.
    deadline = time.monotonic() + 90
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("snmpsim-command-responder did not come up:\n"
                        + log_path.read_text(errors="replace")[-3000:])
    return port


AUTO_RECORDINGS = (
    *(f"UPS/{p.name}" for p in sorted(RECORDINGS.iterdir()) if ".snmprec" in p.name),
    "network/appliance/tripplite-poweralert.snmprec",  # a Tripp Lite ATS PDU
    "bmc/hp-onboard-administrator.snmprec.bz2",  # a blade enclosure's power supplies
    "iot/geist-temperature-sensor.snmprec",  # no power at all
)
"""Every recording of snmpsim-data with power, UPS or PDU objects (grep of the package for
UPS-MIB and the vendors' enterprise numbers), and two without, for profile: auto."""

_JUNIPER_TABLES = re.compile(rb"^1\.3\.6\.1\.4\.1\.14525\.4\.(4|5|9|14)\.")


def _trim_juniper(text: bytes) -> bytes:
    """juniper-ac (filed under UPS/, a Trapeze/Juniper wireless controller) without its four
    access-point and client tables: 1.77 M of its 1.78 M lines, which snmpsim would index
    for minutes. Nothing profile: auto asks for lies in them (the same GETs and GETNEXTs
    answer alike)."""
    return b"".join(line for line in text.splitlines(keepends=True)
                    if not _JUNIPER_TABLES.match(line))


def device(port: int, profile: str, community: str = "public", **kw) -> SnmpDevice:
    return SnmpDevice(host="127.0.0.1", port=port, community=community, profile=profile,
                      meter=kw.pop("meter", community), **kw)


def collect(collector: SnmpCollector) -> list[Sample]:
    """One run; every sample must be one the catalogue accepts. A run that read nothing
    raises `NoData` with the error counters (`test_a_collector_that_reads_nothing_...`):
    here its samples are returned like any run's."""
    try:
        samples = collector.collect()
    except NoData as exc:
        samples = list(exc.samples)
    for s in samples:
        check_sample(s)
    return samples


def errors(samples: list[Sample]) -> dict[str, float]:
    return {s.label("error_type"): s.value for s in samples
            if s.name == "agent.collector_errors_total"}


def value(samples: list[Sample], field: str, meter: str) -> float | None:
    return sample_value(samples, f"facility_power.{field}", {"meter": meter})


@pytest.fixture
def run(request):
    """Build a collector that is closed after the test."""
    def build(devices: list[SnmpDevice], labels: dict[str, str] | None = None) -> SnmpCollector:
        collector = SnmpCollector(PLACE if labels is None else labels, devices)
        request.addfinalizer(collector.close)
        return collector
    return build


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "computewatch.collectors.snmp" and r.levelno >= logging.WARNING]


# --- real recordings --------------------------------------------------------------------------

def test_apc_rack_pdus_report_the_recorded_power_and_energy(simulator, run):
    c = run([device(simulator, "apc_rpdu2", meter="pdu-r01-a", scope="it"),
             device(simulator, "apc_rpdu2", "apc-8932", scope="it")])
    samples = collect(c)
    assert value(samples, "watts", "pdu-r01-a") == pytest.approx(AP8641_RPDU2_W)
    assert value(samples, "joules_total", "pdu-r01-a") == AP8641_RPDU2_J == 7_025_760_000
    assert value(samples, "watts", "apc-8932") == pytest.approx(AP8932_RPDU2_W)
    assert value(samples, "joules_total", "apc-8932") == AP8932_RPDU2_J == 2_313_360_000
    assert errors(samples) == {}
    watts = next(s for s in samples if s.name == "facility_power.watts")
    assert dict(watts.labels) == {"hub": "jjj", "cluster": "bj-ai-c1", "site": "bj-ai",
                                  "meter": "pdu-r01-a", "scope": "it",
                                  "source": f"snmp://127.0.0.1:{simulator}"}
    energy = next(s for s in samples if s.name == "facility_power.joules_total")
    assert energy.time == watts.time  # one row per device when pivoted into a frame


def test_unmetered_pdu_falls_back_to_legacy_watts_and_has_no_energy(simulator, run, caplog):
    c = run([device(simulator, "apc_rpdu2", "apc-7902b")])
    caplog.set_level(logging.INFO, logger="computewatch.collectors.snmp")
    for _ in range(2):
        samples = collect(c)
        assert value(samples, "watts", "apc-7902b") == AP7902B_LEGACY_W
        assert value(samples, "joules_total", "apc-7902b") is None
        assert errors(samples) == {}  # -1 is "not measured": absent, not a failure
    said = [r.getMessage() for r in caplog.records if "does not measure" in r.getMessage()]
    assert len(said) == 1 and "rPDU2DeviceStatusEnergy" in said[0]


def test_legacy_rpdu_profile_reads_the_ident_watts(simulator, run):
    samples = collect(run([device(simulator, "apc_rpdu"), device(simulator, "apc_rpdu",
                                                                "apc-7902b")]))
    assert value(samples, "watts", "public") == AP8641_LEGACY_W
    assert value(samples, "watts", "apc-7902b") == AP7902B_LEGACY_W


def test_ups_recordings_through_ups_mib_and_eaton_xups(simulator, run):
    c = run([device(simulator, "ups_mib", "eaton-93e", meter="93e-mib"),
             device(simulator, "eaton_xups", "eaton-93e", meter="93e-xups", scope="facility"),
             device(simulator, "eaton_xups", "eaton-9px", meter="9px-xups")])
    samples = collect(c)
    assert value(samples, "watts", "93e-mib") == EATON_93E_W
    assert value(samples, "watts", "93e-xups") == EATON_93E_W
    # xupsOutputCumulativePowerUsage.0 = 0 while xupsOutputWatts says 11.4 kW: this model
    # does not count, so the counter is "not measured" (absent), not a valid 0 J (issue 14).
    assert value(samples, "joules_total", "93e-xups") is None
    assert value(samples, "watts", "9px-xups") == EATON_9PX_W
    assert value(samples, "joules_total", "9px-xups") == EATON_9PX_J == 1_921_438_800
    assert errors(samples) == {}


# --- profile: auto over every power recording of snmpsim-data ------------------------------------

# Read by hand from the recordings. (profile auto picks, watts, joules_total); None: absent.
AUTO_EXPECTED: dict[str, tuple[str | None, float | None, float | None]] = {
    # rPDU2DeviceStatusPower.1 = -1 and rPDU2DeviceStatusEnergy.1 = -1 (not metered);
    # rPDUIdentDevicePowerWatts.0 = 192 W.
    "apc-7902b": ("apc_rpdu2", 192.0, None),
    # rPDU2DeviceStatusPower.1 = 121 (0.01 kW) = 1210 W; rPDU2DeviceStatusEnergy.1 = 19516
    # (0.1 kWh) = 1951.6 kWh = 7 025 760 000 J.
    "apc-8641": ("apc_rpdu2", 121 * 10.0, 19516 * 360_000.0),
    # rPDU2DeviceStatusPower.1 = 16 -> 160 W; rPDU2DeviceStatusEnergy.1 = 6426 -> 2.31336e9 J.
    "apc-8932": ("apc_rpdu2", 16 * 10.0, 6426 * 360_000.0),
    # EAST EA9080 (sysObjectID 1.3.6.1.4.1.40614, UPS-MIB only): upsOutputPower.1.0-3.0 =
    # 0, 0, 0 while upsOutputPercentLoad = 20, 26, 30: not measured.
    "eastpower-istars-swv053": ("ups_mib", None, None),
    # sysObjectID 1.3.6.1.4.1.705.1 with XUPS-MIB: xupsOutputWatts.1-3 = 5100 + 3600 + 2700;
    # xupsOutputCumulativePowerUsage.0 = 0 under that load: not measured.
    "eaton-93e-80": ("eaton_xups", 5100 + 3600 + 2700.0, None),
    # xupsOutputWatts.1 = 50; xupsOutputCumulativePowerUsage.0 = 533733 Wh = 1 921 438 800 J.
    "eaton-9px-partial": ("eaton_xups", 50.0, 533733 * 3600.0),
    # sysObjectID 1.3.6.1.4.1.13400.2.1, no UPS-MIB; its own MIB gives output voltage,
    # current and load % (2198, 18, 25) but no watts: not supported.
    "emerson-network-power": (None, None, None),
    # Huawei UPS5000-E on a net-snmp sysObjectID (1.3.6.1.4.1.8072.3.2.10):
    # hwUpsOutputActivePowerA/B/C.1 = 21 + 24 + 60 = 105 x 0.1 kW = 10 500 W (UPS-MIB
    # upsOutputPower.1 = 34 is one averaged phase in 0.1 kW).
    "huawei-gse200m": ("huawei_ups", (21 + 24 + 60) * 100.0, None),
    # Santak (sysObjectID 1.3.6.1.4.1.2468.1.2.1), UPS-MIB upsOutputPower.1-3 = 7900 + 5500 +
    # 7700 W.
    "ingrasys-power-switch": ("ups_mib", 7900 + 5500 + 7700.0, None),
    # A Trapeze/Juniper wireless LAN controller (sysObjectID 1.3.6.1.4.1.14525) filed under
    # UPS/: no power objects at all.
    "juniper-ac": (None, None, None),
    # Phoenixtec card (sysObjectID 1.3.6.1.4.1.935.1.1.1): upsOutputPower.1-3 = 0, 0, 0 and
    # upsOutputPercentLoad 0 while XPPC-MIB upsSmartOutputLoad.0 = 2 (%): not measured.
    "phoenixtec-power": ("ppc_ups", None, None),
    # A Liebert PEX precision air conditioner (sysObjectID 1.3.6.1.4.1.476.1.42,
    # LIEBERT-GP-ENVIRONMENTAL-MIB): temperatures and humidity, no power.
    "vertiv-power": (None, None, None),
    # Tripp Lite PDUMH20ATNET ATS: no tlpAtsDeviceOutputPowerTotal, no tlpAtsOutputActivePower;
    # tlpAtsOutputCalculatedPowerKW.1.1 = 0 (0.01 kW) beside tlpAtsOutputCurrent.1.1 = 0
    # (0.01 A, at tlpAtsOutputVoltage 1152 = 115.2 V): a measured 0 W.
    "tripplite-poweralert": ("tripplite_ats", 0.0, None),
    # HP BladeSystem Onboard Administrator (sysObjectID 1.3.6.1.4.1.11.5.7.1.2): its power
    # supplies' DC output only (cpqRackPowerSupplyCurPwrOutput 6 x 332 W): not supported.
    "hp-onboard-administrator": (None, None, None),
    # A Geist temperature sensor (sysObjectID 1.3.6.1.4.1.21239.42.1.31): no power.
    "geist-temperature-sensor": (None, None, None),
}


def test_every_power_recording_through_profile_auto_reads_right_or_says_why_not(
        simulator, run, caplog):
    assert {Path(r).name.split(".")[0] for r in AUTO_RECORDINGS} == set(AUTO_EXPECTED)
    caplog.set_level(logging.INFO, logger="computewatch.collectors.snmp")
    devices = [SnmpDevice(host="127.0.0.1", port=simulator, community=name, meter=name,
                          timeout=2, retries=0) for name in AUTO_EXPECTED]
    assert {d.profile for d in devices} == {"auto"}  # the default
    c = run(devices)
    for _ in range(2):  # the second run reads with the profiles the first one chose
        samples = collect(c)
        for dev, (name, (profile, watts, joules)) in zip(c._devices, AUTO_EXPECTED.items(),
                                                         strict=True):
            assert (dev.profile.name if dev.profile else None) == profile, name
            assert value(samples, "watts", name) == pytest.approx(watts), name
            assert value(samples, "joules_total", name) == pytest.approx(joules), name
    unsupported = [n for n, (p, _, _) in AUTO_EXPECTED.items() if p is None]
    assert errors(samples) == {"snmp_unsupported": 2.0 * len(unsupported)}
    said = warnings_of(caplog)
    for name in unsupported:  # each logged once, naming what the device lacks
        (line,) = [m for m in said if f"meter {name}," in m]
        assert "does not implement UPS-MIB upsOutputPower (1.3.6.1.2.1.33.1.4.4.1.4)" in line
        assert "sysObjectID 1.3.6.1.4.1." in line and "[snmp_unsupported]" in line
    assert "sysObjectID 1.3.6.1.4.1.13400.2.1, sysDescr 'UPS Web/SNMP Agent, Emerson" in \
        "".join(said)
    infos = [r.getMessage() for r in caplog.records]
    assert sum("upsOutputPower (1.3.6.1.2.1.33.1.4.4.1.4) reads 0 while upsOutputPercentLoad "
               "reads 20, 26, 30" in m for m in infos) == 1
    assert any("reads 0 while XPPC-MIB upsSmartOutputLoad reads 2" in m for m in infos)
    assert any("xupsOutputCumulativePowerUsage (1.3.6.1.4.1.534.1.4.7.0) reads 0 while "
               "xupsOutputWatts reads 5100, 3600, 2700" in m for m in infos)


def test_a_collector_that_reads_nothing_is_no_data_with_each_device_s_reason(simulator, run):
    c = run([device(simulator, "auto", "eastpower-istars-swv053", meter="east"),
             device(simulator, "auto", "vertiv-power", meter="pex")])
    with pytest.raises(NoData) as info:
        c.collect()
    text = str(info.value)
    assert text.startswith("snmp: no reading from any of 2 devices: ")
    assert "meter east, profile auto: ups_mib): watts not measured (upsOutputPower" in text
    assert "reads 0 while upsOutputPercentLoad reads 20, 26, 30" in text
    assert "meter pex, profile auto: not chosen yet): unsupported: profile auto: no shipped " \
           "profile fits" in text
    assert errors(list(info.value.samples)) == {"snmp_unsupported": 1.0}  # counters still out
    # One device that reads is enough: the collector is up, the other counted.
    c = run([device(simulator, "auto", "huawei-gse200m", meter="ups5000"),
             device(simulator, "auto", "vertiv-power", meter="pex")])
    assert value(c.collect(), "watts", "ups5000") == 10_500.0


def test_an_agent_whose_snmp_devices_read_nothing_reports_the_collector_down(simulator):
    """The issue's case: configured devices, nothing read, and yet up 1 with result code 0."""
    from computewatch.collectors import ResultCode
    from computewatch.collectors.agent import Agent, Scheduled

    collector = SnmpCollector(PLACE, [device(simulator, "auto", "eastpower-istars-swv053",
                                             meter="east")])
    agent = Agent([Scheduled(collector, 15, 10)], [], PLACE)
    try:
        samples = agent.run_once()
    finally:
        agent.close()
        collector.close()
    labels = {"collector": "snmp"}
    assert sample_value(samples, "agent.collector_up", labels) == 0.0
    assert sample_value(samples, "agent.collector_result_code", labels) == ResultCode.NO_DATA
    assert sample_value(samples, "agent.collector_errors_total",
                        {**labels, "error_type": "no_data"}) == 1.0


def test_a_profile_the_device_lacks_names_the_mib_object_and_the_sysobjectid(
        simulator, run, tmp_path, caplog):
    dot_zero = write(tmp_path, """\
fields:
  watts: {name: siteMeterWatts, oid: 1.3.6.1.4.1.99999.1.2.0, unit: W}
""")
    c = run([device(simulator, "ups_mib", "apc-8932", meter="pdu-as-ups"),
             device(simulator, dot_zero, "apc-8932", meter="dot-zero")])
    samples = collect(c)
    assert errors(samples) == {"snmp_no_such_object": 2.0}
    said = warnings_of(caplog)
    (ups,) = [m for m in said if "pdu-as-ups" in m]
    assert ("watts: the device does not implement UPS-MIB upsOutputPower "
            "(1.3.6.1.2.1.33.1.4.4.1.4): no rows") in ups
    assert ups.endswith("; sysObjectID 1.3.6.1.4.1.318.1.3.4.6 [snmp_no_such_object]")
    (scalar,) = [m for m in said if "dot-zero" in m]
    assert "the device does not implement siteMeterWatts (1.3.6.1.4.1.99999.1.2.0)" in scalar
    assert "instance suffix" not in scalar  # it has its .0: no misleading hint


def test_a_value_may_be_the_sum_of_columns_and_scalars_each_with_its_own_scale(
        simulator, run, tmp_path):
    phases = write(tmp_path, """\
name: three_phases
fields:
  watts:
    name: outputActivePower
    unit: W
    parts:                                  # hwUpsOutputActivePowerA, B, C in 0.1 kW
      - {oid: 1.3.6.1.4.1.2011.6.174.1.4.100.1.8, sum: true, scale: 100}
      - {oid: 1.3.6.1.4.1.2011.6.174.1.4.100.1.9.1, scale: 100}      # a scalar (rack 1)
      - {oid: 1.3.6.1.4.1.2011.6.174.1.4.100.1.10, sum: true, scale: 0.1}
""")
    samples = collect(run([device(simulator, phases, "huawei-gse200m", meter="ups")]))
    # 21 x 100 + 24 x 100 + 60 x 0.1 W: each part keeps its own scale.
    assert value(samples, "watts", "ups") == pytest.approx(2100 + 2400 + 6.0)


def test_zero_with_no_load_is_a_measured_zero_and_zero_under_load_is_not(
        simulator, run, tmp_path):
    """The load evidence of a user profile, on the EAST recording's own columns."""
    profile = write(tmp_path, """\
fields:
  watts:
    - name: upsOutputPower
      oid: 1.3.6.1.2.1.33.1.4.4.1.4
      sum: true
      unit: W
      load_evidence: {name: upsInputCurrent, oid: 1.3.6.1.2.1.33.1.3.3.1.4, sum: true}
  joules_total:
    - oid: 1.3.6.1.2.1.33.1.4.4.1.4         # (not an energy counter: a zero to test with)
      sum: true
      unit: Wh
      load_evidence: {name: upsOutputPercentLoad, oid: 1.3.6.1.2.1.33.1.4.4.1.5, sum: true}
""")
    samples = collect(run([device(simulator, profile, "eastpower-istars-swv053", meter="e")]))
    assert value(samples, "watts", "e") == 0.0  # upsInputCurrent.1.0-3.0 = 0, 0, 0
    assert value(samples, "joules_total", "e") is None  # upsOutputPercentLoad 20, 26, 30
    assert errors(samples) == {}


# --- failures ---------------------------------------------------------------------------------

def test_dead_devices_are_counted_fast_and_concurrently_without_touching_the_others(
        simulator, run, caplog):
    closed = free_udp_port()
    c = run([device(simulator, "apc_rpdu2", "not-the-community", **FAST),
             device(simulator, "ups_mib", "also-wrong", **FAST),
             device(closed, "apc_rpdu2", meter="nothing-listens", **FAST),
             device(simulator, "apc_rpdu2", "apc-8932")])
    collect(c)
    started = time.monotonic()
    samples = collect(c)
    elapsed = time.monotonic() - started
    assert elapsed < 1.4, "three 0.5 s timeouts must run side by side, not one after another"
    assert value(samples, "watts", "apc-8932") == pytest.approx(AP8932_RPDU2_W)
    assert errors(samples) == {"snmp_timeout": 6.0}  # 3 devices x 2 runs
    said = warnings_of(caplog)
    assert len(said) == 3  # once per device and episode, not once per run
    assert any("not-the-community" in m and "wrong community" in m for m in said)
    assert any(f"snmp://127.0.0.1:{closed}" in m for m in said)


def test_recovery_is_logged_and_the_next_failure_is_a_new_episode(simulator, run, caplog):
    caplog.set_level(logging.INFO, logger="computewatch.collectors.snmp")
    dev = device(simulator, "apc_rpdu", "apc-8932", **FAST)
    c = run([dev])
    good = c._devices[0].secrets["community"]
    c._devices[0].secrets["community"] = "wrong"  # the operator changes it on the PDU
    collect(c)
    c._devices[0].secrets["community"] = good
    assert value(collect(c), "watts", "apc-8932") == 160.0
    c._devices[0].secrets["community"] = "wrong"
    assert errors(collect(c)) == {"snmp_timeout": 2.0}
    assert len(warnings_of(caplog)) == 2  # two episodes
    assert sum("answers again" in r.getMessage() for r in caplog.records) == 1


def test_close_during_a_run_waits_for_the_run_and_a_later_run_reopens(simulator):
    c = SnmpCollector(PLACE, [device(simulator, "apc_rpdu", "apc-8932"),
                              device(free_udp_port(), "apc_rpdu", meter="dead", **FAST)])
    result: list[list[Sample]] = []
    worker = threading.Thread(target=lambda: result.append(c.collect()))
    worker.start()
    time.sleep(0.2)  # the dead device holds the run for 0.5 s
    c.close()  # the agent shutting down from its main thread
    worker.join(5)
    assert value(result[0], "watts", "apc-8932") == 160.0
    assert c._loop is None  # closed by the run as it ended
    assert value(collect(c), "watts", "apc-8932") == 160.0
    c.close()
    assert c._loop is None


def test_unresolvable_host_is_counted(run):
    samples = collect(run([SnmpDevice(host="no-such-meter.invalid", profile="ups_mib", **FAST)]))
    assert errors(samples) == {"snmp_unresolved": 1.0}
    assert not [s for s in samples if s.measurement == "facility_power"]


def write(tmp_path: Path, text: str, name: str = "profile.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_missing_profile_oid_is_counted_and_the_other_field_still_reported(
        simulator, run, tmp_path, caplog):
    profile = write(tmp_path, """\
fields:
  watts:
    name: rPDUIdentDevicePowerWatts
    oid: 1.3.6.1.4.1.318.1.1.12.1.16.0
    unit: W
  joules_total:
    name: notInThisPdu
    oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.99.1
    unit: kWh
""")
    no_instance = write(tmp_path, """\
fields:
  watts: {oid: 1.3.6.1.4.1.318.1.1.12.1.16, unit: W}   # the scalar without its .0
""", "no_instance.yaml")
    c = run([device(simulator, profile), device(simulator, no_instance, "apc-8932")])
    samples = collect(c)
    assert value(samples, "watts", "public") == AP8641_LEGACY_W
    assert value(samples, "joules_total", "public") is None
    assert value(samples, "watts", "apc-8932") is None
    assert errors(samples) == {"snmp_no_such_object": 2.0}
    said = warnings_of(caplog)
    assert any("notInThisPdu" in m and "joules_total" in m for m in said)
    assert any("instance suffix (.0)" in m for m in said)


def test_user_profile_with_fallbacks_a_factor_and_a_summed_column(simulator, run, tmp_path):
    profile = write(tmp_path, """\
name: eaton_estimate
description: load share x rated watts, when the UPS has no watts of its own
fields:
  watts:
    - name: someVendorWatts          # not on this UPS: the next source is used
      oid: 1.3.6.1.4.1.534.1.4.99.0
      unit: W
    - name: xupsOutputLoad           # percent of ...
      oid: .1.3.6.1.4.1.534.1.4.1.0
      scale: 0.01
      unit: W
      times:
        name: upsConfigOutputPower   # ... the rated output watts
        oid: 1.3.6.1.2.1.33.1.9.6.0
  joules_total:
    oid: 1.3.6.1.4.1.534.1.4.7.0     # xupsOutputCumulativePowerUsage
    unit: kWh
    scale: 0.001
    type: counter
""")
    amps = write(tmp_path, """\
fields:
  watts:
    oid: 1.3.6.1.4.1.318.1.1.12.2.3.1.1.2   # rPDULoadStatusLoad: 66 + 40 + 25 tenths of A
    sum: true
    scale: 23                              # x 230 V / 10, a user's own approximation
    unit: W
""", "amps.yaml")
    samples = collect(run([device(simulator, profile, "eaton-93e"),
                           device(simulator, profile, "eaton-9px"),
                           device(simulator, amps, meter="amps")]))
    assert value(samples, "watts", "eaton-93e") == pytest.approx(EATON_93E_LOAD_X_RATING_W)
    assert value(samples, "joules_total", "eaton-9px") == pytest.approx(EATON_9PX_J)
    assert value(samples, "watts", "amps") == pytest.approx((66 + 40 + 25) * 23)
    # The 9PX has no upsConfigOutputPower: neither watts source answers there.
    assert value(samples, "watts", "eaton-9px") is None
    assert errors(samples) == {"snmp_no_such_object": 1.0}
    assert load_profile(profile).name == "eaton_estimate"
    assert load_profile(amps).name == "amps"  # the file name when the profile has none


def test_values_of_the_wrong_type_are_counted_numbers_as_text_are_read(
        simulator, run, tmp_path, caplog):
    text = write(tmp_path, """\
fields:
  watts: {name: sysDescr, oid: 1.3.6.1.2.1.1.1.0, unit: W}
  joules_total: {oid: 1.3.6.1.4.1.318.1.1.26.4.3.1.9.1, unit: kWh, scale: 0.1}
""")
    oid_typed = write(tmp_path, """\
fields:
  watts: {name: sysObjectID, oid: 1.3.6.1.2.1.1.2.0, unit: W}
""", "oid.yaml")
    numeric_text = write(tmp_path, """\
fields:
  watts: {name: rPDUIdentHardwareRev, oid: 1.3.6.1.4.1.318.1.1.12.1.2.0, unit: W}  # "02"
""", "numeric_text.yaml")
    samples = collect(run([device(simulator, text), device(simulator, oid_typed, "apc-8932"),
                           device(simulator, numeric_text, meter="text")]))
    assert value(samples, "watts", "public") is None
    assert value(samples, "joules_total", "public") == AP8641_RPDU2_J
    assert value(samples, "watts", "apc-8932") is None
    assert value(samples, "watts", "text") == 2.0
    assert errors(samples) == {"snmp_bad_value": 2.0}
    said = warnings_of(caplog)
    assert any("sysDescr" in m and "not a number" in m for m in said)
    assert any("ObjectIdentifier" in m for m in said)


# --- SNMPv3 -------------------------------------------------------------------------------------

def v3(port: int, key_env: str, **kw) -> SnmpDevice:
    return SnmpDevice(host="127.0.0.1", port=port, version="3", user=V3_USER,
                      auth_protocol="SHA", auth_key_env=key_env, context="apc-8932",
                      profile="apc_rpdu2", **kw)


def test_snmpv3_with_authentication(simulator, run, monkeypatch):
    monkeypatch.setenv("CW_TEST_SNMP_KEY", V3_KEY)
    monkeypatch.setenv("CW_TEST_SNMP_BAD_KEY", "not-the-auth-key")
    samples = collect(run([v3(simulator, "CW_TEST_SNMP_KEY", meter="v3"),
                           v3(simulator, "CW_TEST_SNMP_BAD_KEY", meter="v3-bad")]))
    assert value(samples, "watts", "v3") == pytest.approx(AP8932_RPDU2_W)
    assert value(samples, "joules_total", "v3") == AP8932_RPDU2_J
    assert value(samples, "watts", "v3-bad") is None
    assert errors(samples) == {"snmp_auth": 1.0}


def test_snmpv3_privacy_without_the_cryptography_package_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("CW_TEST_SNMP_KEY", V3_KEY)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cryptography" else real(name, *a))
    dev = v3(161, "CW_TEST_SNMP_KEY", priv_protocol="AES", priv_key_env="CW_TEST_SNMP_KEY")
    with pytest.raises(ConfigError, match="needs the 'cryptography' package"):
        SnmpCollector(PLACE, [dev])


# --- configuration ------------------------------------------------------------------------------

def test_community_from_the_environment_and_secrets_out_of_reprs(simulator, run, monkeypatch):
    monkeypatch.setenv("CW_TEST_COMMUNITY", "apc-8932")
    dev = SnmpDevice(host="127.0.0.1", port=simulator, community_env="CW_TEST_COMMUNITY",
                     profile="apc_rpdu", meter="env")
    assert value(collect(run([dev])), "watts", "env") == 160.0
    assert "s3cret" not in repr(SnmpDevice(host="h", community="s3cret", profile="ups_mib"))
    monkeypatch.delenv("CW_TEST_COMMUNITY")
    with pytest.raises(ConfigError, match=r"CW_TEST_COMMUNITY .*not set"):
        SnmpCollector(PLACE, [dev])


@pytest.mark.parametrize(("text", "where", "message"), [
    ("host: pdu1\nprofile: apc_rpdu3\n", "node.yaml:2: profile",
     r"unknown SNMP profile 'apc_rpdu3' .*apc_rpdu2"),
    ("host: ups1\nprofile: ups_mib\nversion: '3'\n", "node.yaml:1: user", "needs a user"),
    ("host: ups1\nprofile: ups_mib\nuser: ops\n", "node.yaml:3: user", "is for SNMPv3"),
    ("host: ups1\nprofile: ups_mib\ncommunity: x\ncommunity_env: Y\n",
     "node.yaml:4: community_env", "not both"),
    ("host: ups1\nprofile: ups_mib\nversion: '3'\nuser: ops\npriv_protocol: AES\n"
     "priv_key_env: K\n", "node.yaml:5: priv_protocol", "needs authentication too"),
    ("host: ups1\nprofile: ups_mib\nscope: it-room\n", "node.yaml:3: scope", "must be"),
    ("host: ups1\nprofile: ups_mib\nversion: 1\n", "node.yaml:3: version", "must be '2c' or '3'"),
    ("host: ups1\nprofile: ups_mib\ntimeout: soon\n", "node.yaml:3: timeout", "not a duration"),
    ("host: ups1\nprofile: ups_mib\ncommunity_env: 'my-var'\n", "node.yaml:3: community_env",
     "not an environment variable name"),
])
def test_device_config_errors_name_the_line_and_field(text, where, message):
    with pytest.raises(ConfigError) as info:
        load_yaml_model_from_text(text, SnmpDevice, source_name="node.yaml")
    assert str(info.value).startswith(where)
    assert re.search(message, str(info.value))


def test_version_written_as_a_number_or_with_a_v():
    for written in ("3", "v3", "'3'"):
        dev = load_yaml_model_from_text(f"host: u\nprofile: ups_mib\nversion: {written}\n"
                                        "user: ops\n", SnmpDevice, source_name="node.yaml")
        assert dev.version == "3"
    assert SnmpDevice(host="u", profile="ups_mib", version="v2c").version == "2c"


def test_two_devices_that_would_write_one_series_are_refused():
    devs = [SnmpDevice(host="10.0.0.5", profile="ups_mib"),
            SnmpDevice(host="10.0.0.5", community="other", profile="apc_rpdu")]
    with pytest.raises(ConfigError, match="distinct meter"):
        SnmpCollector(PLACE, devs)


@pytest.mark.parametrize(("text", "where", "message"), [
    ("fields:\n  watts:\n    oid: 1.3.6.1.2.1.33.1.4.4.1.4\n    unit: kWh\n",
     "profile.yaml:4: fields.watts.unit", r"unit 'kWh' is not one for watts \(use W, kW, MW\)"),
    ("fields:\n  watts:\n    - oid: 1.3.6.1.2.1.33.1.4.4.1.4\n      unit: W\n"
     "    - oid: 1.3.6.1.4.1.534.1.4.4.1.4\n      unit: W\n      type: counter\n",
     "profile.yaml:7: fields.watts[1].type", "watts is a gauge; a counter belongs under "
                                             "joules_total"),
    ("fields:\n  joules_total:\n    oid: upsOutputPower.1\n    unit: Wh\n",
     "profile.yaml:3: fields.joules_total.oid", "not a numeric OID: 'upsOutputPower.1'"),
    ("fields:\n  joules_total:\n    oid: 1.3.6.1.4.1.534.1.4.7.0\n    unit: Wh\n    scal: 2\n",
     "profile.yaml:5: fields.joules_total.scal", "unknown key 'scal'"),
    ("fields:\n  joules_total:\n    - oid: 1.3.6.1.4.1.534.1.4.7.0\n      unit: Wh\n"
     "      scal: 2\n",
     "profile.yaml:5: fields.joules_total[0].scal", "unknown key 'scal' .*did you mean 'scale'"),
    ("fields:\n  watts:\n    oid: 1.3.6.1.4.1.534.1.4.7.0\n    unit: W\n    scale: 0\n",
     "profile.yaml:5: fields.watts.scale", "must be > 0"),
    ("fields:\n  watts:\n    oid: 1.3.6.1.4.1.534.1.4.7.0\n", "profile.yaml:2: fields.watts.unit",
     "required field is missing"),
    ("fields: {}\n", "profile.yaml:1: fields", "watts, joules_total or both"),
    ("fields:\n  watts:\n    oid: 1.3.6.1.4.1.534.1.4.7.0\n    unit: W\n    parts:\n"
     "      - {oid: 1.3.6.1.4.1.534.1.4.8.0}\n",
     "profile.yaml:3: fields.watts.oid", "give oid .* or parts .*, not both"),
    ("fields:\n  watts:\n    unit: W\n    sum: true\n    parts:\n"
     "      - {oid: 1.3.6.1.4.1.534.1.4.8.0}\n",
     "profile.yaml:4: fields.watts.sum", "belongs on each part"),
    ("fields:\n  watts:\n    unit: W\n    parts:\n      - {oid: 1.3.6.1.4.1.534.1.4.8.0, "
     "unit: W}\n", "profile.yaml:5: fields.watts.parts[0].unit", "unknown key 'unit'"),
    ("fields:\n  watts: [oid: 1.3.6.1.2.1.1.1.0\n", "profile.yaml:", "YAML syntax error"),
])
def test_bad_profile_yaml_names_the_file_line_and_field(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    shown = str(info.value)
    assert shown.startswith(str(tmp_path / where)), shown
    assert re.search(message, shown), shown
    with pytest.raises(ConfigError):  # and the collector refuses it at start
        SnmpCollector(PLACE, [SnmpDevice(host="h", profile=path)])


def test_a_profile_path_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        SnmpCollector(PLACE, [SnmpDevice(host="h", profile=str(tmp_path / "nope.yaml"))])


def test_shipped_profiles_load_and_read_what_their_names_say():
    assert shipped_profiles() == ("apc_rpdu", "apc_rpdu2", "apc_ups", "eaton_xups",
                                  "huawei_ups", "ppc_ups", "tripplite_ats", "tripplite_pdu",
                                  "tripplite_ups", "ups_mib")
    with_energy = {"apc_rpdu2", "apc_ups", "eaton_xups"}
    for name in shipped_profiles():
        profile = load_profile(name)
        assert profile.name == name and profile.description
        assert profile.fields.watts, name
        assert bool(profile.fields.joules_total) == (name in with_energy), name
        for _, sources in profile.fields.items():
            assert all(src.name for src in sources), name  # every OID says what it is
            for src in sources:
                assert all(p.name for p in (src.parts or []) + (src.load_evidence or [])), name
        assert profile.mib and profile.detect is not None, name  # profile: auto can pick it


def test_no_devices_means_absent():
    with pytest.raises(DriverAbsent):
        SnmpCollector(PLACE, []).collect()


# --- the Metrics table in the README --------------------------------------------------------------

def _documented(doc: str) -> dict[str, set[str]]:
    section = doc[doc.index("## Metrics"):]
    found: dict[str, set[str]] = {}
    meas, in_fields = None, False
    for line in section.splitlines():
        if m := re.match(r"^- (\w+)$", line):
            meas, in_fields = m.group(1), False
            found[meas] = set()
        elif re.match(r"^  - (\w+):", line):
            in_fields = line.strip() == "- fields:"
        elif meas and in_fields and (m := re.match(r"^    - (\w+) \(", line)):
            found[meas].add(m.group(1))
    return found


def test_docstring_metrics_table_matches_the_catalogue_and_describe():
    doc = readme_metrics(snmp_module)
    documented = {f"{meas}.{f}" for meas, fields in _documented(doc).items() for f in fields}
    assert documented == set(EMITTED)
    assert [m.name for m in SnmpCollector(PLACE, []).describe()] == list(EMITTED)
    for name in EMITTED:
        catalog.metric(name)
    for error_type in ERROR_TYPES:
        assert error_type in doc
    allowed = set(catalog.metric("facility_power.watts").labels)
    assert {"meter", "scope", "source"} <= allowed and "node" not in allowed
