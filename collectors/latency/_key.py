"""The shared probe key: read once from a file or an environment variable, never shown.

Every site of a deployment holds the same key; a responder started with it answers only
probes signed with it, and a prober with it accepts only replies signed with it (see
`_wire`). The key is the file's or the variable's text, surrounding whitespace stripped.
"""

from __future__ import annotations

import os
from pathlib import Path

from computewatch.collectors.latency._wire import MIN_KEY_BYTES

__all__ = ["read_probe_key"]


def read_probe_key(file: Path | str | None = None, env: str | None = None) -> bytes | None:
    """The key from ``file`` or ``env`` (at most one of the two); None when neither is given.

    A missing file or variable, or a key shorter than 16 bytes, is a ValueError naming where
    the key was looked for, never its value.
    """
    if file is not None and env is not None:
        raise ValueError("give the probe key as a file or an environment variable, not both")
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or type(exc).__name__
            raise ValueError(f"cannot read the probe key file {str(file)!r}: {why}") from None
        where = f"the probe key file {str(file)!r}"
    elif env is not None:
        if env not in os.environ:
            raise ValueError(f"the probe key variable {env} is not set")
        text, where = os.environ[env], f"the probe key variable {env}"
    else:
        return None
    key = text.strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{where} holds {len(key)} bytes; a probe key needs at least "
                         f"{MIN_KEY_BYTES} (e.g. `openssl rand -hex 32`)")
    return key
