"""`AscendCollector`: runs ``npu-smi`` through one injected ``run(argv, timeout)`` seam.

Running the tool and reading its output are separate steps (Telegraf's nvidia_smi split): this
module runs it and turns the ways a command fails into collector errors; `_parse` and
`_samples` read the output. A per-chip view that fails or does not parse is counted in
``agent.parse_errors_total{source}`` and logged once per source; the chip keeps its table
values. A whole run fails only when ``npu-smi info`` itself fails or yields no chip at all.
"""

from __future__ import annotations

import logging
import shlex
import socket
import subprocess
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from computewatch.collectors import (
    CollectorError,
    DriverAbsent,
    ParseError,
    ResultCode,
    placement_labels,
)
from computewatch.collectors.ascend._parse import (
    ChipRow,
    parse_info_table,
    parse_key_values,
    parse_mapping,
)
from computewatch.collectors.ascend._samples import chip_samples, model_name, norm_key
from computewatch.samples import Sample

__all__ = ["AscendCollector", "NpuSmiTimeout", "Run", "run_npu_smi"]

log = logging.getLogger(__package__)  # one logger per collector, named as before the split

Run = Callable[[Sequence[str], float], str]
"""The device seam: run ``argv``, return stdout; raise as `subprocess.run` does."""


class NpuSmiTimeout(CollectorError):
    """npu-smi did not answer within the command timeout (result code 3, not 4)."""

    code = ResultCode.TIMEOUT


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
            kv = {norm_key(k): v for k, v in details[(r.npu_id, r.chip_id)].items()}
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
