"""``host:port`` as operators write it, read once for every command and config file.

The agent's ``/metrics`` listen address, the responder's and the bridge's, the latency peers'
addresses: each is ``host:port``, ``[ipv6]:port``, or (where a default port applies) a bare
host or IPv6 address. A port must be a number from 1 to 65535; a listen address may also say
port 0, "any free port" (what tests use). Errors are ValueErrors that name the text and what
is wrong with it, so a config loader or the command line can put them on one line.
"""

from __future__ import annotations

__all__ = ["MAX_PORT", "parse_listen", "split_host_port"]

MAX_PORT = 65535


def split_host_port(address: str, default_port: int | None = None, *,
                    what: str = "address", allow_zero: bool = False) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port).

    A missing port is ``default_port``; ``allow_zero`` accepts port 0 (bind to any free port).
    """
    text = address.strip()
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{what} {address!r}: write [ipv6]:port")
        port_text = rest[1:]
        if rest and not port_text:
            raise ValueError(f"{what} {address!r}: no port after the colon")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            raise ValueError(f"{what} {address!r}: no port after the colon")
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 address
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{what} {address!r}: no host (write host:port, e.g. 127.0.0.1:9400)")
    if not port_text:
        return host, default_port
    low = 0 if allow_zero else 1
    if not (port_text.isascii() and port_text.isdigit()) or not low <= int(port_text) <= MAX_PORT:
        raise ValueError(f"{what} {address!r}: port {port_text!r} is not a number from {low} "
                         f"to {MAX_PORT}")
    return host, int(port_text)


def parse_listen(text: str, what: str = "--listen") -> tuple[str, int]:
    """A listen address ``host:port`` or ``[ipv6]:port`` (port 0: any free port)."""
    host, port = split_host_port(text, None, what=what, allow_zero=True)
    if port is None:
        raise ValueError(f"{what} {text!r}: expected host:port, e.g. 127.0.0.1:9400")
    return host, port
