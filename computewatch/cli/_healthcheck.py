"""Container health check for the computewatch image: `computewatch-healthcheck TARGET...`.

The image is python:3.11-slim, which has neither curl nor wget, so compose health checks call
this console script instead (it imports no more than the latency probe's packet format). A
target is an HTTP(S) URL, healthy when it answers 2xx, ``udp://host:port``, healthy when a
latency responder there answers one probe (a proper request; ``?key_file=PATH`` or
``?key_env=NAME`` signs it for a responder that requires the shared key), or
``file:///path?max_age=40m``, healthy when that heartbeat file (`computewatch analyze
--heartbeat`) is younger than max_age.
Exit 0 when every target is healthy, 1 otherwise, with one line on stderr naming the target
and what went wrong.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from computewatch.collectors.latency import ProbePacket, decode_probe, encode_probe, read_probe_key

__all__ = ["check", "healthcheck", "main"]


def _check_http(url: str, timeout_s: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return None if 200 <= reply.status < 300 else f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return str(getattr(exc, "reason", exc))


def _check_udp(host: str, port: int, query: str, timeout_s: float) -> str | None:
    params = urllib.parse.parse_qs(query)
    try:
        key = read_probe_key(params.get("key_file", [None])[-1],
                             params.get("key_env", [None])[-1])
    except ValueError as exc:
        return str(exc)
    session, seq = int.from_bytes(os.urandom(4), "big"), int.from_bytes(os.urandom(8), "big")
    probe = encode_probe(session, 0, seq, time.monotonic_ns(), key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect((host, port))  # so a closed port is refused at once, not timed out
            sock.send(probe)
            reply = sock.recv(2048)
        except OSError as exc:
            return f"no answer ({exc or 'timed out'})"
    got = decode_probe(reply, key)
    if not isinstance(got, ProbePacket):
        return f"the answer is not a probe reply ({got})"
    if not got.reply or (got.session, got.seq) != (session, seq):
        return "the answer is not the reply to our probe"
    return None


def _check_file(path: str, query: str) -> str | None:
    """A heartbeat file (`computewatch analyze --heartbeat`) modified within ``max_age``."""
    from computewatch.durations import parse_duration

    params = urllib.parse.parse_qs(query)
    try:
        max_age_s = parse_duration(params.get("max_age", ["1h"])[-1])
    except ValueError as exc:
        return f"max_age: {exc}"
    try:
        age_s = time.time() - os.stat(path).st_mtime
    except OSError as exc:
        return f"no heartbeat ({exc.strerror})"
    if age_s > max_age_s:
        return f"heartbeat is {age_s:.0f} s old (max_age {max_age_s:.0f} s)"
    return None


def check(target: str, timeout_s: float = 3.0) -> str | None:
    """None when ``target`` is healthy, else what is wrong with it."""
    try:
        parsed = urllib.parse.urlsplit(target)
        port = parsed.port
    except ValueError as exc:  # "[::1" or a port that is not 0-65535
        return f"not a target: {exc}"
    if parsed.scheme in ("http", "https"):
        return _check_http(target, timeout_s)
    if parsed.scheme == "udp" and parsed.hostname and port:
        return _check_udp(parsed.hostname, port, parsed.query, timeout_s)
    if parsed.scheme == "file" and parsed.path:
        return _check_file(parsed.path, parsed.query)
    return ("not a target: expected http(s)://host:port/path, udp://host:port[?key_file=F] or "
            "file:///path?max_age=DURATION")


def main(argv: list[str] | None = None) -> int:
    targets = sys.argv[1:] if argv is None else argv
    if not targets:
        print("usage: computewatch-healthcheck URL|udp://host:port|file:///path ...",
              file=sys.stderr)
        return 2
    failed = 0
    for target in targets:
        problem = check(target)
        if problem is not None:
            from computewatch.redact import redact

            print(redact(f"unhealthy: {target}: {problem}"), file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def healthcheck() -> None:
    """The ``computewatch-healthcheck`` console script."""
    sys.exit(main())
