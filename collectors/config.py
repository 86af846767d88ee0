"""The node agent's configuration (node.yaml), validated at load and free of I/O.

Durations are written ``15s``, ``2m``, ``1h`` or a number of seconds. Errors name the file,
line, field and value (computewatch.config). A minimal file is just the placement:

```yaml
site: bj-ai
hub: jjj
```
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field

from collectors._settings import CollectorConfig, Duration, _Model, parse_duration
from computewatch.config import load_yaml_model

__all__ = ["NodeConfig", "load_node_config", "parse_duration"]

class NvmlConfig(CollectorConfig):
    pass


class AscendConfig(CollectorConfig):
    npu_smi: str = "npu-smi"
    command_timeout: Duration = 5.0
    detail: bool = True


class Collectors(_Model):
    nvml: NvmlConfig = NvmlConfig()
    ascend: AscendConfig = AscendConfig()


class PrometheusExport(_Model):
    enabled: bool = True
    listen: str = "127.0.0.1:9400"
    compat: list[Literal["dcgm", "npu-exporter"]] = Field(default_factory=list)


class OtlpExport(_Model):
    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/metrics"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 10.0


class StoreExport(_Model):
    enabled: bool = False
    url: str = "duckdb:///var/agent.duckdb"


class Exports(_Model):
    prometheus: PrometheusExport = PrometheusExport()
    otlp: OtlpExport = OtlpExport()
    store: StoreExport = StoreExport()


class NodeConfig(_Model):
    """One node's agent: where it stands, what it reads, where the samples go."""

    node: str = Field(default_factory=socket.gethostname, min_length=1)
    site: str = ""
    cluster: str = ""
    hub: str = ""
    interval: Duration = 15.0
    timeout: Duration = 10.0
    collectors: Collectors = Collectors()
    exports: Exports = Exports()

    @property
    def labels(self) -> dict[str, str]:
        return {"node": self.node, "site": self.site, "cluster": self.cluster, "hub": self.hub}


def load_node_config(path: Path | None) -> NodeConfig:
    """The config at ``path``, or the defaults (this host, every collector) when None."""
    return NodeConfig() if path is None else load_yaml_model(Path(path), NodeConfig)
