"""`make bench`: every benchmark in turn, each printing its figures and ratio."""

from __future__ import annotations

import os
import platform
import sys

from bench import (
    bench_agent,
    bench_ascend,
    bench_bridge,
    bench_demo,
    bench_ingest,
    bench_latency,
    bench_lineprotocol,
    bench_pipelines,
    bench_query,
    bench_remote_write,
    bench_storage,
    bench_store_victoriametrics,
    bench_year,
)

ALL = ("demo", "query", "ingest", "lineprotocol", "agent", "ascend", "latency", "pipelines",
       "remote_write", "store_vm", "bridge", "storage", "year")


def _named(argv: list[str]) -> list[tuple[str, list[int]]]:
    """Benchmark names, each with the numbers that follow it (``storage 24 0``)."""
    out: list[tuple[str, list[int]]] = []
    for arg in argv:
        if arg.isdigit() and out:
            out[-1][1].append(int(arg))
        else:
            out.append((arg, []))
    return out


def main() -> None:
    which = _named([a for a in sys.argv[1:] if not a.startswith("--")]) or [
        (name, []) for name in ALL]
    print(f"computewatch benchmarks on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    store = bench_demo.STORE
    for name, args in which:
        print()
        if name == "demo":
            store = bench_demo.main()
        elif name == "query":
            if not store.exists():
                store = bench_demo.main()
            bench_query.main(store)
        elif name == "ingest":
            bench_ingest.main(*args)
        elif name == "lineprotocol":
            bench_lineprotocol.main()
        elif name == "agent":
            bench_agent.main()
        elif name == "ascend":
            bench_ascend.main()
        elif name == "latency":
            bench_latency.main()
        elif name == "pipelines":
            bench_pipelines.main()
        elif name == "remote_write":
            bench_remote_write.main()
        elif name == "store_vm":
            bench_store_victoriametrics.main()
        elif name == "bridge":
            bench_bridge.main()
        elif name == "storage":
            bench_storage.main(*args)
        elif name == "year":
            bench_year.main(rebuild="--rebuild" in sys.argv)
        else:
            sys.exit(f"unknown benchmark {name!r}: demo, query, ingest, lineprotocol, agent, "
                     f"ascend, latency, pipelines, remote_write, store_vm, bridge, storage, year")


main()
