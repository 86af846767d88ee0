"""Pure parsers of Huawei's ``hccn_tool`` (the NPU network tool) and the samples they give.

The output formats are the documented ones, as npu-exporter's own parser states them
(Ascend/mind-cluster ``component/ascend-common/devmanager/hccn/hccn_tool.go``) and as a
fault-diagnosis capture (mind-cluster ``npu_info_before.txt``) and gpustack's detector show
them; one query per command, ``-i`` the chip's physical id:

- ``hccn_tool -i 0 -link -g``: ``link status: UP`` (or ``DOWN``)
- ``hccn_tool -i 0 -net_health -g``: ``net health status: Success`` (``Init``, ``Socket
  failed``, ``Receive timeout``, ``Unreachable``, ...); healthy is ``Success`` or ``Init``,
  as npu-exporter counts the DCMI codes behind them
- ``hccn_tool -i 0 -bandwidth -g``: ``Bandwidth TX: 0.00 MB/sec`` and ``Bandwidth RX: ...``
- ``hccn_tool -i 0 -stat -g``: ``packet statistics:`` then ``name:count`` lines
  (``mac_rx_fcs_err_pkt_num``, ``roce_ecn_db_num``, ...)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from computewatch.collectors import ParseError
from computewatch.collectors._base import LabelSets
from computewatch.samples import Sample

__all__ = ["HCCN_QUERIES", "network_samples", "parse_hccn"]

HCCN_QUERIES = ("link", "net_health", "bandwidth", "stat")
"""The ``hccn_tool -i ID -<query> -g`` queries this collector understands."""

_HEALTHY = frozenset({"success", "init"})
_MB = 1e6  # hccn_tool's "MB/sec": network rates are decimal


def parse_hccn(query: str, text: str, source: str) -> dict[str, float]:
    """The values one query printed, as catalogue field -> value; raises `ParseError`."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if query == "link":
        m = _first(r"link status\s*:\s*(\S+)", lines)
        if m is None:
            raise ParseError(source, "no 'link status: UP|DOWN' line", *_where(text))
        return {"network_link_up": float(m.upper() == "UP")}
    if query == "net_health":
        m = _first(r"net health status\s*:\s*(.+)", lines)
        if m is None:
            raise ParseError(source, "no 'net health status: ...' line", *_where(text))
        return {"network_health": float(m.strip().lower() in _HEALTHY)}
    if query == "bandwidth":
        out = {}
        for name, field in (("TX", "network_transmit_bytes_per_second"),
                            ("RX", "network_receive_bytes_per_second")):
            m = _first(rf"Bandwidth {name}\s*:\s*([0-9.]+)\s*MB/sec", lines)
            if m is not None:
                out[field] = float(m) * _MB
        if not out:
            raise ParseError(source, "no 'Bandwidth TX/RX: N MB/sec' lines", *_where(text))
        return out
    if query == "stat":
        stats: dict[str, float] = {}
        for ln in lines:
            key, sep, value = ln.partition(":")
            if sep and value.strip().isdigit():
                stats[key.strip()] = float(value)
        if not stats:
            raise ParseError(source, "no 'name:count' statistics", *_where(text))
        out = {}
        for key, field in (("mac_rx_fcs_err_pkt_num", "network_rx_fcs_errors_total"),
                           ("roce_ecn_db_num", "network_rx_ecn_packets_total")):
            if key in stats:
                out[field] = stats[key]
        return out
    raise ValueError(f"unknown hccn_tool query {query!r} (known: {', '.join(HCCN_QUERIES)})")


def network_samples(values: Mapping[str, float], lab: Mapping[str, str],
                    time: datetime, label_sets: LabelSets | None = None) -> list[Sample]:
    base = (label_sets or LabelSets()).of(lab["device"], lab)
    return [Sample("accelerator", field, v, base, time) for field, v in values.items()]


def _first(pattern: str, lines: list[str]) -> str | None:
    for ln in lines:
        if m := re.search(pattern, ln, re.IGNORECASE):
            return m.group(1)
    return None


def _where(text: str) -> tuple[int | None, str | None]:
    for no, ln in enumerate(text.splitlines(), 1):
        if ln.strip():
            return no, ln
    return None, None
