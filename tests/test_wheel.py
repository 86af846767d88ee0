"""The built wheel, installed (not editable) into a new virtual environment, is the whole package.

What a user gets from `pip install`: exactly one top-level package, `computewatch`, with every
subpackage importable from site-packages (not from this source tree) and every data file the
source folders hold (profiles, register maps, templates, dashboards, rules, topology, policy).

It runs offline and in seconds: the wheel is built without build isolation by the setuptools
the test extra installs, the new environment gets no pip of its own, and its dependencies come
from the project's .venv through a path file (its site-packages is appended, not processed, so
the editable install living there is never activated).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from layering import layer_folders

pytestmark = pytest.mark.slow  # builds, installs and imports the package (~15 s)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "computewatch"
NOT_SHIPPED = {".py", ".pyc", ".md"}
"""Suffixes of files in the package folders that are not package data: code goes in as modules,
Markdown is documentation."""


TOP_LEVEL_SKIPPED = {".git", ".venv", "var", "build", "dist", "tests", ".pytest_cache",
                     ".ruff_cache"}
ANYWHERE_SKIPPED = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.duckdb", "*.duckdb.wal")


def _source_tree(into: Path) -> Path:
    """A copy of the project without its tests, environments and build outputs."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(ANYWHERE_SKIPPED(folder, names))
        return skipped | (TOP_LEVEL_SKIPPED & set(names) if Path(folder) == ROOT else set())

    return Path(shutil.copytree(ROOT, into, ignore=ignore))


def _data_files(folders: dict[str, Path]) -> set[str]:
    """Package data in the source folders, as paths inside the installed package."""
    found = set()
    for prefix, folder in folders.items():
        for path in folder.rglob("*"):
            if (path.is_file() and path.suffix not in NOT_SHIPPED
                    and "__pycache__" not in path.parts):
                found.add(f"{prefix}/{path.relative_to(folder).as_posix()}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = _source_tree(work / "src")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--no-index", "-q", "-w", str(work / "dist"),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (work / "dist").glob(f"{PACKAGE}-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed; returns its site-packages."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies, from the project's environment (appended after the wheel's own files).
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_project_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n",
                                                      encoding="utf-8")
    return site


def test_the_wheel_holds_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert whl.read(top_level).decode().split() == [PACKAGE]
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        recorded = [line.split(",")[0] for line in whl.read(record).decode().splitlines()]
    dist_info = record.split("/")[0]
    assert {name.split("/")[0] for name in recorded} == {PACKAGE, dist_info}
    assert {name.split("/")[0] for name in names} == {PACKAGE, dist_info}


def test_site_packages_gains_only_computewatch(installed, wheel):
    ours = {p.name for p in installed.iterdir()} - {"zz_project_dependencies.pth"}
    dist_info = next(n for n in ours if n.endswith(".dist-info"))
    assert dist_info.startswith(f"{PACKAGE}-")
    assert ours == {PACKAGE, dist_info}, f"site-packages holds more than {PACKAGE}: {ours}"


def test_every_data_file_of_the_source_folders_is_installed(installed):
    folders = {PACKAGE: ROOT / PACKAGE} | {f"{PACKAGE}/{layer}": ROOT / layer
                                           for layer in layer_folders(ROOT)}
    expected = _data_files(folders)
    # The kinds of data the package loads at run time, wherever their folders move.
    for kind, suffixes in {"snmp": (".yaml",), "modbus": (".yaml",), "templates": (".html",),
                           "dashboards": (".json", ".yml"), "alerts": (".yml",),
                           f"{PACKAGE}/data": (".yaml",)}.items():
        assert any(kind in path and path.endswith(suffixes) for path in expected), \
            f"no {kind} data file ({'/'.join(suffixes)}) found in the source folders"
    installed_files = {p.relative_to(installed).as_posix()
                       for p in (installed / PACKAGE).rglob("*") if p.is_file()}
    missing = sorted(expected - installed_files)
    assert not missing, f"package data the wheel does not install: {missing}"


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import computewatch
found = {}
for info in pkgutil.walk_packages(computewatch.__path__, "computewatch."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue  # running it is running the command line
    module = importlib.import_module(info.name)
    found[info.name] = [info.ispkg, module.__file__]
json.dump({"package": computewatch.__file__, "modules": found}, sys.stdout)
"""


def test_every_subpackage_and_module_imports_from_site_packages(installed):
    python = installed.parents[2] / "bin" / "python"
    proc = subprocess.run([str(python), "-I", "-c", IMPORT_ALL], capture_output=True, text=True,
                          timeout=300, cwd=installed.parents[3])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    modules = result["modules"]
    assert Path(result["package"]).is_relative_to(installed)
    outside = {name: path for name, (_, path) in modules.items()
               if not Path(path).is_relative_to(installed)}
    assert not outside, f"imported from outside the new environment: {outside}"
    packages = {name for name, (ispkg, _) in modules.items() if ispkg}
    layers = {f"{PACKAGE}.{layer}" for layer in layer_folders(ROOT)}
    assert layers <= packages, f"layers missing from the wheel: {sorted(layers - packages)}"
    # Every package of the source tree is in the wheel (a folder without __init__ is not).
    source_packages = {f"{PACKAGE}.{layer}.{'.'.join(p.parent.relative_to(ROOT / layer).parts)}"
                       .rstrip(".") for layer in layer_folders(ROOT)
                       for p in (ROOT / layer).rglob("__init__.py")}
    source_packages |= {".".join(p.parent.relative_to(ROOT).parts)
                        for p in (ROOT / PACKAGE).rglob("__init__.py")} - {PACKAGE}
    assert source_packages <= packages, sorted(source_packages - packages)


def test_the_console_script_runs_from_the_wheel(installed):
    script = installed.parents[2] / "bin" / "computewatch"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage" in proc.stdout.lower()


def test_the_installed_catalogue_translates(installed):
    """The compiled zh-CN catalogue ships in the wheel and is what the command reads."""
    script = installed.parents[2] / "bin" / "computewatch"
    proc = subprocess.run([str(script), "--lang", "zh-CN", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "面向全国一体化算力网络的遥测与可观测性工具。" in proc.stdout
    assert (installed / PACKAGE / "locale" / "zh_CN" / "LC_MESSAGES" / "computewatch.mo").is_file()
