"""The Modbus collector against a real pymodbus TCP server on loopback, and its register maps.

Every expected value is worked out by hand from the raw register words the server holds.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from docstring_metrics import readme_metrics
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

import computewatch.collectors.modbus as modbus_module
from computewatch import catalog
from computewatch.collectors import DriverAbsent, NoData
from computewatch.collectors.modbus import (
    EMITTED,
    ModbusCollector,
    ModbusMeter,
    decode_registers,
    load_register_map,
    shipped_maps,
)
from computewatch.config import ConfigError, load_yaml_model_from_text
from computewatch.samples import Sample, sample_value
from computewatch.validation import check_sample

LABELS = {"node": "bj-ai-n0001", "site": "bj-ai", "cluster": "bj-ai-c1", "hub": "jjj"}
Words = dict[int, list[int]]  # address -> registers from there


# --- a real Modbus TCP server ---------------------------------------------------------------

class MeterServer:
    """pymodbus's TCP server on 127.0.0.1 in a thread; registers can change between reads."""

    def __init__(self, units: dict[int, dict[str, Words]], port: int = 0) -> None:
        self.regs = {(u, t): dict(units[u].get(t, {})) for u in units for t in ("holding",
                                                                                  "input")}
        self.units, self.port, self.connections = units, port, 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def set(self, unit: int, table: str, address: int, words: list[int]) -> None:
        """Make the next reads of ``address`` answer ``words``."""
        with self._lock:
            self.regs[(unit, table)][address] = list(words)

    def _device(self, unit: int) -> SimDevice:
        def block(table: str) -> list[SimData]:
            entries = [SimData(a, values=list(w), datatype=DataType.REGISTERS)
                       for a, w in sorted(self.units[unit].get(table, {}).items())]
            return entries or [SimData(60000, values=[0], datatype=DataType.REGISTERS)]

        async def action(fc, start, address, count, registers, values):
            table = "holding" if fc in (3, 6, 16) else "input"
            with self._lock:
                for a, words in self.regs[(unit, table)].items():
                    for i, w in enumerate(words):
                        if 0 <= a + i - start < len(registers):
                            registers[a + i - start] = w
            return None

        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(id=unit, simdata=(bits, list(bits), block("holding"), block("input")),
                         action=action)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            def connected(up: bool) -> None:
                self.connections += bool(up)

            self.server = ModbusTcpServer([self._device(u) for u in self.units],
                                          address=("127.0.0.1", self.port),
                                          trace_connect=connected)
            await self.server.serve_forever(background=True)
            self.port = self.server.transport.sockets[0].getsockname()[1]

        try:
            self.loop.run_until_complete(start())
        except BaseException as exc:  # reported to the test thread by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> MeterServer:
        self._thread = threading.Thread(target=self._run, name="meter-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("pymodbus server did not start in 10 s")
        if self._error is not None:
            raise RuntimeError(f"pymodbus server did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._error is None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def serve() -> Iterator:
    """Start servers for a test; every one is stopped afterwards, whatever happens."""
    started: list[MeterServer] = []

    def start(units: dict[int, dict[str, Words]], port: int = 0) -> MeterServer:
        server = MeterServer(units, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class SilentServer:
    """Accepts TCP connections and never answers: a meter that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.sock.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        for s in self.held:
            s.close()
        self.sock.close()


def free_port() -> int:
    """A port nothing listens on (the OS just handed it out and it was closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- helpers -------------------------------------------------------------------------------

def f32(value: float) -> list[int]:
    """A float32 as two registers, high word first (checked against literals below)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def meter(port: int, map_: str, name: str = "m1", unit_id: int = 1, scope: str = "facility",
          timeout: float = 2.0) -> ModbusMeter:
    return ModbusMeter(host="127.0.0.1", port=port, unit_id=unit_id, map=map_, meter=name,
                       scope=scope, timeout=timeout)


def collect(collector: ModbusCollector) -> list[Sample]:
    """One run; every sample must be one the catalogue accepts. A run that read nothing
    raises `NoData` with the error counters (``test_no_meter_read_is_no_data``): here its
    samples are returned like any run's."""
    try:
        samples = collector.collect()
    except NoData as exc:
        samples = list(exc.samples)
    for s in samples:
        check_sample(s)
    return samples


def value(samples: list[Sample], field: str, name: str = "m1") -> float | None:
    return sample_value(samples, f"facility_power.{field}", {"meter": name})


def errors(samples: list[Sample]) -> dict[str, float]:
    return {s.label("error_type") or "": s.value for s in samples
            if s.name == "agent.collector_errors_total"}


def write_map(tmp_path: Path, body: str, name: str = "map.yaml") -> str:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return str(path)


COUNTER_MAP = """\
description: a test meter with a 32-bit Wh counter
registers:
  watts: {address: 100, table: holding, type: float32, unit: W}
  joules_total: {address: 200, table: holding, type: uint32, unit: Wh, kind: counter}
"""


@pytest.fixture
def counter_map(tmp_path) -> str:
    return write_map(tmp_path, COUNTER_MAP)


# --- shipped maps, values by hand ---------------------------------------------------------

def test_schneider_pm5000_values_are_the_raw_registers_in_si_units(serve):
    # Active Power Total 12.5 kW: float32 0x41480000 at 3059; Active Energy Delivered
    # 123456789 Wh: int64 0x00000000075BCD15 at 3203 (the list's registers 3060 and 3204).
    server = serve({1: {"holding": {3059: [0x4148, 0x0000], 3203: [0, 0, 0x075B, 0xCD15]}}})
    samples = collect(ModbusCollector(LABELS, [meter(server.port, "schneider-pm5000")]))
    assert value(samples, "watts") == 12_500.0
    assert value(samples, "joules_total") == 123_456_789 * 3600.0
    assert errors(samples) == {}
    labels = dict(samples[0].labels)
    assert labels == {"hub": "jjj", "cluster": "bj-ai-c1", "site": "bj-ai", "meter": "m1",
                      "scope": "facility", "source": f"modbus://127.0.0.1:{server.port}/1"}


def test_eastron_sdm630_reads_input_registers(serve):
    # Total system power 2300.5 W = float32 0x450FC800 at 0x34; import 1234.5 kWh =
    # float32 0x449A5000 at 0x48.
    server = serve({1: {"input": {0x34: [0x450F, 0xC800], 0x48: [0x449A, 0x5000]}}})
    samples = collect(ModbusCollector(LABELS, [meter(server.port, "eastron-sdm630",
                                                     scope="it")]))
    assert value(samples, "watts") == 2300.5
    assert value(samples, "joules_total") == 1234.5 * 3.6e6
    assert samples[0].label("scope") == "it"


def test_acrel_adw300_scales_hundredths_of_a_kwh(serve):
    # 4321 W as int32 at 36; 987654 x 0.01 kWh (0x000F1206) at 62.
    server = serve({7: {"holding": {36: [0, 4321], 62: [0x000F, 0x1206]}}})
    samples = collect(ModbusCollector(LABELS, [meter(server.port, "acrel-adw300", unit_id=7)]))
    assert value(samples, "watts") == 4321.0
    assert value(samples, "joules_total") == pytest.approx(9876.54 * 3.6e6, rel=1e-12)
    assert samples[0].label("source") == f"modbus://127.0.0.1:{server.port}/7"


def test_f32_helper_matches_the_hand_written_words():
    assert f32(12.5) == [0x4148, 0x0000]
    assert f32(2300.5) == [0x450F, 0xC800]


# --- counters: rollover and reset -----------------------------------------------------------

def test_a_wrapping_counter_keeps_increasing_by_exactly_what_the_meter_counted(serve,
                                                                               counter_map):
    server = serve({1: {"holding": {100: f32(1000.0), 200: [0xFFFF, 0xFF9C]}}})  # 2**32-100
    collector = ModbusCollector(LABELS, [meter(server.port, counter_map)])
    first = value(collect(collector), "joules_total")
    assert first == (2**32 - 100) * 3600.0
    server.set(1, "holding", 200, [0x0000, 0x0032])  # 50: wrapped past 2**32
    second = value(collect(collector), "joules_total")
    assert second == (2**32 + 50) * 3600.0
    assert second - first == 150 * 3600.0
    server.set(1, "holding", 200, [0x0000, 0x03E8])  # 1000
    third = value(collect(collector), "joules_total")
    assert third - second == 950 * 3600.0


def test_a_decimal_rollover_modulus_is_honoured(serve, tmp_path):
    path = write_map(tmp_path, """\
registers:
  joules_total:
    address: 0
    table: input
    type: uint32
    scale: 0.1
    unit: kWh
    modulus: 10**8
""")
    server = serve({1: {"input": {0: [0x05F5, 0xE0F6]}}})  # 99_999_990 x 0.1 kWh
    collector = ModbusCollector(LABELS, [meter(server.port, path)])
    first = value(collect(collector), "joules_total")
    server.set(1, "input", 0, [0, 5])  # the display rolled over at 10**8 and went on to 5
    second = value(collect(collector), "joules_total")
    assert second - first == pytest.approx(15 * 0.1 * 3.6e6, rel=1e-9)


@pytest.mark.parametrize(("written", "modulus"), [
    ("2**32", 2**32), ("10**8", 10**8), ("1e8", 10**8), ("100000000", 10**8), (None, 2**32),
])
def test_a_modulus_is_written_as_a_manual_writes_it(tmp_path, written, modulus):
    line = f"    modulus: {written}\n" if written else ""
    path = write_map(tmp_path, "registers:\n  joules_total:\n    address: 0\n"
                               "    table: input\n    type: uint32\n    unit: Wh\n" + line)
    assert load_register_map(path).registers.joules_total.rollover == modulus


def test_a_reset_that_is_not_a_wrap_restarts_the_series(serve, counter_map, caplog):
    server = serve({1: {"holding": {100: f32(0.0), 200: [0xB2D0, 0x5E00]}}})  # 3e9 Wh
    collector = ModbusCollector(LABELS, [meter(server.port, counter_map)])
    assert value(collect(collector), "joules_total") == 3e9 * 3600
    server.set(1, "holding", 200, [0, 10])  # a drop far from the top of the range: a reset
    with caplog.at_level(logging.WARNING, logger="computewatch.collectors.modbus"):
        samples = collect(collector)
    assert value(samples, "joules_total") == 10 * 3600.0
    assert any("counter reset" in r.getMessage() for r in caplog.records)
    assert errors(samples) == {}


# --- word and byte order ---------------------------------------------------------------------

def test_word_and_byte_order(serve, tmp_path):
    path = write_map(tmp_path, """\
registers:
  watts: {address: 10, table: holding, type: float32, unit: kW, word_order: little}
  joules_total:
    address: 20
    table: holding
    type: uint32
    unit: Wh
    word_order: little
    byte_order: little
""")
    # 12.5 kW = 0x41480000, low word first; 0x00012345 Wh, low word first, bytes swapped.
    server = serve({1: {"holding": {10: [0x0000, 0x4148], 20: [0x4523, 0x0100]}}})
    samples = collect(ModbusCollector(LABELS, [meter(server.port, path)]))
    assert value(samples, "watts") == 12_500.0
    assert value(samples, "joules_total") == 0x00012345 * 3600.0


@pytest.mark.parametrize(("words", "type_", "word_order", "byte_order", "expected"), [
    ([0x4148, 0x0000], "float32", "big", "big", 12.5),
    ([0x0000, 0x4148], "float32", "little", "big", 12.5),
    ([0x4841, 0x0000], "float32", "big", "little", 12.5),
    ([0xFFFF], "int16", "big", "big", -1),
    ([0xFFFF], "uint16", "big", "big", 65535),
    ([0x0001, 0x0002], "uint32", "big", "big", 0x00010002),
    ([0x0001, 0x0002], "uint32", "little", "big", 0x00020001),
    ([0xFFFF, 0xFFFE], "int32", "big", "big", -2),
    ([0, 0, 0x075B, 0xCD15], "int64", "big", "big", 123_456_789),
    ([0xCD15, 0x075B, 0, 0], "uint64", "little", "big", 123_456_789),
    ([0x4029, 0x0000, 0, 0], "float64", "big", "big", 12.5),
])
def test_decode_registers(words, type_, word_order, byte_order, expected):
    assert decode_registers(words, type_, word_order, byte_order) == expected


# --- failures: counted per meter, never raised, other meters unaffected ---------------------

def test_a_register_out_of_range_is_a_modbus_exception_and_the_rest_is_read(serve, tmp_path,
                                                                            caplog):
    path = write_map(tmp_path, """\
registers:
  watts: {address: 100, table: holding, type: float32, unit: W}
  joules_total: {address: 9000, table: holding, type: uint32, unit: Wh}
""")
    server = serve({1: {"holding": {100: f32(750.0)}},
                    2: {"holding": {3059: f32(1.5), 3203: [0, 0, 0, 1000]}}})
    collector = ModbusCollector(LABELS, [meter(server.port, path, "bad"),
                                         meter(server.port, "schneider-pm5000", "good",
                                               unit_id=2)])
    with caplog.at_level(logging.WARNING, logger="computewatch.collectors.modbus"):
        first = collect(collector)
        second = collect(collector)
    for samples in (first, second):
        assert value(samples, "watts", "bad") == 750.0
        assert value(samples, "joules_total", "bad") is None
        assert value(samples, "watts", "good") == 1500.0
        assert value(samples, "joules_total", "good") == 1000 * 3600.0
    assert errors(first) == {"modbus_exception": 1}
    assert errors(second) == {"modbus_exception": 2}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # once per episode, not once per run
    assert f"modbus://127.0.0.1:{server.port}/1" in warnings[0]
    assert "illegal data address" in warnings[0] and "9000" in warnings[0]
    assert server.connections == 1  # both meters on one endpoint, one connection, kept


def test_an_unreachable_meter_is_counted_and_the_others_still_report(serve, counter_map,
                                                                     caplog):
    good = serve({1: {"holding": {100: f32(10.0), 200: [0, 1]}}})
    port = free_port()
    collector = ModbusCollector(LABELS, [meter(port, counter_map, "down"),
                                         meter(good.port, counter_map, "up")])
    with caplog.at_level(logging.INFO, logger="computewatch.collectors.modbus"):
        samples = collect(collector)
        assert value(samples, "watts", "up") == 10.0
        assert value(samples, "watts", "down") is None
        assert errors(samples) == {"modbus_unreachable": 1}
        assert any("cannot connect" in r.getMessage() and f":{port}/1" in r.getMessage()
                   for r in caplog.records)
        serve({1: {"holding": {100: f32(20.0), 200: [0, 2]}}}, port=port)  # the meter is back
        samples = collect(collector)
    assert value(samples, "watts", "down") == 20.0
    assert errors(samples) == {"modbus_unreachable": 1}  # a counter: the old failure stays
    assert any("read again" in r.getMessage() for r in caplog.records)


def test_a_dead_gateway_is_tried_once_per_run_for_all_its_meters(counter_map):
    port = free_port()
    collector = ModbusCollector(LABELS, [meter(port, counter_map, f"m{u}", unit_id=u)
                                         for u in (1, 2, 3)])
    assert errors(collect(collector)) == {"modbus_unreachable": 3}  # counted per meter


def test_a_meter_that_never_answers_is_a_timeout(serve, counter_map, caplog):
    silent = SilentServer()
    good = serve({1: {"holding": {100: f32(5.0), 200: [0, 7]}}})
    try:
        collector = ModbusCollector(LABELS, [meter(silent.port, counter_map, "hung",
                                                   timeout=0.2),
                                             meter(good.port, counter_map, "ok")])
        with caplog.at_level(logging.DEBUG):
            t0 = time.monotonic()
            samples = collect(collector)
            took = time.monotonic() - t0
    finally:
        silent.stop()
    assert errors(samples) == {"modbus_timeout": 1}  # the first register; the second not asked
    assert value(samples, "watts", "ok") == 5.0
    assert took < 1.5
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")
                and r.levelno >= logging.ERROR], "pymodbus's own error lines are ours to log"


def test_a_connection_dropped_by_the_peer_is_reopened_without_losing_a_reading(serve,
                                                                               counter_map):
    first = serve({1: {"holding": {100: f32(1.0), 200: [0, 1]}}})
    collector = ModbusCollector(LABELS, [meter(first.port, counter_map)])
    assert value(collect(collector), "watts") == 1.0
    first.stop()
    serve({1: {"holding": {100: f32(2.0), 200: [0, 2]}}}, port=first.port)
    samples = collect(collector)
    assert value(samples, "watts") == 2.0
    assert errors(samples) == {}


@pytest.mark.parametrize(("power", "why"), [
    ([0x7FC0, 0x0000], "nan"),  # what a Schneider meter answers for a quantity it lacks
    (f32(-5.0), "outside"),
    ([0x7F80, 0x0000], "inf"),
])
def test_a_value_the_catalogue_refuses_is_a_bad_value(serve, power, why, caplog):
    server = serve({1: {"holding": {3059: power, 3203: [0, 0, 0, 42]}}})
    collector = ModbusCollector(LABELS, [meter(server.port, "schneider-pm5000")])
    with caplog.at_level(logging.WARNING, logger="computewatch.collectors.modbus"):
        samples = collect(collector)
    assert value(samples, "watts") is None
    assert value(samples, "joules_total") == 42 * 3600.0
    assert errors(samples) == {"modbus_bad_value": 1}
    assert why in caplog.records[0].getMessage().lower()


def test_a_negative_energy_register_is_a_bad_value(serve):
    server = serve({1: {"holding": {3059: f32(1.0), 3203: [0x8000, 0, 0, 0]}}})  # INT64 NaN
    samples = collect(ModbusCollector(LABELS, [meter(server.port, "schneider-pm5000")]))
    assert value(samples, "joules_total") is None
    assert errors(samples) == {"modbus_bad_value": 1}


def test_error_labels_are_the_agents_and_node_is_not_a_meter_label(counter_map):
    samples = collect(ModbusCollector(LABELS, [meter(free_port(), counter_map)]))
    (err,) = samples
    assert dict(err.labels) == {**LABELS, "collector": "modbus",
                                "error_type": "modbus_unreachable"}


def test_no_meters_is_driver_absent():
    with pytest.raises(DriverAbsent, match="no meters"):
        ModbusCollector(LABELS, []).collect()


def test_meter_ids_must_be_unique(counter_map):
    with pytest.raises(ValueError, match="repeated: m1"):
        ModbusCollector(LABELS, [meter(1502, counter_map), meter(1503, counter_map)])


def test_close_drops_the_connection_and_a_later_collect_reconnects(serve, counter_map):
    server = serve({1: {"holding": {100: f32(3.0), 200: [0, 3]}}})
    collector = ModbusCollector(LABELS, [meter(server.port, counter_map)])
    collect(collector)
    collector.close()
    assert value(collect(collector), "watts") == 3.0
    assert server.connections == 2


# --- register maps: validation --------------------------------------------------------------

def test_every_shipped_map_loads():
    assert {"schneider-pm5000", "eastron-sdm630", "acrel-adw300"} <= set(shipped_maps())
    for name in shipped_maps():
        regs = load_register_map(name).registers
        assert regs.watts is not None and regs.joules_total is not None
        assert (modbus_module.MAPS_DIR / f"{name}.yaml").read_text().startswith("#")


@pytest.mark.parametrize(("body", "where", "message"), [
    ("registers:\n  watts:\n    address: 10\n    table: holding\n    type: float33\n"
     "    unit: W\n", "map.yaml:5: registers.watts.type", "must be 'uint16'"),
    ("registers:\n  watts:\n    address: 10\n    table: holding\n    type: float32\n"
     "    unit: kWh\n", "map.yaml:6: registers.watts.unit", "must be one of W, kW for watts"),
    ("registers:\n  joules_total:\n    adress: 10\n    table: input\n    type: uint32\n"
     "    unit: Wh\n", "map.yaml:3: registers.joules_total.adress",
     "did you mean 'address'?"),
    ("registers:\n  joules_total:\n    address: 65535\n    table: input\n    type: uint32\n"
     "    unit: Wh\n", "map.yaml:3: registers.joules_total.address", "runs past register"),
    ("registers:\n  joules_total:\n    address: 0\n    table: input\n    type: uint32\n"
     "    unit: Wh\n    modulus: 2^32\n", "map.yaml:7: registers.joules_total.modulus",
     "write e.g. 4294967296, 2**32 or 1e8"),
    ("registers:\n  watts:\n    address: 0\n    table: input\n    type: uint32\n"
     "    unit: W\n    kind: counter\n", "map.yaml:7: registers.watts.kind",
     "watts is a gauge"),
    ("registers: {}\n", "map.yaml:1: registers", "needs watts, joules_total or both"),
])
def test_a_bad_map_names_file_line_and_field(tmp_path, body, where, message):
    path = write_map(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        ModbusCollector(LABELS, [meter(502, path)])
    text = str(info.value)
    assert text.startswith(str(tmp_path / where.split(":")[0]) + where[len("map.yaml"):]), text
    assert message in text


def test_a_missing_map_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        ModbusCollector(LABELS, [meter(502, str(tmp_path / "nope.yaml"))])


def test_an_unknown_shipped_map_name_is_caught_at_config_load():
    text = ("host: 10.0.0.5\nmap: schneider-pm500\nmeter: m1\nscope: facility\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_model_from_text(text, ModbusMeter, source_name="node.yaml")
    assert re.match(r"node\.yaml:2: map: unknown register map 'schneider-pm500' \(known: ",
                    str(info.value)), str(info.value)


def test_meter_config_defaults_and_durations():
    m = load_yaml_model_from_text("host: 10.0.0.5\nmap: eastron-sdm630\nmeter: pdu-a\n"
                                  "scope: it\ntimeout: 500ms\n", ModbusMeter,
                                  source_name="node.yaml")
    assert (m.port, m.unit_id, m.timeout, m.source) == (502, 1, 0.5,
                                                        "modbus://10.0.0.5:502/1")
    with pytest.raises(ConfigError, match="scope: must be 'facility', 'it', 'cooling'"):
        load_yaml_model_from_text("host: h\nmap: eastron-sdm630\nmeter: m\nscope: pue\n",
                                  ModbusMeter, source_name="node.yaml")


# --- the Metrics table in the README -------------------------------------------------------

def _documented(doc: str) -> dict[str, set[str]]:
    section = doc[doc.index("## Metrics"):]
    out: dict[str, set[str]] = {}
    meas, in_fields = None, False
    for line in section.splitlines():
        if m := re.match(r"^- (\w+)$", line):
            meas, in_fields = m.group(1), False
            out[meas] = set()
        elif re.match(r"^  - (\w+):", line):
            in_fields = line.strip() == "- fields:"
        elif meas and in_fields and (m := re.match(r"^    - (\w+) \(", line)):
            out[meas].add(m.group(1))
    return out


def test_docstring_metrics_table_matches_the_catalogue():
    documented = _documented(readme_metrics(modbus_module))
    names = {f"{meas}.{f}" for meas, fields in documented.items() for f in fields}
    assert names == set(EMITTED)
    for name in EMITTED:
        catalog.metric(name)
    assert [m.name for m in ModbusCollector(LABELS, []).describe()] == list(EMITTED)


def test_no_meter_read_is_no_data():
    """Every configured meter dead: the collector is down (NoData) with each meter's reason
    and still hands over its error counters."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = ModbusCollector(LABELS, [meter(port, "eastron-sdm630", timeout=0.5)])
    try:
        with pytest.raises(NoData) as info:
            c.collect()
    finally:
        c.close()
    assert str(info.value) == (f"modbus: no reading from the meter: modbus://127.0.0.1:{port}/1 "
                               "(meter m1): modbus_unreachable")
    assert errors(list(info.value.samples)) == {"modbus_unreachable": 1.0}
