"""Inter-site latency: UDP, TCP and ICMP probes on a drift-free grid, one series per link.

Each site probes its peers (`targets_from_topology` picks them from the topology's links, each
target knowing its tier, fiber minimum and budget) and runs a `Responder`, the UDP echo
service its peers probe. The `Prober` runs on asyncio: every target on its own schedule, all
in one event loop and, for UDP and ICMP, on one shared socket per address family, so 1,000
targets cost one thread. `LatencyCollector` runs a Prober in a background thread and hands the
agent the last completed window of every target plus the cumulative histograms.

The metrics, the configuration and what to capture for a bug report are in this folder's
README.md; the sample configuration is sample.yaml. Modules, one job each: `_targets` (whom to
probe), `_wire` (the probe packet, kernel time stamps), `_key` (the shared probe key),
`_prober` (schedule, sockets, replies), `_windows` (window statistics), `_collector` (the
agent's view), `_responder` (the service that answers probes).
"""

from computewatch.collectors.latency._collector import EMITTED, LatencyCollector
from computewatch.collectors.latency._key import read_probe_key
from computewatch.collectors.latency._prober import ICMP_DISABLED, Prober
from computewatch.collectors.latency._responder import (
    DEFAULT_RATE,
    DROP_REASONS,
    Responder,
    new_responder_loop,
    open_responder,
    serve_responder,
)
from computewatch.collectors.latency._targets import (
    DEFAULT_RESPONDER_PORT,
    KINDS,
    ProbeKind,
    ProbeTarget,
    split_host_port,
    targets_from_topology,
)
from computewatch.collectors.latency._windows import (
    BUCKETS,
    MIN_FIBER_RTT_S,
    WindowResult,
    percentile,
)
from computewatch.collectors.latency._wire import (
    MAGIC,
    PACKET_SIZE,
    ProbePacket,
    decode_probe,
    encode_probe,
    reply_to,
)

__all__ = [
    "BUCKETS",
    "DEFAULT_RATE",
    "DEFAULT_RESPONDER_PORT",
    "DROP_REASONS",
    "EMITTED",
    "ICMP_DISABLED",
    "KINDS",
    "MAGIC",
    "MIN_FIBER_RTT_S",
    "PACKET_SIZE",
    "LatencyCollector",
    "ProbeKind",
    "ProbePacket",
    "ProbeTarget",
    "Prober",
    "Responder",
    "WindowResult",
    "decode_probe",
    "encode_probe",
    "new_responder_loop",
    "open_responder",
    "percentile",
    "read_probe_key",
    "reply_to",
    "serve_responder",
    "split_host_port",
    "targets_from_topology",
]
