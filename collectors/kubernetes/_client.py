"""One call of the kubelet's PodResources API (v1 ``List``) over its unix socket.

The answer is flattened into `Holding`s: (resource, device id) -> namespace, pod, container.
A failure raises `KubeletUnavailable` with a short reason for the counter (absent: no socket;
unavailable; timeout; unimplemented: a kubelet without v1; error). After a failure the
channel is dropped and a new one is made at the next call, so a kubelet that restarts is
found again at the next refresh, not after gRPC's reconnect backoff (up to 2 minutes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holding", "KubeletUnavailable", "PodResourcesClient"]


@dataclass(frozen=True, slots=True)
class Holding:
    """One device a container was allocated, as its device plugin names it."""

    resource: str
    device_id: str
    namespace: str
    pod: str
    container: str


class KubeletUnavailable(RuntimeError):
    """The kubelet could not be asked; ``reason`` is a label value, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_REASONS = {"UNAVAILABLE": "unavailable", "DEADLINE_EXCEEDED": "timeout",
            "UNIMPLEMENTED": "unimplemented"}


class PodResourcesClient:
    """Asks the kubelet at ``socket`` which container holds which device."""

    def __init__(self, socket: Path, timeout_s: float = 2.0) -> None:
        self.socket = Path(socket)
        self.timeout_s = timeout_s
        self._channel = None
        self._stub = None

    def list(self) -> list[Holding]:
        import grpc

        from computewatch.collectors.kubernetes import _podresources_pb2 as pb
        from computewatch.collectors.kubernetes._podresources_pb2_grpc import (
            PodResourcesListerStub,
        )

        if not self.socket.exists():
            self.close()
            raise KubeletUnavailable("absent", f"no kubelet socket at {self.socket}")
        if self._stub is None:
            self._channel = grpc.insecure_channel(f"unix://{self.socket.absolute()}")
            self._stub = PodResourcesListerStub(self._channel)
        try:
            answer = self._stub.List(pb.ListPodResourcesRequest(), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            self.close()
            code = exc.code() if callable(getattr(exc, "code", None)) else None
            name = code.name if code is not None else "UNKNOWN"
            details = exc.details() if callable(getattr(exc, "details", None)) else ""
            raise KubeletUnavailable(_REASONS.get(name, "error"),
                                     f"PodResources List at {self.socket}: {name} "
                                     f"{details}".rstrip()) from None
        return [Holding(dev.resource_name, device_id, pod.namespace, pod.name, ctr.name)
                for pod in answer.pod_resources for ctr in pod.containers
                for dev in ctr.devices for device_id in dev.device_ids]

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None
