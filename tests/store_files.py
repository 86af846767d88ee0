"""An embedded store on disk is two things: the DuckDB file and, beside it, the folder of its
sealed Parquet parts (``<file>.parquet``, `computewatch.store._sealed`). Tests that copy a
store or remove a copy do both here, so a copy never names parts it lacks."""

from __future__ import annotations

import shutil
from pathlib import Path


def _parts(path: Path) -> Path:
    return path.with_name(path.name + ".parquet")


def copy_store(source: str | Path, target: Path) -> None:
    """Copy a store's file and its parts' folder (if it has one) to ``target``; the store is
    closed, or checkpointed with no write pending."""
    source = Path(source)
    shutil.copyfile(source, target)
    if _parts(source).is_dir():
        shutil.copytree(_parts(source), _parts(target))


def remove_store(path: Path) -> None:
    """Remove a store's file and its parts' folder."""
    path.unlink(missing_ok=True)
    shutil.rmtree(_parts(path), ignore_errors=True)
