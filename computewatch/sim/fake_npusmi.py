"""A fake ``npu-smi`` binary that reads its numbers from a simulated node.

`FakeNpuSmi` has the collector's ``run(argv, timeout) -> str`` signature and prints what
``npu-smi`` 24.1.RC2 prints on an Atlas 800 training server (the layout of the 24.1.RC2
capture in ``shared/fixtures/ascend``) for the node's Huawei devices, so the Ascend collector
runs its real parsing path in simulation. It fails the way the binary does, through the
`subprocess` exceptions `subprocess.run` raises: `FakeNpuSmiError` is a
`subprocess.CalledProcessError` (a non-zero exit with the tool's message on stdout).

Assumptions, where no capture shows the case:

- One chip per NPU (910B), chip id 0, logic id = position on the node.
- A lost NPU stays in the table (the driver enumerated it at load) with Health ``Alarm``,
  ``NA`` for power, temperature, AI-core and memory, and its bus id kept; its per-chip views
  fail with a non-zero exit, as a chip that does not answer DCMI does.
- An unhealthy but reachable NPU shows Health ``Warning`` with normal readings.
- The chip has no DDR of its own in the table (``Memory-Usage`` ``0 / 0``, as real 910B
  shows); device memory is HBM. The simulator has no vector-unit model, so
  ``Aivector Usage Rate(%)`` is ``NA``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from computewatch.sim.node import DeviceReading, NodeSim

__all__ = ["FakeNpuSmi", "FakeNpuSmiError"]

_MIB = 2**20
_W = 93  # table width of the 24.1.RC2 layout
_BORDER = "+" + "-" * 22 + "+" + "-" * 15 + "+" + "-" * 52 + "+"
_DOUBLE = "+" + "=" * 22 + "+" + "=" * 15 + "+" + "=" * 52 + "+"
_VIEWS = ("usages", "common", "power", "memory", "temp", "board", "health")
_USAGE = ("Usage: npu-smi info [-m] | [-t TYPE -i NPU_ID [-c CHIP_ID]]\n"
          "       TYPE: " + " | ".join(_VIEWS))


class FakeNpuSmiError(subprocess.CalledProcessError):
    """The fake binary exited non-zero; ``output`` holds what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {self.output.strip()}"


class FakeNpuSmi:
    """``npu-smi`` for one `NodeSim`; ``clock`` fixes the instant the readings are taken at."""

    def __init__(self, node: NodeSim, clock: Callable[[], datetime] | None = None) -> None:
        self.node = node
        # npu-smi's figures refresh about once a second; so does the fake's moment.
        self.clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
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

    # --- the views ---------------------------------------------------------------------

    def _npus(self) -> list[DeviceReading]:
        """The node's NPU readings at the fake's current moment (cached by the node)."""
        return self.node.readings_of("huawei", self.clock())

    def _table(self) -> str:
        v = self.node.cann_version
        out = [
            "+" + "-" * (_W - 2) + "+",
            f"| npu-smi {v:<34}Version: {v:<39}|",
            _BORDER,
            "| NPU   Name           | Health        | Power(W)    Temp(C)           "
            "Hugepages-Usage(page)|",
            "| Chip                 | Bus-Id        | AICore(%)   Memory-Usage(MB)  "
            "HBM-Usage(MB)        |",
            _DOUBLE,
        ]
        for r in self._npus():
            name = _chip_name(r.model)
            if r.lost:
                health, power, temp, aicore, mem, hbm = "Alarm", "NA", "NA", "NA", "NA", "NA"
            else:
                health = "OK" if r.healthy else "Warning"
                power, temp = _fmt(r.power_w, ".1f"), _fmt(r.temperature_c, ".0f")
                aicore = _fmt(None if r.utilization is None else r.utilization * 100, ".0f")
                mem = f"{0:<5}/ {0:<11}"
                hbm = f"{_mib(r.memory_used_bytes):<5}/ {_mib(r.memory_total_bytes):<14}"
            out.append(f"| {r.index:<6}{name:<15}| {health:<14}| {power:<12}{temp:<18}"
                       f"{0:<5}/ {0:<14}|")
            out.append(f"| {0:<21}| {r.pci_bus_id:<14}| {aicore:<12}{mem:<18}{hbm:<21}|")
            out.append(_DOUBLE)
        out += [_BORDER,
                "| NPU     Chip         | Process id    | Process name             "
                "| Process memory(MB)      |",
                _DOUBLE]
        for r in self._npus():
            out += [f"| {'No running processes found in NPU ' + str(r.index):<{_W - 3}}|",
                    _DOUBLE]
        return "\n".join(out) + "\n"

    def _mapping(self) -> str:
        out = [f"{'NPU ID':<31}{'Chip ID':<31}{'Chip Logic ID':<31}Chip Name"]
        for logic, r in enumerate(self._npus()):
            out.append(f"{r.index:<31}{0:<31}{logic:<31}{r.model}")
        return "\n".join(out) + "\n"

    def _view(self, argv: Sequence[str], view: str, npu: str, chip: str | None) -> str:
        found = [r for r in self._npus() if str(r.index) == npu]
        if not found or chip not in (None, "0"):
            raise self._error(argv, f"Error: the device id is invalid: -i {npu}"
                              + (f" -c {chip}" if chip is not None else ""), 1)
        r = found[0]
        if r.lost:
            raise self._error(argv, f"Error: get {view} information of NPU {npu} failed: "
                              "device not available", 1)
        kv = _view_values(view, r, self.node)
        head = [("NPU ID", npu), ("Chip ID", "0")] if view in ("board", "power", "temp") else \
            [("NPU ID", npu), ("Chip Count", "1"), None]
        if view == "health":
            head = []
        lines = ["" if item is None else f"\t{item[0]:<31}: {item[1]}" for item in head]
        lines += [f"\t{k:<31}: {v}" for k, v in kv]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _error(argv: Sequence[str], message: str, code: int) -> FakeNpuSmiError:
        return FakeNpuSmiError(code, list(argv), output=message + "\n", stderr="")


def _view_values(view: str, r: DeviceReading, node: NodeSim) -> list[tuple[str, str]]:
    util = _fmt(None if r.utilization is None else r.utilization * 100, ".0f")
    hbm_rate = "NA"
    if r.memory_used_bytes is not None and r.memory_total_bytes:
        hbm_rate = f"{100 * r.memory_used_bytes / r.memory_total_bytes:.0f}"
    mhz = _fmt(None if r.sm_clock_hz is None else r.sm_clock_hz / 1e6, ".0f")
    if view == "usages":
        bandwidth = None if r.memory_utilization is None else r.memory_utilization * 100
        return [("DDR Capacity(MB)", "0"), ("DDR Usage Rate(%)", "0"),
                ("DDR Hugepages Total(page)", "0"), ("DDR Hugepages Usage Rate(%)", "0"),
                ("HBM Capacity(MB)", str(_mib(r.memory_total_bytes))),
                ("HBM Usage Rate(%)", hbm_rate), ("Aicore Usage Rate(%)", util),
                ("Aivector Usage Rate(%)", "NA"), ("Aicpu Usage Rate(%)", "0"),
                ("Ctrlcpu Usage Rate(%)", "0"), ("DDR Bandwidth Usage Rate(%)", "0"),
                ("HBM Bandwidth Usage Rate(%)", _fmt(bandwidth, ".0f")), ("Chip ID", "0")]
    if view == "common":
        spec_mhz = _fmt(_max_clock(r, node) / 1e6, ".0f")
        return [("Chip ID", "0"), ("Memory Usage Rate(%)", "0"), ("HBM Usage Rate(%)", hbm_rate),
                ("Aicore Usage Rate(%)", util), ("Aicore Freq(MHZ)", spec_mhz),
                ("Aicore curFreq(MHZ)", mhz), ("Aicore Count", "24"),
                ("Temperature(C)", _fmt(r.temperature_c, ".0f")),
                ("NPU Real-time Power(W)", _fmt(r.power_w, ".1f"))]
    if view == "power":
        return [("Power Dissipation(W)", _fmt(r.power_w, ".1f"))]
    if view == "memory":
        return [("DDR Capacity(MB)", "0"),
                ("HBM Capacity(MB)", str(_mib(r.memory_total_bytes))),
                ("HBM Clock Speed(MHz)",
                 _fmt(None if r.memory_clock_hz is None else r.memory_clock_hz / 1e6, ".0f")),
                ("HBM Temperature(C)", _fmt(r.memory_temperature_c, ".0f"))]
    if view == "temp":
        return [("Temperature(C)", _fmt(r.temperature_c, ".0f"))]
    if view == "board":
        return [("Chip Type", "Ascend"), ("Chip Name", _chip_name(r.model)),
                ("PCIe Bus Info", r.pci_bus_id), ("Firmware Version", "7.5.0.1.129")]
    return [("Health Status", "OK" if r.healthy else "Warning"), ("Error Code", "NA"),
            ("Error Information", "NA")]


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
