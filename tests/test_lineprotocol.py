"""Line protocol: escaped per the InfluxDB specification (byte-equal to influxdb-client's
Point wherever Point follows it), frames equal to samples, refusals counted, no loss."""

from __future__ import annotations

import calendar
import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from influxdb_client import Point, WritePrecision

from computewatch.lineprotocol import (
    MAX_NAME_BYTES,
    MAX_TAG_VALUE_BYTES,
    MAX_TAGS,
    EncodeResult,
    LineProtocolError,
    encode_frame,
    encode_samples,
    escape_field_key,
    escape_measurement,
    escape_string,
    escape_tag,
    escape_tag_key,
)
from computewatch.samples import Sample, samples_to_frames

T0 = datetime(2026, 5, 9, 7, 35, 25, 123456, tzinfo=UTC)
T0_S = calendar.timegm((2026, 5, 9, 7, 35, 25))  # 1778312125, computed independently
NASTY = '北京 "A", x=1'

POINT_AGREES = [  # values influxdb-client's Point escapes as the specification says
    NASTY,
    "plain",
    "数据中心-贵阳",
    'quote"d',
    "back\\slash",  # a lone backslash before an ordinary character is itself
    "a=b,c d",
    "",  # empty: omitted by both
]
SPEC_ONLY = {  # value -> its escaped form, where Point writes a line that reads back wrong
    "ends in backslash\\": "ends\\ in\\ backslash\\\\",
    "a\\ b": "a\\\\\\ b",
    "a\\,b": "a\\\\\\,b",
    "a\\=b": "a\\\\\\=b",
    "two\\\\in a row": "two\\\\\\in\\ a\\ row",
}
REFUSED = ["line\nbreak", "tab\there", "carriage\rreturn", "nul\x00", "del\x7f", "\x1b[31mred"]
LABEL_VALUES = POINT_AGREES + list(SPEC_ONLY) + REFUSED


def _samples(labels: dict[str, str], values: dict[str, float], t: datetime = T0,
             measurement: str = "accelerator") -> list[Sample]:
    return [Sample.of(f"{measurement}.{f}", v, labels, t) for f, v in values.items()]


def _point_line(labels: dict[str, str], values: dict[str, float], t: datetime = T0,
                measurement: str = "accelerator", precision: str = WritePrecision.NS) -> str:
    p = Point(measurement)
    for k, v in labels.items():
        p.tag(k, v)
    for f, v in values.items():
        p.field(f, v)
    return p.time(t, write_precision=precision).to_line_protocol()


def _frame_payload(samples: list[Sample], precision: str = "ns") -> EncodeResult:
    frames = samples_to_frames(samples)
    assert len(frames) == 1
    ((meas, table),) = frames.items()
    return encode_frame(meas, table, precision)


# --- escaping -----------------------------------------------------------------------------

def test_escape_tag_per_specification() -> None:
    assert escape_tag(NASTY) == '北京\\ "A"\\,\\ x\\=1'
    assert escape_tag("back\\slash") == "back\\slash"  # a literal backslash stays single
    for value, escaped in SPEC_ONLY.items():
        assert escape_tag(value) == escaped
    assert escape_field_key("f=1, x") == "f\\=1\\,\\ x"
    assert escape_tag_key("a b") == "a\\ b"


@pytest.mark.parametrize("value", [*REFUSED, "\ud800", ""])
def test_what_line_protocol_cannot_carry_is_refused_not_rewritten(value: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_tag(value)
    with pytest.raises(LineProtocolError):
        escape_field_key(value)
    with pytest.raises(LineProtocolError):
        escape_measurement(value)


def test_names_the_stores_refuse() -> None:
    for bad in ("_reserved", "x" * (MAX_NAME_BYTES + 1), "数" * (MAX_NAME_BYTES // 3 + 1)):
        with pytest.raises(LineProtocolError):
            escape_tag_key(bad)
        with pytest.raises(LineProtocolError):
            escape_field_key(bad)
    escape_tag_key("x" * MAX_NAME_BYTES)
    escape_tag("v" * MAX_TAG_VALUE_BYTES)
    with pytest.raises(LineProtocolError, match="longer than 4096 bytes"):
        escape_tag("v" * (MAX_TAG_VALUE_BYTES + 1))
    with pytest.raises(LineProtocolError, match="double quote"):
        escape_field_key('say"')


def test_escape_measurement() -> None:
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"  # '=' is fine in a measurement
    assert escape_measurement("a\\=b") == "a\\\\=b"  # VictoriaMetrics reads \\= as =
    with pytest.raises(ValueError, match="starts with '#'"):
        escape_measurement("#comment")
    with pytest.raises(ValueError, match="empty"):
        escape_measurement("")


def test_escape_string_field() -> None:
    assert escape_string('say "hi" \\ ok\t') == 'say \\"hi\\" \\\\ ok\t'
    with pytest.raises(LineProtocolError, match="newline"):
        escape_string("two\nlines")


# --- equal to influxdb-client's Point -------------------------------------------------------

@pytest.mark.parametrize("value", POINT_AGREES)
def test_samples_equal_point(value: str) -> None:
    labels = {"site": value, "vendor": "nvidia", "model": "H100 SXM", "hub": "京津冀"}
    values = {"power_watts": 612.25, "temperature_celsius": 61.0, "utilization_ratio": 0.1,
              "memory_used_bytes": 85899345920.0, "energy_joules_total": 12345678901.234,
              "sm_clock_hertz": 1.98e9}
    expected = (_point_line(labels, values) + "\n").encode()
    got = encode_samples(_samples(labels, values))
    assert got == EncodeResult(expected, 1, 0)
    assert _frame_payload(_samples(labels, values)) == got


def test_nasty_label_exact_bytes() -> None:
    got = encode_samples(_samples({"site": NASTY, "model": ""}, {"power_watts": 300.5}))
    assert got.payload == (
        'accelerator,site=北京\\ "A"\\,\\ x\\=1 power_watts=300.5 1778312125123456000\n'
    ).encode()


@pytest.mark.parametrize("value", REFUSED)
def test_a_line_that_cannot_be_carried_is_left_out_and_counted(value: str) -> None:
    samples = _samples({"site": value, "vendor": "nvidia"},
                       {"power_watts": 300.5, "temperature_celsius": math.nan})
    samples += _samples({"site": "ok"}, {"power_watts": 1.0})
    got = encode_samples(samples)
    assert got.payload == b"accelerator,site=ok power_watts=1 1778312125123456000\n"
    assert (got.lines, got.skipped, got.refused) == (1, 1, 1)
    assert "control character" in got.problem
    assert _frame_payload(samples) == got


def test_a_label_that_is_not_unicode_is_refused() -> None:
    got = encode_samples(_samples({"site": "\udc80"}, {"power_watts": 1.0}))
    assert (got.payload, got.refused) == (b"", 1)
    assert "not valid Unicode" in got.problem


def test_too_many_tags_are_refused_not_truncated() -> None:
    many = {f"k{i:02d}": "v" for i in range(MAX_TAGS + 1)}
    got = encode_samples(_samples(many, {"power_watts": 1.0}))
    assert (got.lines, got.refused) == (0, 1)
    assert f"{MAX_TAGS + 1} tags" in got.problem
    assert encode_samples(_samples(dict(list(many.items())[:MAX_TAGS]),
                                   {"power_watts": 1.0})).lines == 1
    table = samples_to_frames(_samples(many, {"power_watts": 1.0}))["accelerator"]
    assert encode_frame("accelerator", table).refused == 1


def test_a_field_key_that_cannot_be_carried_leaves_the_others() -> None:
    samples = [Sample("m", "good", 1.0, (), T0), Sample("m", "bad\nkey", 2.0, (), T0)]
    got = encode_samples(samples)
    assert got.payload == b"m good=1 1778312125123456000\n"
    assert got.refused == 1
    table = pa.table({"time": pa.array([T0], pa.timestamp("us", tz="UTC")), "good": [1.0],
                      "bad\nkey": [2.0]})
    assert encode_frame("m", table) == got


def test_times_outside_the_nanosecond_range_are_refused() -> None:
    samples = _samples({}, {"power_watts": 1.0}, datetime(2300, 1, 1, tzinfo=UTC))
    got = encode_samples(samples)
    assert (got.payload, got.refused) == (b"", 1)
    table = pa.table({"time": pa.array([datetime(2300, 1, 1), T0.replace(tzinfo=None)],
                                       pa.timestamp("us", tz="UTC")), "v": [1.0, 2.0]})
    got = encode_frame("m", table, "s")
    assert got.payload == f"m v=2 {T0_S}\n".encode()
    assert got.refused == 1


def test_a_measurement_that_cannot_be_carried_refuses_the_frame() -> None:
    table = pa.table({"time": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
                      "v": [1.0, math.nan]})
    got = encode_frame("#m", table)
    assert (got.payload, got.skipped, got.refused) == (b"", 1, 1)


# --- frames equal samples -----------------------------------------------------------------

def _random_samples(n_series: int, n_times: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_series):
        labels = {"site": LABEL_VALUES[s % len(LABEL_VALUES)], "node": f"n{s}",
                  "vendor": ["nvidia", "huawei", ""][s % 3]}
        if s % 4 == 0:
            labels["xid"] = str(s % 7)  # a label only some series carry
        for i in range(n_times):
            t = T0 + timedelta(seconds=15 * i)
            for f in ("power_watts", "temperature_celsius", "memory_used_bytes",
                      "utilization_ratio"):
                if rng.uniform() < 0.2:
                    continue  # a field this scrape did not report
                kind = rng.integers(6)
                v = [float(rng.uniform(0, 1)), float(rng.integers(0, 2**37)),
                     float(10 ** rng.uniform(-12, 20)), math.nan, math.inf,
                     float(np.frombuffer(rng.bytes(8))[0])][kind]
                out.append(Sample.of(f"accelerator.{f}", v, labels, t))
    return out


def test_frame_encoder_equals_sample_encoder() -> None:
    samples = _random_samples(40, 25, seed=7)
    by_samples = encode_samples(samples)
    by_frame = _frame_payload(samples)
    assert by_frame == by_samples
    assert by_samples.skipped == sum(not math.isfinite(s.value) for s in samples)
    assert by_samples.lines == by_samples.payload.count(b"\n") > 0


def test_frame_with_dictionary_labels_and_chunks() -> None:
    samples = _random_samples(12, 10, seed=3)
    table = samples_to_frames(samples)["accelerator"]
    expected = encode_frame("accelerator", table)
    half = table.num_rows // 2
    parts = []
    for piece in (table.slice(0, half), table.slice(half)):  # two chunks, two dictionaries
        cols = [c.dictionary_encode() if pa.types.is_string(c.type) else c
                for c in piece.columns]
        parts.append(pa.table(cols, names=piece.column_names))
    chunked = pa.concat_tables(parts)
    assert chunked.column("site").num_chunks == 2
    assert encode_frame("accelerator", chunked) == expected


def test_label_columns_are_sorted_and_field_columns_too() -> None:
    table = pa.table({"time": pa.array([T0], pa.timestamp("s", tz="UTC")),
                      "zone": ["z"], "b": [2.0], "a": [1.0], "alpha": ["x"]})
    assert encode_frame("m", table).payload == b"m,alpha=x,zone=z a=1,b=2 1778312125000000000\n"


# --- NaN, nulls, empty tags -----------------------------------------------------------------

def test_nan_and_inf_skipped_and_counted() -> None:
    labels = {"site": "bj"}
    samples = _samples(labels, {"power_watts": math.nan, "temperature_celsius": math.inf,
                                "utilization_ratio": 0.5})
    samples += _samples({"site": "sh"}, {"power_watts": -math.inf})  # nothing left: no line
    want = EncodeResult(b"accelerator,site=bj utilization_ratio=0.5 1778312125123456000\n", 1, 3)
    assert encode_samples(samples) == want
    assert _frame_payload(samples) == want


def test_nulls_omitted_and_all_null_rows_dropped() -> None:
    table = pa.table({
        "time": pa.array([T0, T0, T0], pa.timestamp("us", tz="UTC")),
        "site": ["a", "b", None],
        "power_watts": pa.array([None, 250.0, None], pa.float64()),
        "temperature_celsius": pa.array([None, None, 40.0], pa.float64()),
    })
    got = encode_frame("accelerator", table)
    assert got == EncodeResult(
        b"accelerator,site=b power_watts=250 1778312125123456000\n"
        b"accelerator temperature_celsius=40 1778312125123456000\n", 2, 0)


def test_empty_tag_values_omitted() -> None:
    samples = _samples({"site": "bj", "model": "", "vendor": "nvidia"}, {"power_watts": 1.5})
    payload = b"accelerator,site=bj,vendor=nvidia power_watts=1.5 1778312125123456000\n"
    assert encode_samples(samples).payload == payload
    assert _frame_payload(samples).payload == payload


def test_empty_inputs() -> None:
    assert encode_samples([]) == EncodeResult(b"", 0, 0)
    empty = pa.table({"time": pa.array([], pa.timestamp("us", tz="UTC")),
                      "power_watts": pa.array([], pa.float64())})
    assert encode_frame("accelerator", empty) == EncodeResult(b"", 0, 0)
    only_nan = pa.table({"time": pa.array([T0], pa.timestamp("us", tz="UTC")),
                         "power_watts": [math.nan]})
    assert encode_frame("accelerator", only_nan) == EncodeResult(b"", 0, 1)


# --- numbers ------------------------------------------------------------------------------

def test_ints_are_written_as_floats() -> None:
    samples = _samples({"site": "bj"}, {"pcie_replays_total": 7, "power_watts": 7.0})
    payload = b"accelerator,site=bj pcie_replays_total=7,power_watts=7 1778312125123456000\n"
    assert encode_samples(samples).payload == payload
    table = pa.table({"time": pa.array([T0], pa.timestamp("us", tz="UTC")), "site": ["bj"],
                      "pcie_replays_total": pa.array([7], pa.int64()), "power_watts": [7.0]})
    assert encode_frame("accelerator", table).payload == payload


def test_non_numbers_refused() -> None:
    with pytest.raises(TypeError, match=r"accelerator.health value True"):
        encode_samples(_samples({}, {"health": True}))  # type: ignore[dict-item]
    table = pa.table({"time": pa.array([T0], pa.timestamp("us", tz="UTC")),
                      "health": [True]})
    with pytest.raises(TypeError, match=r"accelerator.health: column type bool"):
        encode_frame("accelerator", table)


def test_floats_round_trip_exactly() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate([
        np.frombuffer(rng.bytes(8 * 20_000), dtype=np.float64),  # any bit pattern
        10 ** rng.uniform(-12, 20, 20_000) * rng.choice([-1, 1], 20_000),
        np.round(rng.uniform(0, 1e16, 5_000)),
        rng.integers(10**10, 10**16, 5_000) + rng.choice([0.5, 0.25, 0.1], 5_000),
    ])
    values = values[np.isfinite(values)]
    table = pa.table({"time": pa.array(np.full(len(values), 0), pa.timestamp("s", tz="UTC")),
                      "i": pa.array(np.arange(len(values)).astype(str)), "v": values})
    payload = encode_frame("m", table).payload.decode()
    texts = [line.split(" ")[1].removeprefix("v=") for line in payload.splitlines()]
    assert len(texts) == len(values)
    assert [float(t) for t in texts] == values.tolist()  # bit-exact (NaN excluded above)
    expected = [repr(v).removesuffix(".0") for v in values.tolist()]
    assert texts == expected


# --- time ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "stamp"), [
    ("ns", T0_S * 10**9 + 123456000),
    ("us", T0_S * 10**6 + 123456),
    ("ms", T0_S * 10**3 + 123),
    ("s", T0_S),
])
def test_precision(precision: str, stamp: int) -> None:
    samples = _samples({"site": "bj"}, {"power_watts": 1.0})
    payload = f"accelerator,site=bj power_watts=1 {stamp}\n".encode()
    assert encode_samples(samples, precision).payload == payload
    assert _frame_payload(samples, precision).payload == payload


def test_precision_from_frame_time_units() -> None:
    for unit, raw in (("s", T0_S), ("ms", T0_S * 1000 + 123), ("ns", T0_S * 10**9 + 5)):
        table = pa.table({"time": pa.array([raw], pa.timestamp(unit, tz="Asia/Shanghai")),
                          "v": [1.0]})
        ns = raw * {"s": 10**9, "ms": 10**6, "ns": 1}[unit]
        assert encode_frame("m", table, "ns").payload == f"m v=1 {ns}\n".encode()
        assert encode_frame("m", table, "s").payload == f"m v=1 {T0_S}\n".encode()


def test_times_before_1970_floor() -> None:
    t = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    samples = _samples({}, {"power_watts": 1.0}, t)
    assert encode_samples(samples, "s").payload == b"accelerator power_watts=1 -1\n"
    assert _frame_payload(samples, "s").payload == b"accelerator power_watts=1 -1\n"
    assert encode_samples(samples, "ms").payload == b"accelerator power_watts=1 -500\n"


def test_point_agrees_at_coarser_precision_on_whole_seconds() -> None:
    t = datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC)
    for precision in ("s", "ms"):
        expected = _point_line({"site": "bj"}, {"power_watts": 2.5}, t, precision=precision)
        got = encode_samples(_samples({"site": "bj"}, {"power_watts": 2.5}, t), precision)
        assert got.payload == (expected + "\n").encode()


def test_bad_precision_and_time() -> None:
    samples = _samples({}, {"power_watts": 1.0})
    with pytest.raises(ValueError, match="unknown precision 'h'"):
        encode_samples(samples, "h")
    naive = pa.table({"time": pa.array([0], pa.timestamp("us")), "v": [1.0]})
    with pytest.raises(ValueError, match="no timezone"):
        encode_frame("m", naive)
    with pytest.raises(ValueError, match="no 'time' column"):
        encode_frame("m", pa.table({"v": [1.0]}))
    naive_sample = Sample("accelerator", "power_watts", 1.0, (), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="no timezone"):
        encode_samples([naive_sample])


def test_lines_merge_fields_per_series_and_time() -> None:
    a = _samples({"site": "bj"}, {"power_watts": 1.0, "temperature_celsius": 50.0})
    b = _samples({"site": "bj"}, {"power_watts": 2.0}, T0 + timedelta(seconds=15))
    c = _samples({"site": "sh"}, {"power_watts": 3.0})
    got = encode_samples([a[0], b[0], c[0], a[1]])  # interleaved
    assert got == EncodeResult(
        b"accelerator,site=bj power_watts=1,temperature_celsius=50 1778312125123456000\n"
        b"accelerator,site=bj power_watts=2 1778312140123456000\n"
        b"accelerator,site=sh power_watts=3 1778312125123456000\n", 3, 0)


def test_small_dictionary_indices_with_absent_labels() -> None:
    # int8 indices with a full 128-entry dictionary: the "absent" code must not overflow
    n = 300
    site = pa.DictionaryArray.from_arrays(
        pa.array([None if i % 5 == 0 else i % 128 for i in range(n)], pa.int8()),
        pa.array([f"s{i}" for i in range(128)]))
    table = pa.table({"time": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
                      "site": site, "v": [1.0] * n})
    lines = encode_frame("m", table).payload.decode().splitlines()
    assert len(lines) == n
    assert lines[0] == "m v=1 1778312125123456000"
    assert lines[127] == "m,site=s127 v=1 1778312125123456000"
    assert lines[129] == "m,site=s1 v=1 1778312125123456000"


def test_the_agent_side_of_the_package_loads_no_frame_or_http_library() -> None:
    """An agent encodes Samples and reads write URLs; numpy, pyarrow, pandas, duckdb and
    influxdb-client load only with `encode_frame`, the stores, or `LineProtocolWriter`."""
    code = (
        "import json, sys\n"
        "import computewatch.lineprotocol as lp\n"
        "import computewatch.collectors.agent, computewatch.collectors.setup\n"
        "import computewatch.collectors.export.remote, computewatch.collectors.export.formats\n"
        "lp.encode_samples, lp.parse_write_url, lp.WriteError, lp.Writer, lp.PRECISIONS\n"
        "print(json.dumps(sorted(sys.modules)))\n"
        "lp.encode_frame, lp.LineProtocolWriter\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    heavy = {"numpy", "pyarrow", "pandas", "duckdb", "influxdb_client"}
    before, after = ({m.split(".")[0] for m in json.loads(line)} for line in out)
    assert not before & heavy
    assert {"pyarrow", "influxdb_client"} <= after  # the lazy names do load them


def test_the_http_writer_is_the_one_writer_interface() -> None:
    """The stores and the remote exporter both take a `Writer`; the HTTP writer is one and a
    class without ``close`` is not."""
    from computewatch.lineprotocol import LineProtocolWriter, Writer

    with LineProtocolWriter("http://127.0.0.1:9") as w:
        assert isinstance(w, Writer)

    class WritesOnly:
        def write(self, body: bytes, precision: str = "ns") -> None: ...

    assert not isinstance(WritesOnly(), Writer)
