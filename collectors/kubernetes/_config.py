"""The node config's ``kubernetes`` section: where the kubelet's socket is, how often to ask.

Light on purpose (pydantic only): the node config imports it without grpc.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from computewatch.collectors._settings import Duration, Interval, _Model

__all__ = ["DEFAULT_SOCKET", "KubernetesConfig"]

DEFAULT_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
"""Where the kubelet serves the PodResources API (its ``--pod-resources`` directory)."""


class KubernetesConfig(_Model):
    """Workload attribution: label each accelerator with the pod that holds it.

    ``pod_resources_socket``: the kubelet's PodResources socket (mount it read-only into the
    agent's pod). ``refresh``: the longest the agent uses an answer before asking again;
    it asks sooner, within one collection interval, when a process starts on a device the
    answer calls free or the last one leaves a held device.
    ``timeout``: one List call. ``proc_root``: the host's /proc (the agent needs hostPID for
    it), read for the fallback: where the socket cannot be reached, a device's processes are
    traced through ``/proc/<pid>/cgroup`` to their pod's UID. ``cgroup_fallback: false``
    turns that off.
    """

    enabled: bool = False
    pod_resources_socket: Path = DEFAULT_SOCKET
    refresh: Interval = 60.0
    timeout: Duration = Field(2.0, gt=0)
    proc_root: Path = Path("/proc")
    cgroup_fallback: bool = True
