"""Discovery: every meter of a Redfish service, and where its readings are (a plan).

The meters are the chassis; under ``PowerEquipment``, the power distribution units (rack and
floor PDUs, transfer switches, power shelves: `EQUIPMENT_KINDS`), each read from its own
``Metrics`` (PowerDistributionMetrics), else its mains circuits, else its power supplies;
and under ``ThermalEquipment`` the cooling units (CDUs, ...: `THERMAL_KINDS`), read from their
EnvironmentMetrics.
With the default selection a meter that another read meter already counts is left out: a
chassis contained in (``ContainedBy``) or powered by (``PoweredBy``) another, a chassis that
is the same device as a PDU that reports, a PDU fed by another PDU of the service (a mains
circuit's ``SourceCircuit`` or ``PowerOutlet``), and chassis that duplicate each other (the
same readings, or one ComputerSystem and the same watts). When nothing is left the failure
says why, per chassis, in the schema's terms. The README's "How a chassis reading is found"
states the order of the sources.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from computewatch.collectors.redfish._client import CONNECTION_CODES, SERVICE_ROOT, Client, Fail
from computewatch.collectors.redfish._config import RedfishEndpoint
from computewatch.collectors.redfish._documents import (
    EQUIPMENT_KINDS,
    THERMAL_KINDS,
    ChassisPlan,
    Reading,
    Term,
    absent,
    dig,
    distribution_readings,
    environment_readings,
    is_sensor_collection,
    last_segment,
    legacy_psu_readings,
    links,
    number,
    odata_link,
    power_control_watts,
    psu_metrics_input,
    sensor_reading,
)

__all__ = ["discover", "reading_value"]

log = logging.getLogger(__package__)

_SOURCES = ("EnvironmentMetrics", "Sensors", "Power", "PowerSubsystem")
Readings = tuple[Reading | None, Reading | None, str]  # watts, joules, why (schema terms)


def reading_value(client: Client, reading: Reading, cache: dict[str, dict[str, Any]]) -> float:
    """The reading now: the sum of its terms (each GET once per run, through ``cache``)."""
    total = 0.0
    for term in reading.terms:
        doc = cache.get(term.uri)
        if doc is None:
            doc = cache[term.uri] = client.get(term.uri)
        raw = dig(doc, term.path)
        value = number(raw)
        if value is None:
            where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in term.path)
            raise Fail("missing_field", f"{reading.what}: {where} is {raw!r}, not a reading",
                       client.absolute(term.uri))
        if term.efficiency is not None:
            percent = term.efficiency.percent(doc, value)
            if not percent:
                raise Fail("missing_field", f"{reading.what}: no efficiency to estimate the "
                           "input from", client.absolute(term.uri))
            value = value * 100.0 / percent
        total += value * term.scale
    return total


def discover(client: Client, ep: RedfishEndpoint, cache: dict[str, dict[str, Any]],
             failures: list[Fail]) -> list[ChassisPlan]:
    """Every meter to read and where its readings are; per-meter failures are appended."""
    return _Discovery(client, ep, cache, failures).run()


class _Discovery:
    def __init__(self, client: Client, ep: RedfishEndpoint, cache: dict[str, dict[str, Any]],
                 failures: list[Fail]) -> None:
        self.client, self.ep, self.cache, self.failures = client, ep, cache, failures

    def get(self, uri: str) -> dict[str, Any]:
        if uri not in self.cache:
            self.cache[uri] = self.client.get(uri)
        return self.cache[uri]

    def run(self) -> list[ChassisPlan]:
        client, ep = self.client, self.ep
        root = client.get(SERVICE_ROOT)
        wanted = set(ep.chassis)
        equipment: list[ChassisPlan] = []
        if not wanted or any("/" in w for w in wanted):
            for prop, kinds in (("PowerEquipment", EQUIPMENT_KINDS),
                                ("ThermalEquipment", THERMAL_KINDS)):
                found = odata_link(root, prop)
                if found is not None:
                    equipment += self._equipment(found, kinds, wanted)
        chassis_uri = odata_link(root, "Chassis")
        if chassis_uri is None and not equipment:
            raise Fail("missing_field", "the service root has no Chassis link",
                       client.absolute(SERVICE_ROOT))
        by_id = {last_segment(u): u for u in client.members(chassis_uri)} if chassis_uri else {}
        covered = {u for e in equipment if e.watts or e.joules for u in e.covers}
        plans: list[ChassisPlan] = []
        planned: list[ChassisPlan] = []  # every chassis looked at, for the containment chains
        for cid in (ep.chassis or list(by_id)):
            if "/" in cid and any(e.chassis == cid for e in equipment):
                continue
            uri = by_id.get(cid)
            if uri is None:
                known = [*by_id, *(e.chassis for e in equipment)]
                self.failures.append(Fail("missing_field", f"no chassis {cid!r} (the service "
                                          f"has: {', '.join(known) or 'none'})",
                                          client.absolute(chassis_uri or SERVICE_ROOT), cid))
                continue
            if not ep.chassis and uri in covered:
                log.debug("redfish: %s: chassis %s is read as its power equipment", ep.source,
                          cid)
                continue
            try:
                plan = self._chassis(cid, uri)
            except Fail as exc:
                if exc.code in CONNECTION_CODES:
                    raise
                exc.chassis = cid
                self.failures.append(exc)
                continue
            planned.append(plan)
            if plan.watts is None and plan.joules is None:
                if ep.chassis:
                    self.failures.append(Fail("unsupported", "the chassis reports no power or "
                                              f"energy: {'; '.join(plan.notes)}",
                                              client.absolute(uri), cid))
                continue
            plans.append(plan)
        plans = [e for e in equipment if e.watts or e.joules] + plans
        if ep.chassis:
            plans = [p for p in plans if p.chassis in wanted]
        else:
            plans = self._counted_once(plans, [*planned, *equipment])
            if not plans and not self.failures:
                self.failures.append(Fail("unsupported", self._why_nothing(
                    planned, equipment, by_id), client.absolute(chassis_uri or SERVICE_ROOT)))
        for plan in plans:
            if ep.meter is None:
                plan.meter = f"{ep.source}/{plan.chassis}"
            else:
                # Decided by the config alone, so a chassis failing discovery renames nothing.
                plan.meter = ep.meter if len(ep.chassis) == 1 else f"{ep.meter}/{plan.chassis}"
            watts = plan.watts
            if watts is not None and any(t.efficiency is not None for t in watts.terms):
                log.info("redfish: %s: %s: watts is an estimate: %s (the service reports no "
                         "input power)", ep.source, plan.chassis, watts.what)
        return plans

    # --- one chassis --------------------------------------------------------------------

    def _chassis(self, cid: str, uri: str) -> ChassisPlan:
        """Where the chassis' watts and energy are; a source that fails is passed over."""
        doc = self.get(uri)
        plan = ChassisPlan(cid, uri)
        container = odata_link(doc, "Links", "ContainedBy")
        plan.contained_by = last_segment(container) if container else None
        plan.inside = {*links(doc, "Links", "ContainedBy"), *links(doc, "Links", "PoweredBy"),
                       *links(doc, "Links", "PowerDistribution")}
        plan.systems = frozenset(links(doc, "Links", "ComputerSystems"))
        readers: dict[str, Callable[[str], Readings]] = {
            "EnvironmentMetrics": self._environment,
            "Sensors": self._sensors,
            "Power": self._legacy_power,
            "PowerSubsystem": self._power_subsystem,
        }
        passed_over: list[Fail] = []
        for prop in _SOURCES:
            if plan.watts is not None and plan.joules is not None:
                break
            found = odata_link(doc, prop)
            if found is None:
                continue
            try:
                watts, joules, why = readers[prop](found)
            except Fail as exc:
                if exc.code in CONNECTION_CODES:
                    raise
                passed_over.append(exc)
                continue
            plan.watts, plan.joules = plan.watts or watts, plan.joules or joules
            if why:
                plan.notes.append(why)
        if not any(odata_link(doc, prop) for prop in _SOURCES):
            plan.notes.append(f"links none of {', '.join(_SOURCES)}")
        if passed_over:
            if plan.watts is None and plan.joules is None:
                raise passed_over[0]
            for exc in passed_over:
                log.debug("redfish: %s: chassis %s: passed over: %s [%s]", self.ep.source, cid,
                          exc.message, exc.url)
        return plan

    def _environment(self, uri: str) -> Readings:
        watts, joules = environment_readings(uri, self.get(uri))
        why = "" if watts or joules else ("EnvironmentMetrics has no PowerWatts, EnergyJoules "
                                          "or EnergykWh reading")
        return watts, joules, why

    def _sensors(self, uri: str, name: str = "Sensors") -> Readings:
        """The best whole-chassis power and energy sensors of a SensorCollection."""
        best: dict[str, tuple[int, Reading]] = {}
        for member in self.client.members(uri, self.get(uri)):
            try:
                doc = self.get(member)
            except Fail as exc:
                if exc.code in CONNECTION_CODES:
                    raise
                log.debug("redfish: %s: sensor %s skipped: %s", self.ep.source, member,
                          exc.message)
                continue  # one broken sensor must not hide the others
            found = sensor_reading(member, doc)
            if found is not None:
                kind, rank, reading = found
                if kind not in best or rank < best[kind][0]:
                    best[kind] = (rank, reading)
        watts = best["watts"][1] if "watts" in best else None
        joules = best["joules"][1] if "joules" in best else None
        why = "" if watts or joules else (f"{name} has no Power or Energy sensor of the whole "
                                          "chassis (PhysicalContext Chassis, ElectricalContext "
                                          "Total or none)")
        return watts, joules, why

    def _legacy_power(self, uri: str) -> Readings:
        doc = self.get(uri)
        control = power_control_watts(uri, doc)
        if control is not None:
            return control, None, ""
        psus, why = legacy_psu_readings(uri, doc)
        return psus, None, "" if psus else f"Power has no PowerControl PowerConsumedWatts; {why}"

    def _power_subsystem(self, uri: str) -> Readings:
        """The PSUs of a PowerSubsystem. A PowerSubsystem link that leads to a
        SensorCollection is read as the chassis' sensors."""
        doc = self.get(uri)
        if is_sensor_collection(doc):
            return self._sensors(uri, "PowerSubsystem (a SensorCollection)")
        supplies = odata_link(doc, "PowerSupplies")
        if supplies is None:
            return None, None, "PowerSubsystem has no PowerSupplies"
        return self._supplies(supplies, "PowerSubsystem")

    def _supplies(self, uri: str, where: str) -> Readings:
        """Sums over the present PSUs of a PowerSupplies collection; watts (energy) None where
        any PSU has no input power or estimate (no EnergykWh)."""
        watts: list[Term] = []
        energy: list[Term] = []
        why_watts = ""
        complete_energy = True
        estimated = False
        for member in self.client.members(uri, self.get(uri)):
            psu = self.get(member)
            if absent(psu):
                continue
            metrics_uri = odata_link(psu, "Metrics")
            if metrics_uri is None:
                why_watts = why_watts or f"PowerSupply {last_segment(member)} has no Metrics"
                complete_energy = False
                continue
            metrics = self.get(metrics_uri)
            term, estimate, why = psu_metrics_input(psu, metrics_uri, metrics)
            if term is None:
                why_watts = why_watts or f"PowerSupply {last_segment(member)}: {why}"
            else:
                watts.append(term)
                estimated |= estimate
            if number(dig(metrics, ("EnergykWh", "Reading"))) is not None:
                energy.append(Term(metrics_uri, ("EnergykWh", "Reading"), 3.6e6))
            else:
                complete_energy = False
        what = ("PowerSupplies OutputPowerWatts / EfficiencyRatings (an estimate of the input)"
                if estimated else "PowerSupplies InputPowerWatts")
        w = Reading(what, tuple(watts)) if watts and not why_watts else None
        j = Reading("PowerSupplies EnergykWh", tuple(energy)) if energy and complete_energy \
            else None
        why = f"{where}: {why_watts or 'no present PowerSupplies'}" if w is None else ""
        return w, j, why

    # --- power equipment ------------------------------------------------------------------

    def _equipment(self, uri: str, kinds: tuple[str, ...], wanted: set[str],
                   ) -> list[ChassisPlan]:
        doc = self.get(uri)
        out: list[ChassisPlan] = []
        for kind in kinds:
            collection = odata_link(doc, kind)
            if collection is None:
                continue
            for member in self.client.members(collection, self.get(collection)):
                eid = f"{kind}/{last_segment(member)}"
                if wanted and eid not in wanted:
                    continue
                try:
                    out.append(self._one_equipment(eid, member))
                except Fail as exc:
                    if exc.code in CONNECTION_CODES:
                        raise
                    exc.chassis = eid
                    self.failures.append(exc)
        return out

    def _one_equipment(self, eid: str, uri: str) -> ChassisPlan:
        """A power distribution unit: its Metrics, else its mains' PowerWatts and EnergykWh,
        else its power supplies' input. A cooling unit: its EnvironmentMetrics."""
        doc = self.get(uri)
        plan = ChassisPlan(eid, uri)
        plan.covers = tuple(links(doc, "Links", "Chassis"))
        if eid.split("/", 1)[0] in THERMAL_KINDS:
            env = odata_link(doc, "EnvironmentMetrics")
            if env is not None:
                plan.watts, plan.joules, why = self._environment(env)
                plan.notes.append(why)
            else:
                plan.notes.append("no EnvironmentMetrics")
            return plan
        mains = odata_link(doc, "Mains")
        mains_docs = ([(m, self.get(m)) for m in self.client.members(mains, self.get(mains))]
                      if mains else [])
        for _, circuit in mains_docs:  # what feeds this unit, if it is in the service
            plan.inside |= {*links(circuit, "Links", "SourceCircuit"),
                            *links(circuit, "Links", "PowerOutlet")}
        metrics = odata_link(doc, "Metrics")
        if metrics is not None:
            plan.watts, plan.joules = distribution_readings(metrics, self.get(metrics))
        if plan.watts is None and mains_docs:
            terms = [Term(m, ("PowerWatts", "Reading")) for m, c in mains_docs
                     if number(dig(c, ("PowerWatts", "Reading"))) is not None]
            if len(terms) == len(mains_docs):
                plan.watts = Reading("Mains PowerWatts", tuple(terms))
        if plan.joules is None and mains_docs:
            terms = [Term(m, ("EnergykWh", "Reading"), 3.6e6) for m, c in mains_docs
                     if number(dig(c, ("EnergykWh", "Reading"))) is not None]
            if len(terms) == len(mains_docs):
                plan.joules = Reading("Mains EnergykWh", tuple(terms))
        supplies = odata_link(doc, "PowerSupplies")
        if plan.watts is None and supplies is not None:
            watts, joules, why = self._supplies(supplies, "PowerSupplies")
            plan.watts, plan.joules = watts, plan.joules or joules
            if why:
                plan.notes.append(why)
        if plan.watts is None and plan.joules is None:
            plan.notes.append("no Metrics PowerWatts or EnergykWh, no Mains PowerWatts")
            log.debug("redfish: %s: %s reports no power: %s", self.ep.source, eid,
                      "; ".join(plan.notes))
        return plan

    # --- counted once -----------------------------------------------------------------------

    def _counted_once(self, plans: list[ChassisPlan], every: list[ChassisPlan],
                      ) -> list[ChassisPlan]:
        """Drop what another read meter already counts (the module docstring's rules)."""
        read = {p.uri for p in plans}
        by_uri = {p.uri: p for p in every}

        def owner(link: str) -> str | None:  # the meter a link points into (a PSU, a circuit)
            best = None
            for u in by_uri:
                if link == u or link.startswith((u + "/", u + "#")):
                    best = u if best is None or len(u) > len(best) else best
            return best

        def counted_elsewhere(plan: ChassisPlan) -> str | None:
            seen, todo = {plan.uri}, [plan]
            while todo:
                for link in todo.pop().inside:
                    up = owner(link)
                    if up is None or up in seen:
                        continue
                    if up in read:
                        return last_segment(up) if "/Chassis/" in up else by_uri[up].chassis
                    seen.add(up)
                    todo.append(by_uri[up])
            return None

        kept: list[ChassisPlan] = []
        for plan in plans:
            container = counted_elsewhere(plan)
            if container is not None:
                log.debug("redfish: %s: %s is counted in %s", self.ep.source, plan.chassis,
                          container)
                continue
            twin = next((k for k in kept if self._same(k, plan)), None)
            if twin is not None:
                log.info("redfish: %s: chassis %s duplicates %s (%s): counted once",
                         self.ep.source, plan.chassis, twin.chassis, twin.watts.what
                         if twin.watts else "the same readings")
                continue
            kept.append(plan)
        return kept

    def _same(self, a: ChassisPlan, b: ChassisPlan) -> bool:
        """Two chassis that report one thing: the same resources, or one ComputerSystem and
        the same watts now."""
        if (a.watts and b.watts and a.watts.terms == b.watts.terms) or \
                (a.joules and b.joules and a.joules.terms == b.joules.terms):
            return True
        if not (a.systems & b.systems) or a.watts is None or b.watts is None:
            return False
        try:
            wa = reading_value(self.client, a.watts, self.cache)
            wb = reading_value(self.client, b.watts, self.cache)
        except Fail:
            return False
        return abs(wa - wb) <= 1e-9 * max(abs(wa), abs(wb), 1.0)

    def _why_nothing(self, planned: list[ChassisPlan], equipment: list[ChassisPlan],
                     by_id: Mapping[str, str]) -> str:
        """No meter at all: why, per chassis and unit, in the schema's terms."""
        groups: dict[str, list[str]] = {}
        for plan in [*equipment, *planned]:
            why = "; ".join(plan.notes) or "no power or energy reading"
            if plan.contained_by and not plan.notes[1:] and "links none" in why:
                why = f"ContainedBy {plan.contained_by}, no reading of its own"
            groups.setdefault(why, []).append(plan.chassis)
        each = " | ".join(f"{', '.join(ids)}: {why}" for why, ids in groups.items())
        return (f"no power or energy reading in the service (chassis "
                f"{', '.join(by_id) or 'none'}): {each or 'no chassis'}")
