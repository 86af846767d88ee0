"""What the bridge adds to uvicorn's HTTP/1.1 protocol: a connection limit and a deadline
for the request line and headers.

uvicorn (with h11) parses requests and runs the ASGI app; it has no deadline for a request's
headers (its keep-alive timer starts only after a response, and any byte received stops
it), so a client sending one byte a second would hold its connection forever. Here every
connection must deliver a complete request head within ``header_timeout`` of connecting or
of its previous response, or it gets 408 and is closed; past ``max_connections`` open
connections a new one gets 503 and is closed at once; a request h11 cannot parse gets
uvicorn's 400. Each is counted by `reject` with its reason (``header_timeout``,
``connection_limit``, ``bad_request``). The body's deadline is the app's (server.py).

This subclasses uvicorn's `H11Protocol` and relies on its ``cycle`` (the request being
served), ``connections``, ``on_response_complete`` and ``send_400_response``, all present in
uvicorn 0.30 to 0.55; tests/test_alert_bridge_server.py fails if they change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["Guards", "guarded_protocol"]


@dataclass(frozen=True, slots=True)
class Guards:
    max_connections: int
    header_timeout_s: float
    reject: Callable[[str], None]  # counts one refusal by reason


def _raw(status: str, reason: str) -> bytes:
    body = f"{reason}\n".encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


_TOO_MANY = _raw("503 Service Unavailable", "connection_limit: too many connections")
_TOO_SLOW = _raw("408 Request Timeout", "header_timeout: the request head came too slowly")


class _GuardedH11(H11Protocol):
    guards: Guards

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.guards.max_connections:
            self.guards.reject("connection_limit")
            transport.write(_TOO_MANY)  # type: ignore[attr-defined]
            transport.close()
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._await_head()  # before: a pipelined request may start inside
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self._stop_timer()
        self.guards.reject("bad_request")
        super().send_400_response(msg)

    def _await_head(self) -> None:
        """The next request's head must be in within the deadline."""
        self._stop_timer()
        self._awaiting = self.cycle  # a new cycle means the head arrived
        self._head_timer = self.loop.call_later(self.guards.header_timeout_s, self._too_slow)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.cycle is not self._awaiting:
            return
        self.guards.reject("header_timeout")
        self.transport.write(_TOO_SLOW)
        self.transport.close()


def guarded_protocol(guards: Guards) -> type[H11Protocol]:
    """uvicorn's h11 protocol with these guards (pass it as ``uvicorn.Config(http=...)``)."""
    return type("GuardedH11Protocol", (_GuardedH11,), {"guards": guards})
