"""A fake ``npu-smi`` binary that reads its numbers from a simulated node.

`FakeNpuSmi` has the collector's ``run(argv, timeout) -> str`` signature and prints what
``npu-smi`` prints for the node's Huawei devices, in one of three layouts, so the Ascend
collector runs its real parsing path in simulation:

- ``910b`` (default): an Atlas 800 training server, one chip per NPU, the layout of the
  24.1.RC2 capture in ``tests/fixtures/ascend``;
- ``310p`` (nodes of ``Ascend 310P``): Atlas 300I Duo cards, two chips per card (devices
  ``2k`` and ``2k+1`` are chips 0 and 1 of card ``k``), DDR memory, ``NA`` power in the table
  and the card's power in the MCU block of ``-t common`` (the printf formats of npu-smi's
  own source, hicann/driver ``npucli/src/npu_info_print.c``);
- ``a3`` (`NodeSim.npu_layout`): an Atlas A3 node, two dies per NPU with a ``Phy-ID`` column
  and ``-`` for die 1's power, as in the table of vllm-project/vllm-ascend issue #3002.

Card views (``-t VIEW -i N``) print each chip's block with its ``Chip ID`` (first in
``common``, last in the others) and the card's MCU block, as npu-smi does; ``-c C`` prints
one chip. Static ids (``VDie ID``, serial numbers, process ids) are derived from the node's
name. ``latency_s`` makes every call take that long (a loaded node's npu-smi). It fails the
way the binary does, through the `subprocess` exceptions `subprocess.run` raises:
`FakeNpuSmiError` is a `subprocess.CalledProcessError` (a non-zero exit with the tool's
message on stdout).

Assumptions, where no capture shows the case:

- Logic id = position on the node; physical id = logic id.
- A lost NPU stays in the table (the driver enumerated it at load) with Health ``Alarm``,
  ``NA`` for power, temperature, AI-core and memory, and its bus id kept; its per-chip views
  fail with a non-zero exit, as a chip that does not answer DCMI does.
- An unhealthy but reachable NPU shows Health ``Warning`` with normal readings and the error
  code ``80E01801`` in ``-t health``.
- A busy chip (utilization above 20%) runs one process, ``python3``, holding its memory
  above the 512 MiB the runtime keeps. The simulator has no vector-unit model, so
  ``Aivector Usage Rate(%)`` is ``NA``.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from computewatch.sim.node import DeviceReading, NodeSim

__all__ = ["FakeNpuSmi", "FakeNpuSmiError"]

_MIB = 2**20
_W = 93  # table width of the 24.1.RC2 layout
_BORDER = "+" + "-" * 22 + "+" + "-" * 15 + "+" + "-" * 52 + "+"
_DOUBLE = "+" + "=" * 22 + "+" + "=" * 15 + "+" + "=" * 52 + "+"
_VIEWS = ("usages", "common", "power", "memory", "temp", "board", "health", "volt", "ecc",
          "ecc-enable", "product")
_USAGE = ("Usage: npu-smi info [-m] | [-t TYPE -i NPU_ID [-c CHIP_ID]]\n"
          "       TYPE: " + " | ".join(_VIEWS))
_CHIP_ID_FIRST = ("common",)  # views whose chip blocks open with "Chip ID" (npu_info_print.c)


class FakeNpuSmiError(subprocess.CalledProcessError):
    """The fake binary exited non-zero; ``output`` holds what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {self.output.strip()}"


def _word(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=4).digest(), "big")


class FakeNpuSmi:
    """``npu-smi`` for one `NodeSim`; ``clock`` fixes the instant the readings are taken at."""

    def __init__(self, node: NodeSim, clock: Callable[[], datetime] | None = None, *,
                 latency_s: float = 0.0) -> None:
        self.node = node
        # npu-smi's figures refresh about once a second; so does the fake's moment.
        self.clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))
        self.latency_s = latency_s
        self.calls = 0

    @property
    def layout(self) -> str:
        if self.node.npu_layout:
            return self.node.npu_layout
        models = {d.spec.model for d in self.node.of_vendor("huawei")}
        return "310p" if models == {"Ascend 310P"} else "910b"

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
        self.calls += 1
        if self.latency_s:
            if self.latency_s > timeout:
                time.sleep(timeout)
                raise subprocess.TimeoutExpired(list(argv), timeout)
            time.sleep(self.latency_s)
        args = list(argv[1:])
        if args == ["info"]:
            return self._table()
        if args == ["info", "-m"]:
            return self._mapping()
        if args[:1] == ["info"] and len(args) >= 3:
            opts = dict(zip(args[1::2], args[2::2], strict=False))
            if (len(args) % 2 == 1 and set(opts) <= {"-t", "-i", "-c"}
                    and opts.get("-t") in _VIEWS and "-i" in opts):
                return self._view(argv, opts["-t"], opts["-i"], opts.get("-c"))
        raise self._error(argv, f"Error: invalid command: {' '.join(args)}\n{_USAGE}", 2)

    # --- the node as cards of chips -----------------------------------------------------

    def _npus(self) -> list[DeviceReading]:
        """The node's NPU readings at the fake's current moment (cached by the node)."""
        return self.node.readings_of("huawei", self.clock())

    def _cards(self) -> dict[int, list[tuple[int, DeviceReading]]]:
        """NPU id -> [(chip id, reading)]: one chip per NPU, or pairs (310P, A3)."""
        per = 1 if self.layout == "910b" else 2
        cards: dict[int, list[tuple[int, DeviceReading]]] = {}
        for r in self._npus():
            cards.setdefault(r.index // per, []).append((r.index % per, r))
        return cards

    def _name(self, r: DeviceReading) -> str:
        if self.layout == "a3":
            return "Ascend910"
        return {"Ascend 310P": "310P3"}.get(r.model, _chip_name(r.model))

    # --- the table ------------------------------------------------------------------------

    def _table(self) -> str:
        if self.layout == "310p":
            return self._table_310p()
        v = self.node.cann_version
        a3 = self.layout == "a3"
        second = ("| Chip  Phy-ID              |" if a3 else "| Chip                 |")
        first = ("| NPU   Name                |" if a3 else "| NPU   Name           |")
        border = _BORDER.replace("-" * 22, "-" * 27) if a3 else _BORDER
        double = _DOUBLE.replace("=" * 22, "=" * 27) if a3 else _DOUBLE
        width = len(border)
        out = [
            "+" + "-" * (width - 2) + "+",
            f"| npu-smi {v:<{width - 59}}Version: {v:<39}|",
            border,
            f"{first} Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
            f"{second} Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |",
            double,
        ]
        npu_col = 27 if a3 else 22
        for npu, chips in self._cards().items():
            for k, (chip, r) in enumerate(chips):
                if r.lost:
                    health, power, temp, aicore, mem, hbm = ("Alarm", "NA", "NA", "NA", "NA",
                                                             "NA")
                else:
                    health = "OK" if r.healthy else "Warning"
                    power, temp = _fmt(r.power_w, ".1f"), _fmt(r.temperature_c, ".0f")
                    aicore = _fmt(None if r.utilization is None else r.utilization * 100,
                                  ".0f")
                    mem = f"{0:<5}/ {0:<11}"
                    hbm = f"{_mib(r.memory_used_bytes):<5}/ {_mib(r.memory_total_bytes):<14}"
                if a3 and chip == 1 and power != "NA":
                    power = "-"  # npu-smi shows no power for die 1 of an A3 NPU
                ids = f"{chip:<6}{r.index:<{npu_col - 7}}" if a3 else f"{chip:<{npu_col - 1}}"
                out.append(f"| {npu:<6}{self._name(r):<{npu_col - 7}}| {health:<14}| "
                           f"{power:<12}{temp:<18}{0:<5}/ {0:<14}|")
                out.append(f"| {ids}| {r.pci_bus_id:<14}| {aicore:<12}{mem:<18}{hbm:<21}|")
                out.append(double if k == len(chips) - 1 else border)
        out += [border,
                f"| NPU     Chip{' ' * (npu_col - 13)}| Process id    | Process name             "
                "| Process memory(MB)      |",
                double]
        for npu, chips in self._cards().items():
            rows = [(chip, p) for chip, r in chips for p in self._procs(r)]
            if not rows:
                out.append(f"| {'No running processes found in NPU ' + str(npu):<{width - 3}}|")
            for chip, (pid, name, mib) in rows:
                out.append(f"| {npu:<7} {chip:<{npu_col - 9}}| {pid:<14}| {name:<25}| "
                           f"{mib:<24}|")
            out.append(double)
        return "\n".join(out) + "\n"

    def _table_310p(self) -> str:
        """The 310/310P layout, npu-smi's own printf formats (npu_info_print.c)."""
        v = self.node.cann_version
        dash = ("+-------------------------------+-----------------+---------------------------"
                "---------------------------+")
        eq = dash.replace("-", "=")
        out = ["+" + "-" * 104 + "+",
               f"| npu-smi {v:<40} Version: {v:<44} |",
               dash,
               "| NPU     Name                  | Health          | Power(W)     Temp(C)      "
               "     Hugepages-Usage(page) |",
               "| Chip    Device                | Bus-Id          | AICore(%)    Memory-Usage(MB)"
               "                        |",
               eq]
        for npu, chips in self._cards().items():
            for k, (chip, r) in enumerate(chips):
                health = "Alarm" if r.lost else ("OK" if r.healthy else "Warning")
                temp = "NA" if r.lost else _fmt(r.temperature_c, ".0f")
                out.append(f"| {npu:<7} {self._name(r):<22}| {health:<15} | {'NA':<12} "
                           f"{temp:<17} {0:<6}/ {0:<13} |")
                bus = chips[0][1].pci_bus_id  # a Duo card's two chips share its bus id
                if r.lost:
                    out.append(f"| {chip:<7} {r.index:<22}| {bus:<15} | {'NA':<12} "
                               f"{'NA':<3}/ {'NA':<34} |")
                else:
                    util = _fmt(None if r.utilization is None else r.utilization * 100, ".0f")
                    out.append(f"| {chip:<7} {r.index:<22}| {bus:<15} | {util:<12} "
                               f"{_mib(r.memory_used_bytes):<5}/ "
                               f"{_mib(r.memory_total_bytes):<32} |")
                out.append(eq if k == len(chips) - 1 else dash)
        out += [dash,
                "| NPU     Chip                  | Process id      | Process name             "
                "| Process memory(MB)        |",
                eq]
        for npu, chips in self._cards().items():
            rows = [(chip, p) for chip, r in chips for p in self._procs(r)]
            for chip, (pid, name, mib) in rows:
                out.append(f"| {npu:<7} {chip:<22}| {pid:<15} | {name:<24} | {mib:<25} |")
            if not rows:
                out.append(f"| No running processes found in NPU {npu:<7}{' ' * 62}|")
            out.append(eq)
        return "\n".join(out) + "\n"

    def _procs(self, r: DeviceReading) -> list[tuple[int, str, int]]:
        if r.lost or not r.utilization or r.utilization <= 0.2 or not r.memory_used_bytes:
            return []
        pid = 100000 + _word(self.node.node, r.index, "pid") % 800000
        return [(pid, "python3", max(0, _mib(r.memory_used_bytes) - 512))]

    def _mapping(self) -> str:
        out = [f"{'NPU ID':<31}{'Chip ID':<31}{'Chip Logic ID':<31}Chip Name"]
        for npu, chips in self._cards().items():
            for chip, r in chips:
                out.append(f"{npu:<31}{chip:<31}{r.index:<31}{r.model}")
        return "\n".join(out) + "\n"

    # --- the views ------------------------------------------------------------------------

    def _view(self, argv: Sequence[str], view: str, npu: str, chip: str | None) -> str:
        cards = self._cards()
        chips = cards.get(int(npu)) if npu.isdigit() else None
        picked = [(c, r) for c, r in chips or () if chip is None or str(c) == chip]
        if not picked:
            raise self._error(argv, f"Error: the device id is invalid: -i {npu}"
                              + (f" -c {chip}" if chip is not None else ""), 1)
        if view == "product" and self.layout != "310p":
            raise self._error(argv, "This device does not support querying product.", 1)
        if any(r.lost for _, r in picked):
            raise self._error(argv, f"Error: get {view} information of NPU {npu} failed: "
                              "device not available", 1)
        if chip is not None:  # one chip: its ids, then its values
            c, r = picked[0]
            lines = [("NPU ID", npu), ("Chip ID", str(c)), *self._values(view, r)]
            return "".join(f"\t{k:<31}: {v}\n" for k, v in lines)
        if view == "board":  # the card's board: no chip blocks
            return "".join(f"\t{k:<31}: {v}\n" for k, v in self._card_board(int(npu), picked))
        out = [f"\t{'NPU ID':<31}: {npu}", f"\t{'Chip Count':<31}: {len(picked)}", ""]
        for c, r in picked:
            block = self._values(view, r)
            if view in _CHIP_ID_FIRST:
                block = [("Chip ID", str(c)), *block]
            else:
                block = [*block, ("Chip ID", str(c))]
            out += [f"\t{k:<31}: {v}" for k, v in block] + [""]
        mcu = self._mcu(view, [r for _, r in picked])
        if mcu:
            out += [f"\t{k:<31}: {v}" for k, v in mcu] + [""]
        return "\n".join(out) + "\n"

    def _values(self, view: str, r: DeviceReading) -> list[tuple[str, str]]:
        ddr = self.layout == "310p"
        util = _fmt(None if r.utilization is None else r.utilization * 100, ".0f")
        mem_rate = "NA"
        if r.memory_used_bytes is not None and r.memory_total_bytes:
            mem_rate = f"{100 * r.memory_used_bytes / r.memory_total_bytes:.0f}"
        mhz = _fmt(None if r.sm_clock_hz is None else r.sm_clock_hz / 1e6, ".0f")
        bandwidth = _fmt(None if r.memory_utilization is None else r.memory_utilization * 100,
                         ".0f")
        if view == "usages":
            if ddr:
                return [("DDR Capacity(MB)", str(_mib(r.memory_total_bytes))),
                        ("DDR Usage Rate(%)", mem_rate), ("DDR Hugepages Total(page)", "0"),
                        ("DDR Hugepages Usage Rate(%)", "0"), ("Aicore Usage Rate(%)", util),
                        ("Aicpu Usage Rate(%)", "0"), ("Ctrlcpu Usage Rate(%)", "0"),
                        ("Vectorcore Usage Rate(%)", "0"),
                        ("DDR Bandwidth Usage Rate(%)", bandwidth)]
            return [("DDR Capacity(MB)", "0"), ("DDR Usage Rate(%)", "0"),
                    ("DDR Hugepages Total(page)", "0"), ("DDR Hugepages Usage Rate(%)", "0"),
                    ("HBM Capacity(MB)", str(_mib(r.memory_total_bytes))),
                    ("HBM Usage Rate(%)", mem_rate), ("Aicore Usage Rate(%)", util),
                    ("Aivector Usage Rate(%)", "NA"), ("Aicpu Usage Rate(%)", "0"),
                    ("Ctrlcpu Usage Rate(%)", "0"), ("DDR Bandwidth Usage Rate(%)", "0"),
                    ("HBM Bandwidth Usage Rate(%)", bandwidth), ("NPU Utilization(%)", util),
                    ("Aicube Usage Rate(%)", util)]
        if view == "common":
            spec_mhz = _fmt(_max_clock(r, self.node) / 1e6, ".0f")
            out = [("Memory Usage Rate(%)", mem_rate if ddr else "0")]
            if not ddr:
                out.append(("HBM Usage Rate(%)", mem_rate))
            out += [("Aicore Usage Rate(%)", util), ("Aicore Freq(MHZ)", spec_mhz),
                    ("Aicore curFreq(MHZ)", mhz)]
            if not ddr:
                out.append(("Aicore Count", "24"))
            out.append(("Temperature(C)", _fmt(r.temperature_c, ".0f")))
            if not ddr:  # 310P chips have no power reading of their own: see the MCU block
                out.append(("NPU Real-time Power(W)", _fmt(r.power_w, ".1f")))
            return out
        if view == "power":
            return [("NPU Real-time Power(W)", "NA" if ddr else _fmt(r.power_w, ".1f"))]
        if view == "memory":
            if ddr:
                return [("DDR Capacity(MB)", str(_mib(r.memory_total_bytes))),
                        ("DDR Clock Speed(MHz)", _fmt(
                            None if r.memory_clock_hz is None else r.memory_clock_hz / 1e6,
                            ".0f"))]
            return [("DDR Capacity(MB)", "0"),
                    ("HBM Capacity(MB)", str(_mib(r.memory_total_bytes))),
                    ("HBM Clock Speed(MHz)",
                     _fmt(None if r.memory_clock_hz is None else r.memory_clock_hz / 1e6, ".0f")),
                    ("HBM Temperature(C)", _fmt(r.memory_temperature_c, ".0f"))]
        if view == "temp":
            return [("NPU Temperature (C)", _fmt(r.temperature_c, ".0f"))]
        if view == "volt":
            return [("Voltage(V)", f"{0.80 + (r.utilization or 0) * 0.1:.2f}")]
        if view == "ecc":
            if ddr:
                return [("DDR Single Bit Error Count", "0"), ("DDR Double Bit Error Count", "0")]
            return [("HBM Single Bit Error Count", "0"), ("HBM Double Bit Error Count", "0"),
                    ("HBM Single Bit Aggregate Total Err Cnt", str(r.index % 3)),
                    ("HBM Double Bit Aggregate Total Err Cnt", "0"),
                    ("HBM Single Bit Isolated Pages Count", "0"),
                    ("HBM Double Bit Isolated Pages Count", "0")]
        if view == "ecc-enable":
            return [("DDR ECC-Enable Status", "True")] if ddr else [
                ("HBM ECC-Enable Status", "True")]
        if view == "product":
            return [("Product Type", "Atlas 300I Duo")]
        if view == "board":
            words = " ".join(f"{_word(self.node.node, r.index, 'vdie', k):08X}" for k in range(5))
            return [("Chip Type", "Ascend"), ("Chip Name", self._name(r).removeprefix("Ascend")),
                    ("Chip Version", "V1"), ("VDie ID", words), ("PCIe Bus Info", r.pci_bus_id),
                    ("Firmware Version", "7.5.0.1.129")]
        return [("Health Status", "OK" if r.healthy else "Warning"),
                ("Error Code", "NA" if r.healthy else "80E01801"),
                ("Error Information", "NA" if r.healthy else "node type=SOC, sensor type=HBM")]

    def _card_board(self, npu: int, chips: list[tuple[int, DeviceReading]]
                    ) -> list[tuple[str, str]]:
        serial = f"2102313{_word(self.node.node, npu, 'sn') % 10**11:011d}"
        return [("NPU ID", str(npu)), ("Serial Number", serial),
                ("Software Version", self.node.cann_version),
                ("Firmware Version", "7.5.0.1.129"), ("PCIe Bus Info", chips[0][1].pci_bus_id),
                ("Chip Count", str(len(chips)))]

    def _mcu(self, view: str, chips: list[DeviceReading]) -> list[tuple[str, str]]:
        """The card's MCU block: board temperature, and the card's power on 310P."""
        if view != "common":
            return []
        board_c = max((r.temperature_c or 0.0) for r in chips) - 3.0
        out = [("Chip Name", "mcu"), ("Temperature(C)", f"{board_c:.0f}")]
        if self.layout == "310p":
            # The card's power: its chips and the board around them (fans, DDR, regulators).
            card_w = sum(r.power_w or 0.0 for r in chips) + 8.0
            out.append(("NPU Real-time Power(W)", f"{card_w:.1f}"))
        return out

    @staticmethod
    def _error(argv: Sequence[str], message: str, code: int) -> FakeNpuSmiError:
        return FakeNpuSmiError(code, list(argv), output=message + "\n", stderr="")


def _max_clock(r: DeviceReading, node: NodeSim) -> float:
    for d in node.of_vendor("huawei"):
        if d.index == r.index:
            return d.spec.max_clock_hz
    return r.sm_clock_hz or 0.0


def _chip_name(model: str) -> str:
    """The Name column: npu-smi prints the chip (``910B``), not the marketing prefix."""
    return model.removeprefix("Ascend").strip() or model


def _mib(value: float | None) -> int:
    return 0 if value is None else int(value // _MIB)


def _fmt(value: float | None, spec: str) -> str:
    return "NA" if value is None else format(value, spec)
