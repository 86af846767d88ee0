"""Pure parsers of ``npu-smi`` output: the summary table, the key/value views, the chip map.

Columns are found by their header names and positions, never by fixed offsets, because the
summary table differs by product and driver: 310 (``Chip Device``), 310P, 910A, 910B
(``Chip`` only, HBM column) and A3 (``Chip Phy-ID``), with cells such as ``60478/ 65536``,
``0    / 32768``, ``NA`` and ``-``, and a process table after the chips. ``NA``/``-``/``N/A``
cells are missing (`is_missing`), never zero. Tested on real captures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from computewatch.collectors import (
    ParseError,
)

__all__ = ["ChipMapping", "ChipRow", "ProcessRow", "errors_or_raise", "is_missing",
           "parse_info_table", "parse_key_values", "parse_mapping", "parse_processes"]

_MISSING = frozenset({"", "NA", "N/A", "-", "--"})

# Summary-table header names (lower case) -> ChipRow attribute.
_HEADERS = {
    "npu": "npu", "name": "name", "health": "health", "power(w)": "power",
    "temp(c)": "temp", "hugepages-usage(page)": "hugepages", "chip": "chip",
    "device": "device", "phy-id": "phy_id", "bus-id": "bus_id", "aicore(%)": "aicore",
    "memory-usage(mb)": "memory", "hbm-usage(mb)": "hbm",
}


@dataclass(frozen=True, slots=True)
class ChipRow:
    """One chip of the ``npu-smi info`` table, in npu-smi's own units; None where missing."""

    npu_id: int
    chip_id: int
    line_no: int
    device_id: int | None = None  # the "Device" (310/310P) or "Phy-ID" (A3) column
    phy_id: int | None = None  # the "Phy-ID" column only (A3): the chip's physical id
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
    phy_id: int | None = None  # newer npu-smi print a "Chip Phy-ID" column too


def is_missing(value: str | None) -> bool:
    return value is None or value.strip().upper() in _MISSING


def _number(value: str | None, what: str) -> float | None:
    if is_missing(value):
        return None
    assert value is not None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a number") from None


def _pair(value: str | None, what: str) -> tuple[float | None, float | None]:
    """``used / total`` with any spacing; a lone ``NA`` means both are missing."""
    if is_missing(value):
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


def errors_or_raise(errors: list[ParseError] | None, exc: ParseError) -> None:
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
        errors_or_raise(errors, ParseError(source, message, line_no, line))

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
    device = v.get("device") or v.get("phy_id")
    phy = v.get("phy_id")
    return ChipRow(
        npu_id=npu, chip_id=chip, line_no=line_no,
        device_id=None if is_missing(device) else _integer(device, f"{where} device id"),
        phy_id=None if is_missing(phy) else _integer(phy, f"{where} Phy-ID"),
        name=None if is_missing(v.get("name")) else v["name"],
        health=None if is_missing(v.get("health")) else v["health"],
        bus_id=None if is_missing(v.get("bus_id")) else v["bus_id"],
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
    """Parse a ``npu-smi info -t VIEW -i N [-c C]`` view: ``Key : Value`` lines, flat.

    Keys and values are stripped (tab or space indent, padded keys); the first of a repeated
    key wins (`parse_view` splits a view by chip instead). Lines that are not ``Key : Value``
    cost one `ParseError` for the whole output, raised or appended to ``errors`` when given;
    output with no such line at all always raises.
    """
    out: dict[str, str] = {}
    lines = text.splitlines()
    bad: tuple[int, str] | None = None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            bad = bad or (no, line)
            continue
        out.setdefault(key.strip(), value.strip())
    if not out:
        first = next(((n, ln) for n, ln in enumerate(lines, 1) if ln.strip()), None)
        raise ParseError(source, "no 'Key : Value' lines", *(first or (None, None)))
    if bad is not None:
        errors_or_raise(errors, ParseError(source, "expected 'Key : Value'", *bad))
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
            errors_or_raise(errors, ParseError(source, "expected a chip line", i + 1, line))
            continue
        if len(toks) < len(names):
            errors_or_raise(errors, ParseError(source, f"{len(toks)} columns where the "
                                                f"header has {len(names)}", i + 1, line))
            continue
        row = dict(zip(names, [*toks[:len(names) - 1], " ".join(toks[len(names) - 1:])],
                       strict=True))
        try:
            logic, phy = row.get("chip logic id"), row.get("chip phy-id")
            out.append(ChipMapping(
                _integer(row["npu id"], "NPU ID"), _integer(row["chip id"], "Chip ID"),
                None if is_missing(logic) else _integer(logic, "Chip Logic ID"),
                None if is_missing(row.get("chip name")) else row.get("chip name"),
                None if is_missing(phy) else _integer(phy, "Chip Phy-ID")))
        except ValueError as exc:
            errors_or_raise(errors, ParseError(source, str(exc), i + 1, line))
    if not out and errors is None:
        raise ParseError(source, "no chip lines", at + 1, lines[at])
    return out


# --- the process table after the chips ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process on a chip, from the table's ``Process id | Process name | memory`` part."""

    npu_id: int
    chip_id: int
    pid: int
    name: str  # may be empty: npu-smi prints no name for some processes (A3, containers)
    memory_mb: float | None


def parse_processes(text: str, source: str = "npu-smi info",
                    errors: list[ParseError] | None = None) -> list[ProcessRow] | None:
    """The processes listed after the chips of ``npu-smi info``; None where it has no such part.

    The part is found by its header (``Process id``); ``No running processes found in NPU
    N`` lines list nothing. A damaged row raises `ParseError`, or goes to ``errors``.
    """
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines)
                  if ln.lstrip().startswith("|") and "process id" in ln.lower()), None)
    if start is None:
        return None
    out: list[ProcessRow] = []
    for i in range(start + 1, len(lines)):
        line = lines[i]
        st = line.strip()
        if not st.startswith("|"):
            if st.startswith("+"):
                continue
            break
        cells = _cells(line)
        if cells is None or "no running processes" in st.lower():
            continue
        texts = [c.strip() for _, c in cells]
        ids = texts[0].split() if texts else []
        try:
            if len(texts) != 4 or len(ids) != 2:
                raise ValueError(f"{len(texts)} cells where a process row has 4")
            out.append(ProcessRow(_integer(ids[0], "NPU"), _integer(ids[1], "Chip"),
                                  _integer(texts[1], "Process id"), texts[2],
                                  _number(texts[3], "Process memory(MB)")))
        except ValueError as exc:
            errors_or_raise(errors, ParseError(source, f"process row: {exc}", i + 1, line))
    return out
