"""A process's pod from its cgroup: ``<proc root>/<pid>/cgroup`` -> pod UID.

The kubelet puts every container in a cgroup under its pod's, and names the pod's after its
UID, whatever the cgroup driver and version:

- systemd driver: ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with
  _ for ->.slice/cri-containerd-<id>.scope`` (``docker-<id>``, ``crio-<id>`` by runtime;
  Guaranteed pods sit directly under ``kubepods.slice``);
- cgroupfs driver: ``/kubepods/besteffort/pod<uid>/<container id>``;
- cgroup v2 has one line (``0::/...``), v1 one per hierarchy (all name the same pod); in a
  private cgroup namespace the path is relative (``0::/../../kubepods-...``): the pod's
  segment is still there.

What the cgroup alone tells: the pod's UID, the container's runtime id and the QoS class. Not
the pod's name, namespace or container name: those are the API server's (or the kubelet's
``/pods`` endpoint, which needs the kubelet's credentials) and are not guessed here. A static
pod's UID is a 32-digit hash without dashes; it is kept as it is.

The /proc root is passed in (prometheus client_python's ProcessCollector), so tests read a
fake /proc checked into tests/fixtures/proc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PodRef", "parse_cgroup", "pod_of_pid"]

_POD = re.compile(r"(?:^|[/-])pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}"
                  r"[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?(?=/|$)")
_QOS = re.compile(r"kubepods[-/.](besteffort|burstable)")
_CONTAINER = re.compile(r"(?:^|/)(?:(?:cri-containerd|docker|crio)-)?([0-9a-f]{64})(?:\.scope)?$")


@dataclass(frozen=True, slots=True)
class PodRef:
    """The pod a process runs in, as far as its cgroup says."""

    uid: str
    container_id: str = ""
    qos: str = ""  # guaranteed | burstable | besteffort


def parse_cgroup(text: str) -> PodRef | None:
    """The pod named by a ``/proc/<pid>/cgroup`` file's text, or None outside any pod."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        if "kubepods" not in path:
            continue
        if (pod := _POD.search(path)) is None:
            continue
        qos = _QOS.search(path)
        ctr = _CONTAINER.search(path)
        return PodRef(pod.group(1).replace("_", "-"), ctr.group(1) if ctr else "",
                      qos.group(1) if qos else "guaranteed")
    return None


def pod_of_pid(proc_root: Path, pid: int | str) -> PodRef | None:
    """The pod of process ``pid`` (or ``"self"``) under ``proc_root``; None when it is gone
    or in no pod."""
    try:
        name = "self" if pid == "self" else str(int(pid))
        text = (Path(proc_root) / name / "cgroup").read_text(errors="replace")
    except (OSError, ValueError):  # exited, not permitted, or not a pid
        return None
    return parse_cgroup(text)
