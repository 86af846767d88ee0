"""Device plugins' ids and the agent's device labels, brought to one key.

What each plugin puts in PodResources ``device_ids`` (the facts this module relies on):

- NVIDIA k8s-device-plugin, ``nvidia.com/gpu``: the GPU's UUID (``GPU-<uuid>``, the default
  ``--device-id-strategy=uuid``) or its index (``0``, ``--device-id-strategy=index``); with
  MIG (``nvidia.com/mig-1g.10gb`` under the mixed strategy, ``nvidia.com/gpu`` under single)
  the MIG device's UUID, ``MIG-<uuid>`` from driver R470, ``MIG-GPU-<gpu uuid>/<gi>/<ci>``
  before; with time-slicing or MPS each replica is ``<id>::<n>``, several pods sharing one
  device.
- Huawei Ascend device plugin (Ascend/mind-cluster ``ascend-device-plugin``),
  ``huawei.com/Ascend910``, ``huawei.com/Ascend310P``, ``huawei.com/Ascend310``:
  ``<type>-<phy id>`` (``Ascend910-0``), the chip's *physical* id (``fmt.Sprintf("%s-%d",
  devType, PhyID)``), which is npu-smi's ``Phy-ID`` / ``npu-smi info -m`` ``Chip Phy-ID``
  and the agent's ``phy_id`` label, not npu-smi's NPU ID; a virtual NPU
  (``huawei.com/Ascend910-2c``) is ``<type>-<template>-<vdev id>-<phy id>``
  (``Ascend910-2c-100-0``): the last number is still the physical chip it is cut from.

The agent's side: an NVIDIA device's ``device`` label is its UUID (a MIG device's its MIG
UUID, with ``parent`` its GPU's UUID and ``gpu_instance_id``), ``index`` the NVML index
(``0``, a MIG device ``0:1``); an Ascend chip carries ``phy_id``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["Key", "holding_keys", "sample_keys"]

Key = tuple[str, ...]

_OLD_MIG = re.compile(r"MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)")
_LAST_NUMBER = re.compile(r"-(\d+)$")


def holding_keys(resource: str, device_id: str) -> list[Key]:
    """The keys a device plugin's ``device_id`` of ``resource`` matches (none: not ours)."""
    vendor = resource.partition("/")[0]
    if vendor == "nvidia.com":
        base = device_id.split("::", 1)[0]  # a time-sliced or MPS replica
        if m := _OLD_MIG.fullmatch(base):
            return [("mig", m.group(1), m.group(2))]
        if base.isdigit():
            return [("nvidia-index", base)]
        return [("uuid", base)]
    if vendor == "huawei.com" and (m := _LAST_NUMBER.search(device_id)):
        return [("ascend-phy", str(int(m.group(1))))]
    return []


def sample_keys(labels: Mapping[str, str]) -> list[Key]:
    """The keys a device's labels answer to, most specific first."""
    vendor = labels.get("vendor")
    if vendor == "nvidia":
        keys: list[Key] = []
        if device := labels.get("device"):
            keys.append(("uuid", device))
        if (parent := labels.get("parent")) and (gi := labels.get("gpu_instance_id")):
            keys.append(("mig", parent, gi))
        elif (index := labels.get("index")) and ":" not in index:
            keys.append(("nvidia-index", index))
        return keys
    if vendor == "huawei" and (phy := labels.get("phy_id")):
        return [("ascend-phy", phy)]
    return []
