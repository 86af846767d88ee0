"""Regenerates the PodResources stubs from ``_podresources.proto`` (``make protos``).

The stubs are committed rather than built at install time: the wheel then needs no build
step and no protoc (grpcio-tools is ~30 MB and only the developers who change the .proto
need it), and a review sees the generated code. tests/test_kubernetes_proto.py regenerates
them into a temporary folder and fails when they differ from the committed ones.

protoc writes imports from the file's path under its include root, so the .proto is placed
at ``computewatch/collectors/kubernetes/`` in a scratch tree: the generated service module
then imports its messages as ``computewatch.collectors.kubernetes._podresources_pb2``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["generate"]

HERE = Path(__file__).resolve().parent
PROTO = "_podresources.proto"
OUTPUTS = ("_podresources_pb2.py", "_podresources_pb2_grpc.py")
PACKAGE = Path("computewatch", "collectors", "kubernetes")


def generate(out_dir: Path) -> list[Path]:
    """Write the two stub modules into ``out_dir``; return their paths."""
    from grpc_tools import protoc  # the test extra; not needed at run time

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / PACKAGE).mkdir(parents=True)
        shutil.copy(HERE / PROTO, root / PACKAGE / PROTO)
        rc = protoc.main(["protoc", f"-I{root}", f"--python_out={root}",
                          f"--grpc_python_out={root}", str(PACKAGE / PROTO)])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {HERE / PROTO} (exit {rc})")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in OUTPUTS:
            shutil.copy(root / PACKAGE / name, out_dir / name)
            written.append(out_dir / name)
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
