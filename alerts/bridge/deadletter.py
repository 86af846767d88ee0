"""The dead-letter log: one JSON line per message the bridge gave up on.

Each record holds what is needed to understand and replay it: when, which receiver and
target, why (the metric's reason), how many attempts, the last error, the rendered message
and the Alertmanager notification as received. Never the target's URL or secret.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["DeadLetterLog", "read_dead_letters"]


class DeadLetterLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and flush it to disk; raises OSError when that fails."""
        line = json.dumps({"time": datetime.now(UTC).isoformat(), **record},
                          ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())


def read_dead_letters(path: Path) -> list[dict[str, Any]]:
    """Every record in a dead-letter file (for operators' tools and tests)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
