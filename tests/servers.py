"""Real servers for integration tests: VictoriaMetrics, Prometheus and Alertmanager on loopback.

Each ``start_*`` launches the Debian package's binary on 127.0.0.1 with a free port (or the one
given, so a test can restart a server where its clients expect it), waits until the server
says it is ready and returns a `Server`. A server that exits or never gets ready raises with
the tail of its log, so a failing integration test says why. Use them as context managers, or
call ``stop()`` in a ``finally``: a server is never left running.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = [
    "Server",
    "ServerError",
    "free_port",
    "installed",
    "start_alertmanager",
    "start_prometheus",
    "start_victoriametrics",
]

VICTORIA_METRICS = "/usr/bin/victoria-metrics"
PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


class ServerError(RuntimeError):
    """A test server could not be started; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed(name: str) -> str:
    """The path of a tool the Makefile installs (a Debian package or the test extra).

    Missing, the test fails rather than skips: CI installs every one, so a skip would hide a
    broken install step and count an unrun test as passing.
    """
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                   else None)
    if found is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (the Makefile's "
                    "DEBIAN_PACKAGES and the test extra)")
    return found


def _binary(path: str) -> str:
    found = path if Path(path).exists() else shutil.which(Path(path).name)
    if found is None:
        raise ServerError(f"{path} is not installed; `make test` installs it "
                          "(the Makefile's DEBIAN_PACKAGES)")
    return found


class Server:
    """One running server process; ``argv_for(port)`` rebuilds its command line."""

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log: Path,
                 timeout_s: float = 30.0) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = log
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        if self.running:
            return self
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self._wait_ready()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}:\n"
                                  f"{self.log[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} at {self.url} not ready after {self.timeout_s:.0f} s:\n"
                          f"{self.log[-3000:]}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), killing it if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to clients and to the data directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> Server:
        """Start again on the same port with the same data directory."""
        self.stop()
        return self.start()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{self.name} {self.url} {'running' if self.running else 'stopped'}>"


def _start(name: str, build, data_dir: Path, port: int | None, ready_path: str) -> Server:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    last: ServerError | None = None
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        chosen = port or free_port()
        server = Server(name, build(chosen), chosen, ready_path, data_dir / f"{name}.log")
        try:
            return server.start()
        except ServerError as exc:
            last = exc
            if port is not None:
                break
    assert last is not None
    raise last


def start_victoriametrics(data_dir: Path, port: int | None = None,
                          args: Sequence[str] = ()) -> Server:
    """Single-node VictoriaMetrics; retention long enough for any simulated history.

    ``-search.disableCache`` makes a read right after a write see it (tests write, then read).
    """
    binary = _binary(VICTORIA_METRICS)

    def build(p: int) -> list[str]:
        return [binary, f"-httpListenAddr=127.0.0.1:{p}",
                f"-storageDataPath={Path(data_dir) / 'vm-data'}", "-retentionPeriod=100y",
                "-search.disableCache", "-loggerLevel=WARN", *args]

    return _start("victoria-metrics", build, data_dir, port, "/health")


def start_prometheus(data_dir: Path, config_file: Path, port: int | None = None,
                     args: Sequence[str] = ()) -> Server:
    """Prometheus with lifecycle (``/-/reload``) and admin APIs on."""
    binary = _binary(PROMETHEUS)

    def build(p: int) -> list[str]:
        return [binary, f"--config.file={config_file}", f"--web.listen-address=127.0.0.1:{p}",
                f"--storage.tsdb.path={Path(data_dir) / 'prom-data'}", "--web.enable-lifecycle",
                "--web.enable-admin-api", "--log.level=warn", *args]

    return _start("prometheus", build, data_dir, port, "/-/ready")


def start_alertmanager(data_dir: Path, config_file: Path, port: int | None = None,
                       args: Sequence[str] = ()) -> Server:
    """Alertmanager without clustering (no gossip port is opened)."""
    binary = _binary(ALERTMANAGER)

    def build(p: int) -> list[str]:
        return [binary, f"--config.file={config_file}", f"--web.listen-address=127.0.0.1:{p}",
                f"--storage.path={Path(data_dir) / 'am-data'}", "--cluster.listen-address=",
                f"--web.external-url=http://127.0.0.1:{p}", "--log.level=warn", *args]

    return _start("alertmanager", build, data_dir, port, "/-/ready")
