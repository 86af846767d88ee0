"""Host CPU and memory power from RAPL, through the Linux powercap tree.

The kernel's ``intel_rapl`` driver (Intel, and AMD Zen since Linux 5.8/5.11) exposes each
RAPL domain as a powercap zone under ``/sys/class/powercap``: ``intel-rapl:<N>`` for a package
(or ``psys`` for the platform), ``intel-rapl:<N>:<M>`` for its sub-zones (``core``, ``uncore``,
``dram``). Each zone has ``name``, ``energy_uj`` (a counter in microjoules) and
``max_energy_range_uj`` (where that counter wraps to 0). The one seam is the tree's root,
passed in (the ``ProcessCollector`` pattern): tests build a fake tree in a temporary folder.

Decisions:

- Zones are ``intel-rapl:N`` and ``intel-rapl:N:M`` only. ``intel-rapl-mmio:N`` (the MMIO
  interface of recent Intel CPUs) reads the same package counter again and is skipped, as is
  any other powercap control type (``dtpm``).
- RAPL has no measurement of its own in the catalogue: a zone is a meter of
  ``facility_power`` with scope ``host`` (not ``it``: the site's IT meters already include
  the host, and the PUE derivation sums only the facility and it scopes),
  ``meter=<node>-rapl-<zone>`` and
  ``source=rapl://<node>``. ``<zone>`` is the zone's name, prefixed with its package's name
  for a sub-zone: ``package-0``, ``package-0-dram``, ``psys``. Beware when summing: ``core``
  and ``uncore`` are parts of their package, and ``psys`` contains the packages.
- ``joules_total`` is ``energy_uj`` / 1e6, unwrapped: whenever the counter is lower than at
  the previous run it has wrapped (RAPL counters only go up; they restart only at boot, and the
  agent restarts with the host), and ``max_energy_range_uj`` is added to every later reading,
  as turbostat and the kernel's own users do. A 32-bit package counter wraps every few minutes
  to an hour depending on load: a run interval longer than one wrap period loses energy.
- ``watts`` is the increase of ``joules_total`` over the monotonic time between two runs, so
  the first run gives energy only.
- No powercap tree, or no RAPL zone in it, raises `DriverAbsent` (a virtual machine, a
  non-x86 host). So does a tree whose every ``energy_uj`` is unreadable: since Linux 5.10
  (CVE-2020-8694, "Platypus") it is readable by root only. The message says so and how to
  grant access. Where only some zones are unreadable, or a read fails later, the zone is
  skipped for the run and counted as ``rapl_unreadable``; a value that is not a number, or
  beyond the counter's range, is counted as ``rapl_bad_value``. Each is logged once per
  episode.

Metrics
-------

- facility_power
  - tags:
    - hub, cluster, site (placement, from the agent's labels; ``node`` is in meter and source)
    - meter (``<node>-rapl-<zone>``, e.g. ``bj-ai-n0001-rapl-package-0-dram``)
    - scope (``host``)
    - source (``rapl://<node>``)
  - fields:
    - watts (float, watts): mean power since the previous run; from the second run on
    - joules_total (float, joules, counter): energy since the agent started reading the
      zone plus the counter's value then (``energy_uj`` unwrapped); every zone
- agent
  - tags: node, site, cluster, hub, collector (``rapl``), error_type (``rapl_unreadable`` |
    ``rapl_bad_value``)
  - fields:
    - collector_errors_total (float, count, counter): zone reads that failed since the agent
      started

Example output (line protocol)::

    facility_power,hub=jjj,meter=bj-ai-n0001-rapl-package-0,scope=host,site=bj-ai,source=rapl://bj-ai-n0001 joules_total=183224.718,watts=212.4 1772416800000000000

Raw values for a bug report: ``grep . /sys/class/powercap/intel-rapl*/{name,energy_uj,max_energy_range_uj}``
(as root).
"""  # noqa: E501 (the example line is one line of line protocol)

from __future__ import annotations

import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from computewatch import catalog
from computewatch.collectors._base import DriverAbsent, placement_labels
from computewatch.samples import Sample

__all__ = ["EMITTED", "RaplCollector"]

log = logging.getLogger(__name__)

EMITTED: tuple[str, ...] = (
    "facility_power.watts",
    "facility_power.joules_total",
    "agent.collector_errors_total",
)
"""Every metric this collector can emit (``measurement.field``)."""

_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_GRANT = ("since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694): run the agent "
          "as root, or give its user read access at boot (e.g. a systemd-tmpfiles or udev rule "
          "that runs chmod o+r on /sys/class/powercap/intel-rapl:*/energy_uj)")


@dataclass
class _Zone:
    """One RAPL zone and the state that unwraps its counter."""

    path: Path
    label: str
    max_uj: int
    last_uj: int | None = None
    wraps: int = 0
    last_j: float | None = None
    last_t: float | None = None
    labels: tuple[tuple[str, str], ...] = ()
    episode: set[str] = field(default_factory=set)


class _Unreadable(Exception):
    def __init__(self, error_type: str, message: str, *, permission: bool = False) -> None:
        super().__init__(message)
        self.error_type, self.permission = error_type, permission


class RaplCollector:
    """Reads every RAPL zone of the host from a powercap tree."""

    name = "rapl"

    def __init__(self, labels: Mapping[str, str], root: Path = Path("/sys/class/powercap"), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._place = placement_labels(labels)
        self._node = self._place.get("node") or socket.gethostname()
        self._site = {k: v for k, v in self._place.items() if k != "node"}
        self._root = Path(root)
        self._clock = clock
        self._zones: list[_Zone] | None = None
        self._errors: Counter[str] = Counter()

    # --- the collector protocol -----------------------------------------------------------

    def describe(self) -> list[catalog.Metric]:
        """The catalogued metrics this collector may emit."""
        return [catalog.metric(name) for name in EMITTED]

    def collect(self) -> list[Sample]:
        """One reading of every zone; DriverAbsent when the host has no readable RAPL."""
        if self._zones is None:
            self._zones = self._discover()
        now, t = datetime.now(UTC), self._clock()
        readings: list[tuple[_Zone, int]] = []
        failures: list[tuple[_Zone, _Unreadable]] = []
        for zone in self._zones:
            try:
                readings.append((zone, _read_energy(zone)))
            except _Unreadable as exc:
                failures.append((zone, exc))
        if not readings and failures and all(f.permission for _, f in failures):
            raise DriverAbsent(f"rapl: {failures[0][1]}; {_GRANT}")
        out: list[Sample] = []
        for zone, exc in failures:
            self._errors[exc.error_type] += 1
            if exc.error_type not in zone.episode:
                zone.episode.add(exc.error_type)
                log.warning("rapl://%s zone %s: %s", self._node, zone.label, exc)
        for zone, uj in readings:
            if zone.episode:
                log.info("rapl://%s zone %s: read again", self._node, zone.label)
                zone.episode.clear()
            out += self._samples(zone, uj, t, now)
        for error_type, n in sorted(self._errors.items()):
            out.append(Sample.of("agent.collector_errors_total", float(n),
                                 {**self._place, "collector": self.name,
                                  "error_type": error_type}, now))
        return out

    # --- zones ----------------------------------------------------------------------------

    def _discover(self) -> list[_Zone]:
        """The tree's RAPL zones, packages first; DriverAbsent when there is none."""
        if not self._root.is_dir():
            raise DriverAbsent(f"rapl: no powercap tree at {self._root} (no RAPL on this host, "
                               "or the intel_rapl_common module is not loaded)")
        found: list[tuple[tuple[int, int], Path]] = []
        for path in self._root.iterdir():
            m = _ZONE.match(path.name)
            if m:
                found.append(((int(m.group(1)), int(m.group(2) or -1)), path))
        if not found:
            raise DriverAbsent(f"rapl: no intel-rapl zone under {self._root} (no RAPL on this "
                               "host, or the intel_rapl_common module is not loaded)")
        names: dict[int, str] = {}
        zones: list[_Zone] = []
        for (pkg, sub), path in sorted(found):
            name = _read_text(path / "name") or path.name.removeprefix("intel-rapl:")
            if sub < 0:
                names[pkg] = name
                label = name
            else:
                label = f"{names.get(pkg, f'package-{pkg}')}-{name}"
            if any(z.label == label for z in zones):
                label = f"{label}-{path.name.removeprefix('intel-rapl:').replace(':', '-')}"
            try:
                max_uj = int(_read_text(path / "max_energy_range_uj", strict=True))
            except (OSError, ValueError) as exc:
                log.warning("rapl: zone %s skipped: max_energy_range_uj: %s", path, exc)
                continue
            zone = _Zone(path, label, max_uj)
            lab = {**self._site, "meter": f"{self._node}-rapl-{label}", "scope": "host",
                   "source": f"rapl://{self._node}"}
            zone.labels = tuple(sorted(lab.items()))
            zones.append(zone)
        if not zones:
            raise DriverAbsent(f"rapl: no usable intel-rapl zone under {self._root}")
        return zones

    def _samples(self, zone: _Zone, uj: int, t: float, now: datetime) -> list[Sample]:
        if zone.last_uj is not None and uj < zone.last_uj:
            zone.wraps += 1
        zone.last_uj = uj
        joules = (uj + zone.wraps * zone.max_uj) / 1e6
        out = [Sample("facility_power", "joules_total", joules, zone.labels, now)]
        if zone.last_j is not None and zone.last_t is not None and t > zone.last_t:
            out.append(Sample("facility_power", "watts", (joules - zone.last_j) / (t - zone.last_t),
                              zone.labels, now))
        zone.last_j, zone.last_t = joules, t
        return out


def _read_text(path: Path, *, strict: bool = False) -> str:
    """A sysfs attribute's value; "" for a missing one unless ``strict``."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        if strict:
            raise
        return ""


def _read_energy(zone: _Zone) -> int:
    """The zone's ``energy_uj``; raises _Unreadable saying why it cannot be had."""
    path = zone.path / "energy_uj"
    try:
        text = path.read_text(encoding="ascii").strip()
    except PermissionError as exc:
        raise _Unreadable("rapl_unreadable", f"cannot read {path}: {exc.strerror}",
                          permission=True) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unreadable("rapl_unreadable", f"cannot read {path}: {exc}") from None
    try:
        uj = int(text)
    except ValueError:
        raise _Unreadable("rapl_bad_value", f"{path} holds {text!r}, not a count") from None
    if not 0 <= uj <= zone.max_uj:
        raise _Unreadable("rapl_bad_value",
                          f"{path} holds {uj}, outside 0..{zone.max_uj} (max_energy_range_uj)")
    return uj
