"""Running a device tool (``npu-smi``, ``hccn_tool``) so that a hung one never outlives its timeout.

`subprocess.run(timeout=...)` kills only the direct child: a wrapper script's children (the
real ``npu-smi`` behind a ``sudo`` or ``chroot`` wrapper, a container exec) keep running,
and keep the output pipes open, so the call itself can still hang on reading them. Here the
tool runs in a session of its own and a timeout kills the whole process group, children
included, before the pipes are drained.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

__all__ = ["Run", "run_command"]

Run = Callable[[Sequence[str], float], str]
"""The device seam: run ``argv`` within ``timeout`` seconds, return stdout; raise as
`subprocess.run` does (FileNotFoundError, TimeoutExpired, CalledProcessError)."""

_REAP_S = 2.0  # after SIGKILL, how long to wait for the pipes to close


def run_command(argv: Sequence[str], timeout: float) -> str:
    """Run ``argv`` without a shell, in its own process group; return its stdout.

    Raises `subprocess.TimeoutExpired` after killing the group (every child) when it does not
    finish in ``timeout`` seconds, `subprocess.CalledProcessError` (with stdout and stderr)
    on a non-zero exit, and FileNotFoundError/OSError when it cannot start.
    """
    with subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, errors="replace",
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            # A child that left the group may still hold a pipe: then give up on it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=_REAP_S)
            raise subprocess.TimeoutExpired(list(argv), timeout) from None
        except BaseException:
            _kill_group(proc)
            raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, list(argv), out, err)
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # the leader's pid is the group id
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
