"""A command's start-up: its imports, without the cyclic garbage collector and without
OpenBLAS's thread pool (`starting`)."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["starting"]

_BLAS_THREADS = "OPENBLAS_NUM_THREADS"


@contextmanager
def starting(module: str) -> Iterator[None]:
    """Imports without the cyclic garbage collector, then the objects they made moved out of
    its sight (`gc.freeze`): modules live as long as the process, yet a month's report
    (pandas, pyarrow, DuckDB, pydantic: some 100,000 objects) ran 258 collections mostly
    over them, each full one after walking them again: 282 M of its 6.27 G instructions,
    0.1 to 0.15 s of CPU; with this 69 collections, 43 M, 0.015 s. Nothing is done where
    ``module`` (the imports' root) is imported already: a second command in one process (the
    tests) freezes none of its data.

    NumPy's OpenBLAS, loaded by these imports, starts with one thread unless the
    environment asks otherwise: its pool of a thread per core, started at load and spinning
    a while, cost a month's report 0.1 s of CPU on 2 cores, and nothing in computewatch
    calls BLAS (no matrix product, no linear algebra). The variable is read at load only and
    is put back after, so child processes see the environment as it was."""
    if module in sys.modules:
        yield
        return
    was = gc.isenabled()
    blas = os.environ.get(_BLAS_THREADS)
    if blas is None and "numpy" not in sys.modules:
        os.environ[_BLAS_THREADS] = "1"
    gc.disable()
    try:
        yield
    finally:
        if blas is None:
            os.environ.pop(_BLAS_THREADS, None)
        gc.freeze()
        if was:
            gc.enable()
