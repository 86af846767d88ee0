"""How dcgm-exporter labels and describes its series, for ``--compat dcgm``.

Facts from NVIDIA/dcgm-exporter (released tags; its etc/default-counters.csv and
internal/pkg/rendermetrics): every series carries ``gpu`` (the GPU's index), ``UUID`` (the
GPU's UUID), ``pci_bus_id``, ``device`` (``nvidia<gpu>``), ``modelName`` (the GPU's name)
and ``Hostname``, then its labels such as ``DCGM_FI_DRIVER_VERSION``; with its Kubernetes
mapping on, a device a pod holds also carries ``pod``, ``namespace`` and ``container``
(internal/pkg/transformation/kubernetes.go: set only for a device a pod was allocated). A
MIG instance's series carry its GPU's ``gpu``, ``UUID`` and ``modelName`` plus
``GPU_I_PROFILE`` (``1g.10gb``) and ``GPU_I_ID`` (NVML's GPU instance id).
``DCGM_FI_DEV_XID_ERRORS`` also carries ``err_code`` and ``err_msg``. HELP texts are
dcgm-exporter's, so a diff against its output is quiet.
"""

from __future__ import annotations

from collections.abc import Mapping

from computewatch.collectors.export._xid_messages import UNKNOWN, XID_MESSAGES

__all__ = ["DCGM_HELP", "dcgm_labels"]

XID = "DCGM_FI_DEV_XID_ERRORS"

DCGM_HELP: dict[str, str] = {
    "DCGM_FI_DEV_SM_CLOCK": "SM clock frequency (in MHz).",
    "DCGM_FI_DEV_MEM_CLOCK": "Memory clock frequency (in MHz).",
    "DCGM_FI_DEV_MEMORY_TEMP": "Memory temperature (in C).",
    "DCGM_FI_DEV_GPU_TEMP": "GPU temperature (in C).",
    "DCGM_FI_DEV_POWER_USAGE": "Power draw (in W).",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "Total energy consumption since boot (in mJ).",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "Total number of PCIe retries.",
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "Memory utilization (in %).",
    "DCGM_FI_DEV_ENC_UTIL": "Encoder utilization (in %).",
    "DCGM_FI_DEV_DEC_UTIL": "Decoder utilization (in %).",
    XID: "Value of the last XID error encountered.",
    "DCGM_FI_DEV_FB_FREE": "Framebuffer memory free (in MiB).",
    "DCGM_FI_DEV_FB_USED": "Framebuffer memory used (in MiB).",
    "DCGM_FI_DEV_FB_RESERVED": "Framebuffer memory reserved (in MiB).",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL":
        "Total number of NVLink bandwidth counters for all lanes.",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS":
        "Number of remapped rows for uncorrectable errors",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "Number of remapped rows for correctable errors",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "Whether remapping of rows has failed",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics engine is active.",
    "DCGM_FI_PROF_SM_ACTIVE": "The ratio of cycles an SM has at least 1 warp assigned.",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "Ratio of cycles the tensor (HMMA) pipe is active.",
    "DCGM_FI_PROF_DRAM_ACTIVE": "Ratio of cycles the device memory interface is active "
                                "sending or receiving data.",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "The rate of data transmitted over the PCIe bus - including "
                                  "both protocol headers and data payloads - in bytes per "
                                  "second.",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "The rate of data received over the PCIe bus - including "
                                  "both protocol headers and data payloads - in bytes per "
                                  "second.",
    "DCGM_FI_PROF_NVLINK_TX_BYTES": "The rate of data transmitted over NVLink, not including "
                                    "protocol headers, in bytes per second.",
    "DCGM_FI_PROF_NVLINK_RX_BYTES": "The rate of data received over NVLink, not including "
                                    "protocol headers, in bytes per second.",
}
"""dcgm-exporter's HELP text for each name (default-counters.csv; the two NVLink byte rates,
which it does not ship, in the same words)."""


def _gpu_model(model: str) -> str:
    """A MIG device's name is its GPU's plus `` MIG <profile>``; modelName is the GPU's."""
    head, sep, _ = model.rpartition(" MIG ")
    return head if sep else model


def dcgm_labels(labels: Mapping[str, str], name: str, value: float) -> dict[str, str]:
    """The labels dcgm-exporter gives the series of one of our samples, in its order."""
    index = labels.get("index", "")
    gpu = index.split(":", 1)[0]  # a MIG device's series carry its GPU's index
    out = {"gpu": gpu, "UUID": labels.get("parent") or labels.get("device", ""),
           "pci_bus_id": labels.get("pci_bus_id", ""), "device": f"nvidia{gpu}",
           "modelName": _gpu_model(labels.get("model", ""))}
    if labels.get("gpu_instance_id"):
        out["GPU_I_PROFILE"] = labels.get("gpu_instance_profile", "")
        out["GPU_I_ID"] = labels["gpu_instance_id"]
    if labels.get("node"):
        out["Hostname"] = labels["node"]
    if labels.get("driver_version"):
        out["DCGM_FI_DRIVER_VERSION"] = labels["driver_version"]
    for key in ("pod", "namespace", "container"):  # its Kubernetes mapping: held devices only
        if labels.get(key):
            out[key] = labels[key]
    if name == XID:
        code = int(value)
        out["err_code"] = str(code)
        out["err_msg"] = XID_MESSAGES.get(code, UNKNOWN)
    return out
