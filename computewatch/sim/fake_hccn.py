"""A fake ``hccn_tool`` (Huawei's NPU network tool) that reads a simulated node.

`FakeHccnTool` has the collector's ``run(argv, timeout) -> str`` signature and answers
``hccn_tool -i PHY_ID -link|-net_health|-bandwidth|-stat -g`` in the documented formats (as
npu-exporter's parser states them, Ascend/mind-cluster
``component/ascend-common/devmanager/hccn/hccn_tool.go``, and as mind-cluster's fault
capture ``npu_info_before.txt`` shows them): ``link status: UP``, ``net health status:
Success``, ``Bandwidth TX: 12.34 MB/sec`` / ``Bandwidth RX: ...``, ``packet statistics:``
with ``name:count`` lines. A lost NPU's port is ``DOWN`` with ``Socket failed``; a busy
chip moves data in proportion to its load. Unknown ids and queries fail as the tool does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from computewatch.sim.node import NodeSim

__all__ = ["FakeHccnTool"]

_LINK_MB_S = 12_500.0  # a 100GE RoCE port: 12,500 MB/s line rate


class FakeHccnTool:
    """``hccn_tool`` for one `NodeSim`: physical id = the NPU device's position."""

    def __init__(self, node: NodeSim, clock: Callable[[], datetime] | None = None) -> None:
        self.node = node
        self.clock = clock or (lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self, argv: Sequence[str], timeout: float) -> str:
        args = list(argv[1:])
        if len(args) != 4 or args[0] != "-i" or args[3] != "-g" or not args[1].isdigit():
            raise self._error(argv, "Usage: hccn_tool -i <id> -<cmd> -g", 1)
        found = [r for r in self.node.readings_of("huawei", self.clock())
                 if r.index == int(args[1])]
        if not found:
            raise self._error(argv, f"devid {args[1]} is invalid", 1)
        r = found[0]
        query = args[2]
        load = 0.0 if r.lost else (r.utilization or 0.0)
        if query == "-link":
            return f"link status: {'DOWN' if r.lost else 'UP'}\n"
        if query == "-net_health":
            return f"net health status: {'Socket failed' if r.lost else 'Success'}\n"
        if query == "-bandwidth":
            tx = _LINK_MB_S * 0.4 * load
            return f"Bandwidth TX: {tx:.2f} MB/sec\nBandwidth RX: {tx * 0.97:.2f} MB/sec\n"
        if query == "-stat":
            return ("packet statistics:\nmac_rx_fcs_err_pkt_num:0\n"
                    f"roce_ecn_db_num:{int(load * 1000)}\nroce_rx_err_pkt_num:0\n")
        raise self._error(argv, f"unknown command {query}", 1)

    @staticmethod
    def _error(argv: Sequence[str], message: str, code: int) -> subprocess.CalledProcessError:
        return subprocess.CalledProcessError(code, list(argv), output=message + "\n", stderr="")
