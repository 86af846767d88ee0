"""The editable policy: utilization minimums, PUE targets and latency budgets, each sourced.

Regulators need to know which threshold a report applied and where it comes from, so every
value in `data/policy.yaml` is a `{value, source}` pair and lookups can return the pair
(`*_entry` methods) as well as the bare number. A value with no official basis says so in
its source instead of pretending to one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from computewatch.config import (
    ConfigError,
    PathError,
    load_yaml_model,
    load_yaml_model_from_text,
    suggest_known,
)
from computewatch.topology import Tier, Topology

__all__ = [
    "LEVELS",
    "ConfigError",
    "LatencyPolicy",
    "LevelMinimum",
    "Policy",
    "PuePolicy",
    "Sourced",
    "UtilizationDefinition",
    "UtilizationPolicy",
    "load_policy",
    "policy_sha256",
]

V = TypeVar("V")

Level = Literal["accelerator", "node", "site", "cluster", "hub", "province"]
LEVELS: tuple[Level, ...] = ("accelerator", "node", "site", "cluster", "hub", "province")
Region = Literal["east", "west"]
UtilizationDefinition = Literal["time_weighted", "busy_fraction"]
RttSemantics = Literal["round_trip", "one_way"]

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
# Every number is finite (the loader refuses NaN and infinities); the upper bounds keep a typo
# from reaching the pipelines as an overflow: no PUE reaches 10, no latency budget a minute,
# no sustained shortfall more than a year, no route 100 times the great-circle distance.
PueValue = Annotated[float, Field(ge=1.0, le=10.0)]  # PUE = total / IT energy, never below 1
Seconds = Annotated[float, Field(gt=0.0, le=60.0)]
Hours = Annotated[float, Field(gt=0.0, le=24 * 366)]
Inflation = Annotated[float, Field(ge=1.0, le=100.0)]
Km = Annotated[float, Field(gt=0.0, le=20_000.0)]  # no two places on Earth are further apart


def _check_source(text: str) -> str:
    if not text.strip():
        raise ValueError("must say where the value comes from")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Model, Generic[V]):
    """A policy value and where it comes from: a regulation, a report or 'computewatch default'."""

    value: V
    source: Annotated[str, AfterValidator(_check_source)]
    source_zh: str = ""
    """The source in Chinese, for zh-CN reports (the shipped policy states one for every
    value); empty: the reports quote ``source``."""

    def source_in(self, language: str) -> str:
        """The source as a report in ``language`` quotes it."""
        return self.source_zh if language == "zh-CN" and self.source_zh else self.source


_DEFAULT_DEFINITION = Sourced[UtilizationDefinition](
    value="time_weighted",
    source="computewatch default: the time-weighted mean utilization, when the policy does "
           "not say which definition the minimum applies to")


class LevelMinimum(_Model):
    """Minimum utilization at one level; `subjects` are per-id overrides (site ids at 'site').

    ``definition`` says what the minimum is compared with at this level (one definition per
    level, so every subject of a level is judged alike): ``time_weighted``, the mean of the
    utilization samples, or ``busy_fraction``, the share of accelerator-windows busier than
    ``busy_level`` (the accelerator counterpart of a rack occupancy rate, 上架率). Both are
    defined in `computewatch.utilization`.
    """

    default: Sourced[Ratio]
    regions: dict[Region, Sourced[Ratio]] = {}
    subjects: dict[str, Sourced[Ratio]] = {}
    definition: Sourced[UtilizationDefinition] = _DEFAULT_DEFINITION


class Minimums(_Model):
    accelerator: LevelMinimum
    node: LevelMinimum
    site: LevelMinimum
    cluster: LevelMinimum
    hub: LevelMinimum
    province: LevelMinimum


class UtilizationPolicy(_Model):
    """busy_level: utilization above which a sample counts as busy (time share is what's
    compared with the minimums). sustained_hours: how long a shortfall must last to count."""

    busy_level: Sourced[Ratio]
    sustained_hours: Sourced[Hours]
    minimums: Minimums


class PuePolicy(_Model):
    """A site exceeds its target when its energy-based PUE is above it. ``grades`` are the
    GB 40879-2021 energy-efficiency grades (grade -> the highest PUE of that grade), stated
    beside the targets; grade 3 is the standard's limit value."""

    default_target: Sourced[PueValue]
    targets: dict[Region, Sourced[PueValue]] = {}
    sites: dict[str, Sourced[PueValue]] = {}
    min_completeness: Sourced[Ratio]
    grades: dict[Annotated[int, Field(ge=1)], Sourced[PueValue]] = {}

    @model_validator(mode="after")
    def _grades_in_order(self) -> PuePolicy:
        """Grade 1 is the best: each grade's ceiling at or above the one before."""
        previous: tuple[int, float] | None = None
        for grade in sorted(self.grades):
            value = self.grades[grade].value
            if previous is not None and value < previous[1]:
                raise PathError(("grades", grade, "value"),
                                f"must be >= grade {previous[0]}'s {previous[1]}", value)
            previous = (grade, value)
        return self


class TierBudgets(_Model):
    metro: Sourced[Seconds]
    regional: Sourced[Seconds]
    national: Sourced[Seconds]


class LatencyPolicy(_Model):
    """Tier budgets are read as `rtt_semantics` says; `budget_rtt_s` always returns an RTT.

    ``metro_max_km`` and ``regional_max_km`` are the tier rule's distances
    (`computewatch.topology.Topology.link`); left out, the topology's defaults apply
    (`METRO_MAX_KM`, `REGIONAL_MAX_KM`, the values the shipped policy states)."""

    rtt_semantics: Sourced[RttSemantics]
    tiers: TierBudgets
    route_inflation_limit: Sourced[Inflation]
    metro_max_km: Sourced[Km] | None = None
    regional_max_km: Sourced[Km] | None = None

    @model_validator(mode="after")
    def _budgets_grow_with_tier(self) -> LatencyPolicy:
        """A wider circle cannot have a tighter budget; a swap is the likely typo."""
        previous: Tier | None = None
        for tier in Tier:
            if previous is not None:
                low = getattr(self.tiers, previous.value).value
                here = getattr(self.tiers, tier.value).value
                if here < low:
                    raise PathError(
                        ("tiers", tier.value, "value"),
                        f"must be >= the {previous.value} budget ({low})",
                        here,
                    )
            previous = tier
        return self


class Policy(_Model):
    """The whole policy file."""

    version: str = ""
    """The file's own version (e.g. ``2026.12``), which a filed report states beside the
    file's hash (`policy_sha256`); empty when the file names none."""
    utilization: UtilizationPolicy
    pue: PuePolicy
    latency: LatencyPolicy

    @model_validator(mode="after")
    def _ids_exist(self, info: ValidationInfo) -> Policy:
        """With a topology in the validation context, per-id overrides must name real ids."""
        topology = (info.context or {}).get("topology")
        if not isinstance(topology, Topology):
            return self
        known = {
            "site": sorted(s.id for s in topology.sites),
            "cluster": sorted(c.id for c in topology.clusters),
            "hub": sorted(h.id for h in topology.hubs),
        }
        for level, ids in known.items():
            for subject in getattr(self.utilization.minimums, level).subjects:
                if subject not in ids:
                    raise PathError(
                        ("utilization", "minimums", level, "subjects", subject),
                        f"unknown {level} {subject!r} ({suggest_known(subject, ids)})",
                        subject,
                    )
        for site_id in self.pue.sites:
            if site_id not in known["site"]:
                raise PathError(
                    ("pue", "sites", site_id),
                    f"unknown site {site_id!r} ({suggest_known(site_id, known['site'])})",
                    site_id,
                )
        return self

    def utilization_minimum_entry(
        self, level: Level, region: Region | None = None, subject: str | None = None
    ) -> Sourced[float]:
        """The applicable minimum with its source: subject override, else region, else default."""
        if level not in LEVELS:
            raise KeyError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
        rule: LevelMinimum = getattr(self.utilization.minimums, level)
        if subject is not None and subject in rule.subjects:
            return rule.subjects[subject]
        if region is not None and region in rule.regions:
            return rule.regions[region]
        return rule.default

    def utilization_definition_entry(self, level: Level) -> Sourced[UtilizationDefinition]:
        """Which utilization definition the minimum of ``level`` applies to, with its source."""
        if level not in LEVELS:
            raise KeyError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
        rule: LevelMinimum = getattr(self.utilization.minimums, level)
        return rule.definition

    def utilization_minimum(
        self, level: Level, region: Region | None = None, subject: str | None = None
    ) -> float:
        return self.utilization_minimum_entry(level, region, subject).value

    def pue_target_entry(self, region: Region | None, site_id: str | None = None) -> Sourced[float]:
        """The applicable PUE target with its source: site override, else region, else default."""
        if site_id is not None and site_id in self.pue.sites:
            return self.pue.sites[site_id]
        if region is not None and region in self.pue.targets:
            return self.pue.targets[region]
        return self.pue.default_target

    def pue_target(self, region: Region | None, site_id: str | None = None) -> float:
        return self.pue_target_entry(region, site_id).value

    def pue_grade(self, pue: float) -> int | None:
        """The best GB 40879-2021 grade whose ceiling ``pue`` meets; None above every grade
        (over the limit value) or when ``pue`` is not a number or no grades are set."""
        if pue != pue:
            return None
        for grade in sorted(self.pue.grades):
            if pue <= self.pue.grades[grade].value + 1e-9:
                return grade
        return None

    def tiered(self, topology: Topology) -> Topology:
        """``topology`` with this policy's tier distances (unchanged where the policy states
        none)."""
        metro, regional = topology.tier_distances_km
        lat = self.latency
        metro = lat.metro_max_km.value if lat.metro_max_km is not None else metro
        regional = lat.regional_max_km.value if lat.regional_max_km is not None else regional
        if (metro, regional) == topology.tier_distances_km:
            return topology
        return topology.with_tier_distances(metro, regional)

    def sources_in(self, language: str) -> dict[str, str]:
        """Every source the policy states, as written (stripped), to the source in
        ``language`` (`Sourced.source_in`): to read a source quoted in English text, such as
        a finding's stored definition, in the language of a report."""
        found: dict[str, str] = {}

        def walk(node: object) -> None:
            if isinstance(node, Sourced):
                found[node.source.strip()] = node.source_in(language).strip()
            if isinstance(node, BaseModel):
                for name in type(node).model_fields:
                    walk(getattr(node, name))
            elif isinstance(node, dict):
                for v in node.values():
                    walk(v)
            elif isinstance(node, list | tuple):
                for v in node:
                    walk(v)

        walk(self)
        return found

    def budget_rtt_s(self, tier: Tier | str) -> float:
        """The tier's budget as a round-trip time, so callers always compare measured RTT."""
        budget: float = getattr(self.latency.tiers, Tier(tier).value).value
        return budget * 2 if self.latency.rtt_semantics.value == "one_way" else budget


def policy_sha256(path: Path | None = None) -> str:
    """The SHA-256 of a policy file's bytes (None: the shipped policy), hex: with the
    version, what identifies the thresholds a report applied, so a reader can check the
    file it was given is the one the report ran with."""
    import hashlib

    data = (Path(path).read_bytes() if path is not None else
            (resources.files("computewatch") / "data" / "policy.yaml").read_bytes())
    return hashlib.sha256(data).hexdigest()


def load_policy(path: Path | None = None, *, topology: Topology | None = None) -> Policy:
    """Load and validate a policy file; None means the shipped default policy.

    Given a topology, per-site/cluster/hub overrides are checked against its ids.
    """
    context: dict[str, Any] = {"topology": topology} if topology is not None else {}
    if path is not None:
        return load_yaml_model(Path(path), Policy, context=context)
    resource = resources.files("computewatch") / "data" / "policy.yaml"
    return load_yaml_model_from_text(
        resource.read_text(encoding="utf-8"), Policy, source_name=str(resource), context=context
    )
