"""Huawei Ascend NPUs through ``npu-smi``: one ``accelerator`` series per NPU chip.

Running the tool and reading its output are separate steps (Telegraf's nvidia_smi split):
`AscendCollector` runs ``npu-smi`` through one injected ``run(argv, timeout)`` seam; the
parsers (`parse_info_table`, `parse_key_values`, `parse_mapping`) and `chip_samples` are
pure, so they are tested on real captures and the simulator's fake ``npu-smi`` drives the
same code path as a real node.

Columns are found by their header names and positions, never by fixed offsets, because the
summary table differs by product and driver: 310 (``Chip Device``), 310P, 910A, 910B
(``Chip`` only, HBM column) and A3 (``Chip Phy-ID``), with cells such as ``60478/ 65536``,
``0    / 32768``, ``NA`` and ``-``, and a process table after the chips.

Decisions:

- ``health`` is 1 only for ``OK``. ``Warning``, ``Alarm``, ``Critical`` and ``UNKNOWN`` are 0,
  as npu-exporter's ``npu_chip_info_health_status`` counts anything but healthy as unhealthy.
- npu-smi's "MB" are MiB (its totals are powers of two: 8192, 32768, 65536): bytes = MB x 2**20.
- Device memory is HBM where the chip has HBM (HBM total > 0), else the DDR
  ``Memory-Usage`` column (310/310P have no HBM). ``memory_utilization_ratio`` is the
  matching *bandwidth* rate (``HBM``/``DDR Bandwidth Usage Rate(%)``), the catalogue's
  definition; ``HBM Usage Rate(%)`` is a capacity share and is not emitted as a ratio.
- ``utilization_ratio`` is AI-core busy (table ``AICore(%)``, else ``Aicore Usage Rate(%)``),
  falling back to ``NPU Utilization(%)`` where only that is reported.
- ``model`` is ``Ascend <chip name>``: the table's Name column (``910B3`` -> ``Ascend 910B3``,
  ``Ascend910`` -> ``Ascend 910``); where it is anonymised (``xxx``) or ``NA``, the chip name
  from a per-chip view or from ``npu-smi info -m``; else plain ``Ascend``.
- ``NA``/``-``/``N/A`` cells are missing, never zero: they produce no sample.
- A per-chip view that fails or does not parse is counted in
  ``agent.parse_errors_total{source}`` (cumulative) and logged once per source; the chip
  keeps its table values. A whole run fails only when ``npu-smi info`` itself fails or
  yields no chip at all.

Metrics
-------

- accelerator
  - tags:
    - node, site, cluster, hub (placement, from the agent's labels)
    - vendor (``huawei``), ecosystem (``cann``)
    - model (``Ascend 910B3``, ``Ascend 310``; ``Ascend`` when unknown)
    - index (NPU id), device (``{node}-npu{npu_id}-chip{chip_id}``, unique in the fleet)
    - pci_bus_id (``0000:C1:00.0``, where shown), driver_version (table header ``Version``)
  - fields:
    - utilization_ratio (float, ratio 0..1): AI-core busy; all products
    - vector_utilization_ratio (float, ratio 0..1): AI-vector busy; detail views, 910B/A3
    - memory_utilization_ratio (float, ratio 0..1): HBM (else DDR) bandwidth busy;
      detail views
    - memory_used_bytes (float, bytes): HBM in use (else DDR); all products
    - memory_total_bytes (float, bytes): HBM installed (else DDR); all products
    - power_watts (float, watts): chip power; where the table or ``-t power`` shows it
      (not for every chip of a multi-chip card)
    - temperature_celsius (float, degrees Celsius): chip temperature; all products
    - sm_clock_hertz (float, hertz): AI-core current clock; detail views
    - memory_temperature_celsius (float, degrees Celsius): HBM temperature; only where a
      view reports ``HBM Temperature(C)``
    - memory_clock_hertz (float, hertz): HBM clock; only where a view reports
      ``HBM Clock Speed(MHz)``
    - health (float, state 0|1): 1 for ``OK``, 0 for any other health; all products
- agent
  - tags: node, site, cluster, hub, collector (``ascend``), source (the npu-smi command
    without ids, e.g. ``npu-smi info -t usages``)
  - fields:
    - parse_errors_total (float, count, counter): outputs that failed to run or parse

Example output (line protocol)::

    accelerator,device=bj-ai-n0001-npu0-chip0,driver_version=24.1.RC2,ecosystem=cann,hub=jjj,index=0,model=Ascend\\ 910B3,node=bj-ai-n0001,pci_bus_id=0000:C1:00.0,site=bj-ai,vendor=huawei health=1,memory_total_bytes=68719476736,memory_used_bytes=3315597312,power_watts=93.6,temperature_celsius=40,utilization_ratio=0.12 1767225600000000000

Raw output for a bug report: ``npu-smi info``, ``npu-smi info -m`` and
``npu-smi info -t usages -i 0 -c 0``.
"""  # noqa: E501

from __future__ import annotations

import logging
import re
import shlex
import socket
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from computewatch.collectors._base import (
    CollectorError,
    DriverAbsent,
    ParseError,
    ResultCode,
    placement_labels,
)
from computewatch.samples import Sample

__all__ = [
    "DETAIL_SOURCE",
    "AscendCollector",
    "ChipMapping",
    "ChipRow",
    "NpuSmiTimeout",
    "chip_samples",
    "model_name",
    "parse_info_table",
    "parse_key_values",
    "parse_mapping",
    "run_npu_smi",
]

log = logging.getLogger(__name__)

Run = Callable[[Sequence[str], float], str]
"""The device seam: run ``argv``, return stdout; raise as `subprocess.run` does."""

MIB = 2**20
_MISSING = frozenset({"", "NA", "N/A", "-", "--"})
_HEALTH = {"OK": 1.0, "WARNING": 0.0, "ALARM": 0.0, "CRITICAL": 0.0, "UNKNOWN": 0.0}
_UNNAMED = frozenset({"XXX", "NA", "N/A", "-", "--", ""})

# Summary-table header names (lower case) -> ChipRow attribute.
_HEADERS = {
    "npu": "npu", "name": "name", "health": "health", "power(w)": "power",
    "temp(c)": "temp", "hugepages-usage(page)": "hugepages", "chip": "chip",
    "device": "device", "phy-id": "device", "bus-id": "bus_id", "aicore(%)": "aicore",
    "memory-usage(mb)": "memory", "hbm-usage(mb)": "hbm",
}


class NpuSmiTimeout(CollectorError):
    """npu-smi did not answer within the command timeout (result code 3, not 4)."""

    code = ResultCode.TIMEOUT


@dataclass(frozen=True, slots=True)
class ChipRow:
    """One chip of the ``npu-smi info`` table, in npu-smi's own units; None where missing."""

    npu_id: int
    chip_id: int
    line_no: int
    device_id: int | None = None  # the "Device" (310/310P) or "Phy-ID" (A3) column
    name: str | None = None
    health: str | None = None
    bus_id: str | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    aicore_percent: float | None = None
    memory_used_mb: float | None = None  # DDR "Memory-Usage"
    memory_total_mb: float | None = None
    hbm_used_mb: float | None = None
    hbm_total_mb: float | None = None
    hugepages_used: float | None = None
    hugepages_total: float | None = None
    driver_version: str | None = None
    hbm_column: bool = False  # the layout has an HBM-Usage column (NA there is not "no HBM")


@dataclass(frozen=True, slots=True)
class ChipMapping:
    """One line of ``npu-smi info -m``; logic_id is None for non-compute chips (``Mcu``)."""

    npu_id: int
    chip_id: int
    logic_id: int | None
    chip_name: str | None


# --- parsing helpers ------------------------------------------------------------------------

def _missing(value: str | None) -> bool:
    return value is None or value.strip().upper() in _MISSING


def _number(value: str | None, what: str) -> float | None:
    if _missing(value):
        return None
    assert value is not None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a number") from None


def _pair(value: str | None, what: str) -> tuple[float | None, float | None]:
    """``used / total`` with any spacing; a lone ``NA`` means both are missing."""
    if _missing(value):
        return None, None
    assert value is not None
    used, sep, total = value.partition("/")
    if not sep:
        raise ValueError(f"{what} {value!r} is not 'used / total'")
    return _number(used.strip(), what), _number(total.strip(), what)


def _integer(value: str | None, what: str) -> int:
    if value is None or not value.strip().isdigit():
        raise ValueError(f"{what} {value!r} is not an id")
    return int(value)


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str
    pos: int  # column of its first character in the line


def _cells(line: str) -> list[tuple[int, str]] | None:
    """The ``|``-separated cells with their start columns; None if the line is cut short."""
    s = line.rstrip()
    if not (s.lstrip().startswith("|") and s.endswith("|")):
        return None
    bars = [i for i, ch in enumerate(s) if ch == "|"]
    return [(bars[k] + 1, s[bars[k] + 1:bars[k + 1]]) for k in range(len(bars) - 1)]


def _tokens(cell: tuple[int, str], *, header: bool) -> list[_Tok]:
    """Whitespace-separated tokens; ``a / b`` joined into one, ``Name (unit)`` too."""
    start, text = cell
    out: list[_Tok] = []
    for m in re.finditer(r"\S+", text):
        tok = _Tok(m.group(), start + m.start())
        if header:
            joins = tok.text.startswith("(")  # "Memory-Usage (MB)"
        else:
            joins = bool(out) and (out[-1].text.endswith("/") or tok.text.startswith("/"))
        if out and joins:
            out[-1] = _Tok(out[-1].text + tok.text, out[-1].pos)
        else:
            out.append(tok)
    return out


def _assign(headers: list[_Tok], values: list[_Tok]) -> dict[str, str]:
    """Values to headers: in order when the counts agree, else each to the nearest header.

    In-order assignment survives misaligned cells (``70            0        / 970``); the
    nearest-column rule handles a blank cell or a name with a space in it.
    """
    if len(values) == len(headers):
        return {h.text.lower(): v.text for h, v in zip(headers, values, strict=True)}
    out: dict[str, str] = {}
    for v in values:
        h = min(headers, key=lambda h: abs(h.pos - v.pos))
        key = h.text.lower()
        out[key] = f"{out[key]} {v.text}" if key in out else v.text
    return out


def _errors_or_raise(errors: list[ParseError] | None, exc: ParseError) -> None:
    if errors is None:
        raise exc
    errors.append(exc)


# --- the summary table ----------------------------------------------------------------------

def parse_info_table(text: str, source: str = "npu-smi info",
                     errors: list[ParseError] | None = None) -> list[ChipRow]:
    """Parse the ``npu-smi info`` summary table into one `ChipRow` per chip.

    An unrecognisable header or no table at all raises `ParseError` naming the line. A bad
    row raises too, unless ``errors`` is given: then it is appended there and the other rows
    are still returned, so one damaged chip never hides the rest.
    """
    lines = text.splitlines()
    version: str | None = None
    header_at: int | None = None
    for i, line in enumerate(lines):
        st = line.strip()
        if not st.startswith("|"):
            continue  # borders, and anything printed before the table
        if "npu-smi" in st.lower() and version is None:
            m = re.search(r"Version:\s*(\S+)", st) or re.search(r"npu-smi\s+(\S+)", st)
            version = m.group(1).rstrip("|") if m else None
            continue
        header_at = i
        break
    if header_at is None:
        first = next(((n, ln) for n, ln in enumerate(lines, 1) if ln.strip()), None)
        raise ParseError(source, "no npu-smi info table found", *(first or (None, None)))

    top, bottom = _cells(lines[header_at]), None
    if header_at + 1 < len(lines):
        bottom = _cells(lines[header_at + 1])
    top_toks = [_tokens(c, header=True) for c in top or []]
    if not top_toks or not top_toks[0] or top_toks[0][0].text.upper() != "NPU":
        raise ParseError(source, "unknown header (expected 'NPU  Name | Health | ...')",
                         header_at + 1, lines[header_at])
    bottom_toks = [_tokens(c, header=True) for c in bottom or []]
    if (len(bottom_toks) != len(top_toks) or not bottom_toks[0]
            or bottom_toks[0][0].text.upper() != "CHIP"):
        bad = header_at + 1 if header_at + 1 < len(lines) else header_at
        raise ParseError(source, "unknown header (expected a 'Chip ...' line under 'NPU ...')",
                         bad + 1, lines[bad])

    hbm_column = any(_HEADERS.get(t.text.lower()) == "hbm" for cell in top_toks + bottom_toks
                     for t in cell)
    rows: list[ChipRow] = []
    first: tuple[int, str, list[tuple[int, str]]] | None = None
    skipping = False  # after a damaged line, until the next border: one error per chip

    def fail(line_no: int, line: str, message: str) -> None:
        _errors_or_raise(errors, ParseError(source, message, line_no, line))

    for i in range(header_at + 2, len(lines)):
        line, line_no = lines[i], i + 1
        st = line.strip()
        if st.startswith("+"):
            if first is not None:
                fail(first[0], first[1], "chip row has no second line")
                first = None
            skipping = False
            continue
        if not st.startswith("|"):
            if first is not None:
                fail(first[0], first[1], "chip row cut short")
                first = None
            break  # a blank line or text after the table (a documentation URL, a prompt)
        if first is None and "process" in st.lower():
            break  # the process table that follows the chips ("No running processes ...")
        if skipping:
            continue
        cells = _cells(line)
        if cells is None or len(cells) != len(top_toks):
            fail(line_no, line, "line cut short" if cells is None
                 else f"{len(cells)} cells where the header has {len(top_toks)}")
            first, skipping = None, True
            continue
        if first is None:
            first = (line_no, line, cells)
            continue
        try:
            rows.append(_row(top_toks, first[2], bottom_toks, cells, first[0], version,
                             hbm_column))
        except ValueError as exc:
            fail(first[0], first[1], str(exc))
        first = None
    if first is not None:
        fail(first[0], first[1], "chip row has no second line (output cut short)")
    return rows


def _row(top: list[list[_Tok]], cells1: list[tuple[int, str]], bottom: list[list[_Tok]],
         cells2: list[tuple[int, str]], line_no: int, version: str | None,
         hbm_column: bool) -> ChipRow:
    values: dict[str, str] = {}
    for headers, cells in ((top, cells1), (bottom, cells2)):
        for hs, cell in zip(headers, cells, strict=True):
            if hs:
                values.update(_assign(hs, _tokens(cell, header=False)))
    # Unknown columns are kept out of the row: a newer npu-smi may add some.
    v = {_HEADERS[k]: val for k, val in values.items() if k in _HEADERS}
    npu = _integer(v.get("npu"), "NPU id")
    chip = _integer(v.get("chip"), f"NPU {npu}: chip id")
    where = f"NPU {npu} chip {chip}:"
    mem = _pair(v.get("memory"), f"{where} Memory-Usage")
    hbm = _pair(v.get("hbm"), f"{where} HBM-Usage")
    pages = _pair(v.get("hugepages"), f"{where} Hugepages-Usage")
    device = v.get("device")
    return ChipRow(
        npu_id=npu, chip_id=chip, line_no=line_no,
        device_id=None if _missing(device) else _integer(device, f"{where} device id"),
        name=None if _missing(v.get("name")) else v["name"],
        health=None if _missing(v.get("health")) else v["health"],
        bus_id=None if _missing(v.get("bus_id")) else v["bus_id"],
        power_w=_number(v.get("power"), f"{where} Power(W)"),
        temperature_c=_number(v.get("temp"), f"{where} Temp(C)"),
        aicore_percent=_number(v.get("aicore"), f"{where} AICore(%)"),
        memory_used_mb=mem[0], memory_total_mb=mem[1],
        hbm_used_mb=hbm[0], hbm_total_mb=hbm[1],
        hugepages_used=pages[0], hugepages_total=pages[1],
        driver_version=version, hbm_column=hbm_column,
    )


# --- key/value views and the chip mapping -----------------------------------------------------

def parse_key_values(text: str, source: str,
                     errors: list[ParseError] | None = None) -> dict[str, str]:
    """Parse a ``npu-smi info -t VIEW -i N [-c C]`` view: ``Key : Value`` lines.

    Keys and values are stripped (tab or space indent, padded keys); the first of a repeated
    key wins. A line that is not ``Key : Value`` raises `ParseError`, or goes to ``errors``
    when given; output with no such line at all always raises.
    """
    out: dict[str, str] = {}
    lines = text.splitlines()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            _errors_or_raise(errors, ParseError(source, "expected 'Key : Value'", no, line))
            continue
        out.setdefault(key.strip(), value.strip())
    if not out:
        first = next(((n, ln) for n, ln in enumerate(lines, 1) if ln.strip()), None)
        raise ParseError(source, "no 'Key : Value' lines", *(first or (None, None)))
    return out


def parse_mapping(text: str, source: str = "npu-smi info -m",
                  errors: list[ParseError] | None = None) -> list[ChipMapping]:
    """Parse ``npu-smi info -m`` (NPU ID, Chip ID, Chip Logic ID, Chip Name per chip)."""
    lines = text.splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if at is None:
        raise ParseError(source, "empty output")
    names = [n.lower() for n in re.split(r"\s{2,}|\t", lines[at].strip())]
    if not names or names[0] != "npu id" or "chip id" not in names:
        raise ParseError(source, "unknown header (expected 'NPU ID  Chip ID  ...')",
                         at + 1, lines[at])
    out: list[ChipMapping] = []
    for i in range(at + 1, len(lines)):
        line = lines[i]
        toks = line.split()
        if not toks:
            if out:
                break
            continue
        if not toks[0].isdigit():
            if out:
                break  # text after the mapping
            _errors_or_raise(errors, ParseError(source, "expected a chip line", i + 1, line))
            continue
        if len(toks) < len(names):
            _errors_or_raise(errors, ParseError(source, f"{len(toks)} columns where the "
                                                f"header has {len(names)}", i + 1, line))
            continue
        row = dict(zip(names, [*toks[:len(names) - 1], " ".join(toks[len(names) - 1:])],
                       strict=True))
        try:
            logic = row.get("chip logic id")
            out.append(ChipMapping(
                _integer(row["npu id"], "NPU ID"), _integer(row["chip id"], "Chip ID"),
                None if _missing(logic) else _integer(logic, "Chip Logic ID"),
                None if _missing(row.get("chip name")) else row.get("chip name")))
        except ValueError as exc:
            _errors_or_raise(errors, ParseError(source, str(exc), i + 1, line))
    if not out and errors is None:
        raise ParseError(source, "no chip lines", at + 1, lines[at])
    return out


# --- mapping to the catalogue -------------------------------------------------------------------

def model_name(name: str | None, chip_type: str | None = None) -> str | None:
    """``Ascend <name>`` from a table or view chip name; None when it is hidden or missing."""
    if name is None or name.strip().upper() in _UNNAMED:
        return None
    name = name.strip()
    if name.lower().startswith("ascend"):
        rest = name[len("ascend"):].strip()
        return f"Ascend {rest}" if rest else "Ascend"
    prefix = (chip_type or "Ascend").strip() or "Ascend"
    return f"{prefix} {name}"


def _norm(key: str) -> str:
    return re.sub(r"\s+", "", key.lower())


_UTIL_KEYS = ("aicoreusagerate(%)", "aicoreusage(%)", "npuutilization(%)", "npuusagerate(%)")
_VECTOR_KEYS = ("aivectorusagerate(%)", "aivectorusage(%)", "vectorcoreusagerate(%)")
_POWER_KEYS = ("powerdissipation(w)", "npureal-timepower(w)", "real-timepower(w)")
_TEMP_KEYS = ("temperature(c)", "nputemperature(c)", "chiptemperature(c)")
_CLOCK_KEYS = ("aicorecurfreq(mhz)", "aicorecurrentfreq(mhz)", "aicorecurrfreq(mhz)")


DETAIL_SOURCE = "npu-smi info -t"
"""The ``source`` of errors in values merged from several per-chip views."""


def chip_samples(row: ChipRow, labels: Mapping[str, str],
                 details: Mapping[str, str] | None = None, *,
                 fallback_model: str | None = None, time: datetime | None = None,
                 errors: list[ParseError] | None = None) -> list[Sample]:
    """The ``accelerator`` samples of one chip: its table row, filled in from ``details``.

    ``labels`` are the placement labels (``node`` is required for the device id);
    ``details`` the merged key/values of its per-chip views; ``fallback_model`` the name
    from ``npu-smi info -m``, used when neither the table nor the views name the chip. A
    detail value that is not a number, or an unknown health, gives no sample and is reported
    to ``errors`` (raised when errors is None).
    """
    time = time or datetime.now(UTC)
    kv = {_norm(k): v for k, v in (details or {}).items()}
    where = f"NPU {row.npu_id} chip {row.chip_id}"

    def pick(keys: Iterable[str]) -> float | None:
        for key in keys:
            if key in kv and not _missing(kv[key]):
                try:
                    return float(kv[key])
                except ValueError:
                    _errors_or_raise(errors, ParseError(
                        DETAIL_SOURCE, f"{where}: {key} {kv[key]!r} is not a number"))
        return None

    node = labels["node"]
    lab = {**placement_labels(labels), "vendor": "huawei", "ecosystem": "cann",
           "model": (model_name(row.name) or model_name(kv.get("chipname"), kv.get("chiptype"))
                     or model_name(fallback_model) or "Ascend"),
           "index": str(row.npu_id), "device": f"{node}-npu{row.npu_id}-chip{row.chip_id}"}
    bus = row.bus_id or (None if _missing(kv.get("pciebusinfo")) else kv.get("pciebusinfo"))
    if bus:
        lab["pci_bus_id"] = bus
    if row.driver_version:
        lab["driver_version"] = row.driver_version

    if row.hbm_total_mb is not None:
        hbm_used, hbm_total = row.hbm_used_mb, row.hbm_total_mb
    else:
        hbm_used, hbm_total = pick(("hbmusage(mb)",)), pick(("hbmcapacity(mb)",))
    # An HBM cell that says NA is missing HBM figures, not a chip without HBM.
    has_hbm = bool(hbm_total) or (row.hbm_column and hbm_total is None)
    if has_hbm:
        used, total = hbm_used, hbm_total
        bandwidth = pick(("hbmbandwidthusagerate(%)",))
        mem_clock, mem_temp = pick(("hbmclockspeed(mhz)",)), pick(("hbmtemperature(c)",))
    else:
        used, total = row.memory_used_mb, row.memory_total_mb
        if total is None:
            used, total = pick(("ddrusage(mb)",)), pick(("ddrcapacity(mb)",))
        bandwidth = pick(("ddrbandwidthusagerate(%)",))
        mem_clock, mem_temp = pick(("ddrclockspeed(mhz)",)), None

    util = row.aicore_percent if row.aicore_percent is not None else pick(_UTIL_KEYS)
    health_text = row.health
    if health_text is None and not _missing(kv.get("healthstatus")):
        health_text = kv["healthstatus"]
    health = _HEALTH.get(health_text.upper()) if health_text else None
    if health_text and health is None:
        _errors_or_raise(errors, ParseError(
            "npu-smi info", f"{where}: unknown health {health_text!r}", row.line_no))

    def pct(v: float | None) -> float | None:
        return None if v is None else v / 100.0

    def scale(v: float | None, k: float) -> float | None:
        return None if v is None else v * k

    values = {
        "utilization_ratio": pct(util),
        "vector_utilization_ratio": pct(pick(_VECTOR_KEYS)),
        "memory_utilization_ratio": pct(bandwidth),
        "memory_used_bytes": scale(used, MIB),
        "memory_total_bytes": scale(total, MIB),
        "power_watts": row.power_w if row.power_w is not None else pick(_POWER_KEYS),
        "temperature_celsius": (row.temperature_c if row.temperature_c is not None
                                else pick(_TEMP_KEYS)),
        "memory_temperature_celsius": mem_temp,
        "sm_clock_hertz": scale(pick(_CLOCK_KEYS), 1e6),
        "memory_clock_hertz": scale(mem_clock, 1e6),
        "health": health,
    }
    return [Sample.of(f"accelerator.{f}", float(v), lab, time)
            for f, v in values.items() if v is not None]


# --- running npu-smi ----------------------------------------------------------------------------

def run_npu_smi(argv: Sequence[str], timeout: float) -> str:
    """Run npu-smi without a shell and return its stdout; raises as `subprocess.run` does."""
    done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                          timeout=timeout, check=True)
    return done.stdout


class AscendCollector:
    """Reads every Ascend chip of the node through ``npu-smi`` on each `collect`.

    ``run`` is the device seam (default `run_npu_smi`); the simulator passes its fake
    ``npu-smi``. ``detail`` adds the per-chip ``-t usages``/``-t common`` views (and
    ``-t power`` where the table has no power) for what the summary table lacks.
    """

    name = "ascend"

    def __init__(self, labels: Mapping[str, str], run: Run | None = None,
                 npu_smi: str = "npu-smi", timeout_s: float = 5.0, detail: bool = True) -> None:
        if timeout_s <= 0:
            raise ValueError(f"ascend collector: timeout_s must be > 0, got {timeout_s!r}")
        self._labels = placement_labels(labels)
        # The device id must be unique in the fleet; an agent without a node name uses the host's.
        self._labels.setdefault("node", socket.gethostname())
        self._run: Run = run or run_npu_smi
        self.npu_smi = npu_smi
        self.timeout_s = timeout_s
        self.detail = detail
        self._parse_errors: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._names: dict[tuple[int, int], str] | None = None

    # The one place where the ways a command fails become collector errors.
    def _call(self, args: Sequence[str]) -> str:
        argv = [self.npu_smi, *args]
        cmd = shlex.join(argv)
        try:
            return self._run(argv, self.timeout_s)
        except CollectorError:
            raise
        except FileNotFoundError:
            raise DriverAbsent(f"npu-smi not found: {self.npu_smi!r} is not on this node "
                               "(Ascend driver not installed, or set npu_smi to its path)"
                               ) from None
        except subprocess.TimeoutExpired:
            raise NpuSmiTimeout(f"{cmd} timed out after {self.timeout_s:g} s") from None
        except subprocess.CalledProcessError as exc:
            said = _text(exc.stderr).strip() or _text(exc.output).strip() or "no output"
            raise CollectorError(f"{cmd} exited with status {exc.returncode}: "
                                 f"{_last_lines(said)}") from None
        except OSError as exc:
            raise CollectorError(f"{cmd} could not run: {exc}") from None

    def _count(self, source: str, exc: CollectorError) -> None:
        self._parse_errors[source] += 1
        if source not in self._logged:
            self._logged.add(source)
            log.warning("ascend: %s (counted in agent_parse_errors_total{source=%r}; "
                        "logged once)", exc, source)
        else:
            log.debug("ascend: %s", exc)

    def collect(self) -> list[Sample]:
        now = datetime.now(UTC)
        source = "npu-smi info"
        text = self._call(["info"])
        errors: list[ParseError] = []
        try:
            rows = parse_info_table(text, source, errors)
        except ParseError as exc:
            self._count(source, exc)
            raise
        for exc in errors:
            self._count(source, exc)
        if not rows and errors:
            raise errors[0]
        details: dict[tuple[int, int], dict[str, str]] = {(r.npu_id, r.chip_id): {}
                                                          for r in rows}
        hung = False
        if self.detail:
            for r in rows:
                if _unreachable(r):
                    continue  # a lost chip: its views would only fail
                try:
                    details[(r.npu_id, r.chip_id)] = self._details(r)
                except NpuSmiTimeout:
                    hung = True  # npu-smi hangs: do not wait once more per chip
                    break
        names = self._chip_names(rows, details) if self.detail and not hung else {}
        samples: list[Sample] = []
        for r in rows:
            errs: list[ParseError] = []
            samples += chip_samples(r, self._labels, details[(r.npu_id, r.chip_id)],
                                    fallback_model=names.get((r.npu_id, r.chip_id)),
                                    time=now, errors=errs)
            for exc in errs:
                self._count(exc.source, exc)
        samples += self.error_samples(now)
        return samples

    def error_samples(self, time: datetime | None = None) -> list[Sample]:
        """``agent.parse_errors_total`` per source, cumulative since the collector started."""
        time = time or datetime.now(UTC)
        return [Sample.of("agent.parse_errors_total", float(n),
                          {**self._labels, "collector": self.name, "source": src}, time)
                for src, n in sorted(self._parse_errors.items())]

    def _details(self, row: ChipRow) -> dict[str, str]:
        views = ["usages", "common"] + (["power"] if row.power_w is None else [])
        merged: dict[str, str] = {}
        for view in views:
            args = ["info", "-t", view, "-i", str(row.npu_id), "-c", str(row.chip_id)]
            source = f"npu-smi info -t {view}"
            errs: list[ParseError] = []
            try:
                kv = parse_key_values(self._call(args), f"npu-smi {shlex.join(args)}", errs)
            except NpuSmiTimeout as exc:
                self._count(source, exc)
                raise
            except CollectorError as exc:
                self._count(source, exc)
                continue
            for exc in errs:
                self._count(source, exc)
            for k, v in kv.items():
                merged.setdefault(k, v)
        return merged

    def _chip_names(self, rows: list[ChipRow],
                    details: Mapping[tuple[int, int], Mapping[str, str]]
                    ) -> dict[tuple[int, int], str]:
        """Model names from ``npu-smi info -m`` for chips the table does not name (cached)."""
        def named(r: ChipRow) -> bool:
            kv = {_norm(k): v for k, v in details[(r.npu_id, r.chip_id)].items()}
            return bool(model_name(r.name) or model_name(kv.get("chipname")))

        if all(named(r) for r in rows):
            return {}
        if self._names is None:
            source = "npu-smi info -m"
            errs: list[ParseError] = []
            try:
                mapping = parse_mapping(self._call(["info", "-m"]), source, errs)
            except CollectorError as exc:
                self._count(source, exc)
                return {}
            for exc in errs:
                self._count(source, exc)
            self._names = {(m.npu_id, m.chip_id): name for m in mapping
                           if m.logic_id is not None and (name := model_name(m.chip_name))}
        return self._names


def _unreachable(row: ChipRow) -> bool:
    return all(v is None for v in (row.power_w, row.temperature_c, row.aicore_percent,
                                   row.memory_total_mb, row.hbm_total_mb))


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _last_lines(text: str, n: int = 3) -> str:
    return " / ".join(text.splitlines()[-n:])
