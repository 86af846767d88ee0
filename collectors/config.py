"""The node agent's configuration (node.yaml), validated at load and free of I/O.

Durations are written ``15s``, ``2m``, ``1h`` or a number of seconds. Errors name the file,
line, field and value (computewatch.config). Loading it imports the collectors' settings
models only (each folder's light `_config`), never a collector or a device library. A minimal
file is just the placement:

```yaml
site: bj-ai
hub: jjj
```
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, field_validator, model_validator

from computewatch.addresses import parse_listen, split_host_port
from computewatch.collectors._settings import (
    CollectorConfig,
    Duration,
    Interval,
    ShortInterval,
    _Model,
    parse_duration,
)
from computewatch.collectors.export.buffer import DEFAULT_MAX_BYTES
from computewatch.collectors.export.remote import DEFAULT_BATCH_SAMPLES
from computewatch.collectors.kubernetes import KubernetesConfig
from computewatch.collectors.modbus import ModbusMeter
from computewatch.collectors.redfish import RedfishEndpoint
from computewatch.collectors.snmp import SnmpDevice
from computewatch.config import PathError, load_yaml_model
from computewatch.lineprotocol import check_write_url

__all__ = ["NodeConfig", "load_node_config", "parse_duration"]

class NvmlConfig(CollectorConfig):
    top_processes: int = Field(5, ge=0, le=100)


AscendView = Literal["usages", "common", "memory", "health", "volt", "ecc", "temp", "power"]


class AscendConfig(CollectorConfig):
    npu_smi: str = "npu-smi"
    command_timeout: Duration = 5.0
    detail: bool = True
    detail_every: int = Field(4, ge=1)
    detail_budget: Duration = 4.0
    detail_concurrency: int = Field(4, ge=1, le=32)
    views: list[AscendView] = Field(default_factory=lambda: ["usages", "common"])
    slow_views: list[AscendView] = Field(
        default_factory=lambda: ["memory", "health", "volt", "ecc"])
    slow_every: int = Field(4, ge=1)
    hccn_tool: str | None = "/usr/local/Ascend/driver/tools/hccn_tool"
    hccn_queries: list[Literal["link", "net_health", "bandwidth", "stat"]] = Field(
        default_factory=lambda: ["link", "net_health", "bandwidth"])
    max_processes: int = Field(8, ge=0)


class RedfishConfig(CollectorConfig):
    endpoints: list[RedfishEndpoint] = Field(default_factory=list)


class SnmpConfig(CollectorConfig):
    devices: list[SnmpDevice] = Field(default_factory=list)


class ModbusConfig(CollectorConfig):
    meters: list[ModbusMeter] = Field(default_factory=list)


class RaplConfig(CollectorConfig):
    enabled: bool = False
    root: Path = Path("/sys/class/powercap")


class PueConfig(_Model):
    """PUE derived from this agent's own meters; on whenever a power collector is.

    ``topology``: the topology that declares this site's meters; each declared facility and
    IT meter is then expected, and a silent one lowers the completeness. Without it the
    meters the agent has heard from are expected."""

    enabled: bool = True
    windows: list[Literal["15m", "1h"]] = Field(default_factory=lambda: ["15m", "1h"])
    min_completeness: float = Field(0.9, ge=0.0, le=1.0)
    max_gap: Duration = 300.0
    topology: Path | None = None


class LatencyConfig(CollectorConfig):
    """Probes from this node's site to its peers; each peer runs `computewatch responder`."""

    enabled: bool = False
    peers: dict[str, str] = Field(default_factory=dict)  # site id -> host[:port]
    mode: Literal["full_mesh", "hub_and_spoke"] = "full_mesh"
    kind: Literal["udp", "tcp", "icmp"] = "udp"
    probe_interval: ShortInterval = 1.0
    probe_timeout: Duration = 1.0
    window: Duration = 60.0
    topology: Path | None = None  # default: the shipped national topology
    policy: Path | None = None  # default: the shipped policy
    key_file: Path | None = None  # the shared probe key (responders' --key-file), or
    key_env: str | None = None  # the variable holding it; at most one of the two

    @model_validator(mode="after")
    def _one_key(self) -> LatencyConfig:
        if self.key_file is not None and self.key_env is not None:
            raise PathError(("key_env",), "give key_file or key_env, not both")
        return self

    @field_validator("peers")
    @classmethod
    def _addresses(cls, peers: dict[str, str]) -> dict[str, str]:
        for site, address in peers.items():
            split_host_port(address, what=f"site {site!r}: address")
        return peers


class Collectors(_Model):
    nvml: NvmlConfig = NvmlConfig()
    ascend: AscendConfig = AscendConfig()
    redfish: RedfishConfig = RedfishConfig()
    snmp: SnmpConfig = SnmpConfig()
    modbus: ModbusConfig = ModbusConfig()
    rapl: RaplConfig = RaplConfig()
    pue: PueConfig = PueConfig()
    latency: LatencyConfig = LatencyConfig()


class PrometheusExport(_Model):
    enabled: bool = True
    listen: str = "127.0.0.1:9400"
    compat: list[Literal["dcgm", "npu-exporter"]] = Field(default_factory=list)
    # TLS and basic auth for /metrics: an exporter-toolkit web configuration file
    # (collectors/export/webconfig.py), as node_exporter's --web.config.file.
    web_config_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        parse_listen(listen, "listen")
        return listen


class OtlpExport(_Model):
    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/metrics"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str) -> str:
        try:
            parts = urlsplit(endpoint)
            parts.port  # noqa: B018 (raises for a port that is not a number in 0-65535)
        except ValueError as exc:
            raise ValueError(f"not an http(s)://host:port/path URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port == 0:
            raise ValueError("must be an http(s)://host:port/path URL, e.g. "
                             "http://127.0.0.1:4318/v1/metrics")
        return endpoint


class StoreExport(_Model):
    enabled: bool = False
    url: str = "duckdb:///var/agent.duckdb"


class RemoteExport(_Model):
    """Remote write through a durable on-disk queue (collectors/export/remote.py)."""

    enabled: bool = False
    url: str = "victoriametrics://127.0.0.1:8428"
    buffer_dir: Path = Path("/var/lib/computewatch/buffer")
    buffer_max_bytes: ByteSize = Field(ByteSize(DEFAULT_MAX_BYTES), ge=2**20)
    buffer_fsync: Literal["always", "interval", "never"] = "always"
    buffer_fsync_interval: ShortInterval = 1.0
    batch_max_samples: int = Field(DEFAULT_BATCH_SAMPLES, ge=1, le=1_000_000)
    flush_interval: ShortInterval = 1.0
    max_backoff: Duration = 30.0
    timeout: Duration = 10.0
    gzip: bool = True

    @field_validator("url")
    @classmethod
    def _known_url(cls, url: str) -> str:
        return check_write_url(url)  # the rest is checked when the exporter starts


class Exports(_Model):
    prometheus: PrometheusExport = PrometheusExport()
    otlp: OtlpExport = OtlpExport()
    store: StoreExport = StoreExport()
    remote: RemoteExport = RemoteExport()


class NodeConfig(_Model):
    """One node's agent: where it stands, what it reads, where the samples go."""

    node: str = Field(default_factory=socket.gethostname, min_length=1)
    site: str = ""
    cluster: str = ""
    hub: str = ""
    interval: Interval = 15.0
    timeout: Duration = 10.0
    collectors: Collectors = Collectors()
    exports: Exports = Exports()
    # Workload attribution: pod, namespace, container on every accelerator series
    # (collectors/kubernetes/README.md).
    kubernetes: KubernetesConfig = KubernetesConfig()

    @property
    def labels(self) -> dict[str, str]:
        return {"node": self.node, "site": self.site, "cluster": self.cluster, "hub": self.hub}


def load_node_config(path: Path | None) -> NodeConfig:
    """The config at ``path``, or the defaults (this host, every collector) when None."""
    return NodeConfig() if path is None else load_yaml_model(Path(path), NodeConfig)
