"""The RAPL collector on fake powercap trees written to a temporary folder."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import computewatch.collectors.rapl as rapl_module
from computewatch import catalog
from computewatch.collectors import DriverAbsent
from computewatch.collectors.rapl import EMITTED, RaplCollector
from computewatch.samples import Sample, sample_value
from computewatch.validation import check_sample

LABELS = {"node": "bj-ai-n0001", "site": "bj-ai", "cluster": "bj-ai-c1", "hub": "jjj"}
MAX = 262_143_328_850  # a real package's max_energy_range_uj


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def zone(root: Path, zone_id: str, name: str, energy_uj: int, max_uj: int = MAX) -> Path:
    """One powercap zone as the kernel lays it out (flat under /sys/class/powercap)."""
    path = root / f"intel-rapl:{zone_id}"
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (path / "enabled").write_text("1\n")
    return path


def set_energy(root: Path, zone_id: str, energy_uj: int) -> None:
    (root / f"intel-rapl:{zone_id}" / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def tree(tmp_path) -> Path:
    """Two packages, each with core and dram sub-zones, a control-type folder and MMIO."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control type: no energy of its own
    zone(root, "0", "package-0", 100_000_000)
    zone(root, "0:0", "core", 40_000_000)
    zone(root, "0:1", "dram", 9_000_000, max_uj=65_712_999_613)
    zone(root, "1", "package-1", 200_000_000)
    zone(root, "1:0", "dram", 7_000_000, max_uj=65_712_999_613)
    mmio = root / "intel-rapl-mmio:0"  # the same package counter again: skipped
    mmio.mkdir()
    (mmio / "name").write_text("package-0\n")
    (mmio / "energy_uj").write_text("1\n")
    (mmio / "max_energy_range_uj").write_text(f"{MAX}\n")
    return root


def collect(collector: RaplCollector) -> list[Sample]:
    """One run; every sample must be one the catalogue accepts."""
    samples = collector.collect()
    for s in samples:
        check_sample(s)
    return samples


def value(samples: list[Sample], field: str, zone_label: str) -> float | None:
    return sample_value(samples, f"facility_power.{field}",
                        {"meter": f"bj-ai-n0001-rapl-{zone_label}"})


def errors(samples: list[Sample]) -> dict[str, float]:
    return {s.label("error_type") or "": s.value for s in samples
            if s.name == "agent.collector_errors_total"}


# --- a normal host --------------------------------------------------------------------------

def test_first_run_gives_energy_only_then_watts_from_the_delta(tree):
    clock = Clock()
    collector = RaplCollector(LABELS, tree, clock=clock)
    first = collect(collector)
    assert {s.field for s in first} == {"joules_total"}
    assert value(first, "joules_total", "package-0") == 100.0
    assert value(first, "joules_total", "package-1") == 200.0
    clock.t += 2.0
    set_energy(tree, "0", 100_000_000 + 500_000_000)  # +500 J in 2 s
    set_energy(tree, "1:0", 7_000_000 + 30_000_000)  # +30 J in 2 s
    second = collect(collector)
    assert value(second, "joules_total", "package-0") == 600.0
    assert value(second, "watts", "package-0") == 250.0
    assert value(second, "watts", "package-1") == 0.0
    assert value(second, "watts", "package-1-dram") == 15.0


def test_zones_are_named_after_their_package_and_labelled_as_it_meters(tree):
    samples = collect(RaplCollector(LABELS, tree))
    meters = sorted(s.label("meter") for s in samples)
    assert meters == [f"bj-ai-n0001-rapl-{z}" for z in
                      ("package-0", "package-0-core", "package-0-dram", "package-1",
                       "package-1-dram")]
    for s in samples:
        assert dict(s.labels) == {"hub": "jjj", "cluster": "bj-ai-c1", "site": "bj-ai",
                                  "meter": s.label("meter"), "scope": "host",
                                  "source": "rapl://bj-ai-n0001"}


def test_a_wrapped_counter_keeps_increasing_by_exactly_the_energy_used(tmp_path):
    root = tmp_path / "powercap"
    zone(root, "0", "package-0", MAX - 1_000_000)
    clock = Clock()
    collector = RaplCollector(LABELS, root, clock=clock)
    first = value(collect(collector), "joules_total", "package-0")
    assert first == (MAX - 1_000_000) / 1e6
    clock.t += 1.0
    set_energy(root, "0", 500_000)  # wrapped: 1 J to the top, then 0.5 J more
    samples = collect(collector)
    second = value(samples, "joules_total", "package-0")
    assert second == (MAX + 500_000) / 1e6
    assert second - first == pytest.approx(1.5, abs=1e-6)
    assert value(samples, "watts", "package-0") == pytest.approx(1.5, abs=1e-6)
    clock.t += 1.0
    set_energy(root, "0", 2_500_000)  # +2 J, the wrap still counted
    samples = collect(collector)
    assert value(samples, "joules_total", "package-0") == (MAX + 2_500_000) / 1e6
    assert value(samples, "watts", "package-0") == pytest.approx(2.0, abs=1e-6)
    clock.t += 1.0
    set_energy(root, "0", 100)  # a second wrap
    assert value(collect(collector), "joules_total", "package-0") == (2 * MAX + 100) / 1e6


# --- hosts without RAPL ---------------------------------------------------------------------

def test_no_powercap_tree_is_driver_absent(tmp_path):
    with pytest.raises(DriverAbsent, match=r"rapl: no powercap tree at .*nope"):
        RaplCollector(LABELS, tmp_path / "nope").collect()


def test_a_tree_without_rapl_zones_is_driver_absent(tmp_path):
    (tmp_path / "dtpm").mkdir()
    (tmp_path / "intel-rapl-mmio:0").mkdir()
    with pytest.raises(DriverAbsent, match="no intel-rapl zone"):
        RaplCollector(LABELS, tmp_path).collect()


def _deny(monkeypatch, denied: set[Path]) -> None:
    """energy_uj of these zones answers EACCES, as for non-root on Linux >= 5.10."""
    real = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if self in denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


def test_every_energy_uj_unreadable_is_driver_absent_saying_how_to_fix_it(tree, monkeypatch):
    _deny(monkeypatch, {p / "energy_uj" for p in tree.glob("intel-rapl:*")})
    collector = RaplCollector(LABELS, tree)
    with pytest.raises(DriverAbsent) as info:
        collector.collect()
    text = str(info.value)
    assert "Permission denied" in text and "energy_uj" in text
    assert "root only" in text and "CVE-2020-8694" in text
    monkeypatch.undo()  # access granted later: the next run reads
    assert value(collect(collector), "joules_total", "package-0") == 100.0


def test_some_zones_unreadable_are_counted_and_the_rest_reported(tree, monkeypatch, caplog):
    _deny(monkeypatch, {tree / "intel-rapl:0:1" / "energy_uj"})
    collector = RaplCollector(LABELS, tree)
    with caplog.at_level(logging.WARNING, logger="computewatch.collectors.rapl"):
        first = collect(collector)
        second = collect(collector)
    assert value(second, "joules_total", "package-0-dram") is None
    assert value(second, "joules_total", "package-0") == 100.0
    assert errors(first) == {"rapl_unreadable": 1}
    assert errors(second) == {"rapl_unreadable": 2}
    assert len(caplog.records) == 1  # once per episode
    (err,) = [s for s in second if s.name == "agent.collector_errors_total"]
    assert dict(err.labels) == {**LABELS, "collector": "rapl", "error_type": "rapl_unreadable"}


def test_garbage_in_energy_uj_is_a_bad_value(tree):
    (tree / "intel-rapl:1" / "energy_uj").write_text("not-a-number\n")
    set_energy(tree, "0", MAX + 1)  # beyond the counter's range
    samples = collect(RaplCollector(LABELS, tree))
    assert value(samples, "joules_total", "package-1") is None
    assert value(samples, "joules_total", "package-0") is None
    assert errors(samples) == {"rapl_bad_value": 2}


def test_a_zone_without_max_energy_range_is_skipped(tree):
    (tree / "intel-rapl:1:0" / "max_energy_range_uj").unlink()
    samples = collect(RaplCollector(LABELS, tree))
    assert value(samples, "joules_total", "package-1-dram") is None
    assert value(samples, "joules_total", "package-1") == 200.0


# --- the Metrics table in the module docstring ---------------------------------------------

def test_docstring_metrics_table_matches_the_catalogue(tree):
    doc = rapl_module.__doc__ or ""
    section = doc[doc.index("Metrics\n-------"):doc.index("Example output")]
    documented: set[str] = set()
    meas, in_fields = None, False
    for line in section.splitlines():
        if m := re.match(r"^- (\w+)$", line):
            meas, in_fields = m.group(1), False
        elif re.match(r"^  - (\w+):", line):
            in_fields = line.strip() == "- fields:"
        elif meas and in_fields and (m := re.match(r"^    - (\w+) \(", line)):
            documented.add(f"{meas}.{m.group(1)}")
    assert documented == set(EMITTED)
    for name in EMITTED:
        catalog.metric(name)
    assert [m.name for m in RaplCollector(LABELS, tree).describe()] == list(EMITTED)
