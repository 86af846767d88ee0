"""Logical queries: each panel's query is written once, as a tree, and rendered to PromQL.

A panel never holds a hand-written PromQL string. It holds an expression built from catalogue
metrics (`series`), recording-rule series (`recorded`) and a few operators; `promql()`
renders it. Writing the tree once buys three things: a metric or label the catalogue does not
declare is refused when the dashboards are built (not when NOC staff open them), thresholds
from the policy are rendered into the query from one place (`by_place`), and another
renderer (InfluxQL, for the InfluxDB flavour) has a single model to walk.

Windows are Grafana's: `RANGE` (``$__range``), `INTERVAL` (``$__interval``) and
`RATE_INTERVAL`; or a fixed duration such as ``"1h"``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from computewatch import catalog

__all__ = [
    "INTERVAL",
    "RANGE",
    "RANGE_SECONDS",
    "RATE_INTERVAL",
    "Agg",
    "Bin",
    "Expr",
    "Fn",
    "Macro",
    "Match",
    "Matcher",
    "Num",
    "OverTime",
    "QueryError",
    "Selector",
    "Var",
    "Window",
    "by_place",
    "constant_like",
    "re_any",
    "recorded",
    "series",
]


class QueryError(ValueError):
    """A logical query names a metric, label or operator that does not exist."""


@dataclass(frozen=True)
class Window:
    """A range-vector window: a Grafana macro or a fixed Prometheus duration."""

    text: str

    def __post_init__(self) -> None:
        if not (self.text.startswith("$") or re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", self.text)):
            raise QueryError(f"bad window {self.text!r}: a duration such as 5m or a $__ macro")


RANGE = Window("$__range")
INTERVAL = Window("$__interval")
RATE_INTERVAL = Window("$__rate_interval")


@dataclass(frozen=True)
class Var:
    """A dashboard variable: rendered as a regex match so 'All' and multi-value work."""

    name: str


@dataclass(frozen=True)
class Match:
    """A label matcher; ``op`` is PromQL's (=, !=, =~, !~)."""

    op: Literal["=", "!=", "=~", "!~"]
    value: str


def re_any(values: Sequence[str]) -> Match:
    """Match any of ``values`` exactly (regex-escaped alternation)."""
    return Match("=~", "|".join(re.escape(v) for v in values))


Matcher = str | Var | Match


def _matcher(label: str, m: Matcher) -> str:
    if isinstance(m, Var):
        return f'{label}=~"${m.name}"'
    if isinstance(m, Match):
        return f"{label}{m.op}{_quote(m.value)}"
    return f"{label}={_quote(m)}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Expr(ABC):
    """A node of a logical query. Subclasses render themselves with `promql()`."""

    @abstractmethod
    def promql(self) -> str:
        """The expression in PromQL."""

    @abstractmethod
    def where(self, **matchers: Matcher) -> Expr:
        """The same expression with ``matchers`` added to every series it reads."""

    @abstractmethod
    def selectors(self) -> list[Selector]:
        """Every series this expression reads, for checks against catalogue and rules."""

    # Arithmetic and set operators build Bin nodes; comparisons are methods (`lt`, `gt`)
    # because Python's `<` must stay a boolean.
    def __add__(self, other: Expr | float) -> Bin:
        return Bin("+", self, _num(other))

    def __sub__(self, other: Expr | float) -> Bin:
        return Bin("-", self, _num(other))

    def __mul__(self, other: Expr | float) -> Bin:
        return Bin("*", self, _num(other))

    def __truediv__(self, other: Expr | float) -> Bin:
        return Bin("/", self, _num(other))

    def __or__(self, other: Expr) -> Bin:
        return Bin("or", self, other)

    def __and__(self, other: Expr) -> Bin:
        return Bin("and", self, other)

    def lt(self, other: Expr | float, *, bool_: bool = False) -> Bin:
        return Bin("<", self, _num(other), bool_=bool_)

    def le(self, other: Expr | float, *, bool_: bool = False) -> Bin:
        return Bin("<=", self, _num(other), bool_=bool_)

    def gt(self, other: Expr | float, *, bool_: bool = False) -> Bin:
        return Bin(">", self, _num(other), bool_=bool_)

    def ge(self, other: Expr | float, *, bool_: bool = False) -> Bin:
        return Bin(">=", self, _num(other), bool_=bool_)

    def eq(self, other: Expr | float, *, bool_: bool = False) -> Bin:
        return Bin("==", self, _num(other), bool_=bool_)


def _num(x: Expr | float) -> Expr:
    return x if isinstance(x, Expr) else Num(float(x))


@dataclass(frozen=True)
class Num(Expr):
    value: float

    def promql(self) -> str:
        return f"{self.value:g}"

    def where(self, **matchers: Matcher) -> Expr:
        return self

    def selectors(self) -> list[Selector]:
        return []


@dataclass(frozen=True)
class Macro(Expr):
    """A Grafana macro that stands for a number, such as ``$__range_s``."""

    text: str

    def promql(self) -> str:
        return self.text

    def where(self, **matchers: Matcher) -> Expr:
        return self

    def selectors(self) -> list[Selector]:
        return []


RANGE_SECONDS = Macro("$__range_s")
"""The dashboard's time range in seconds, as a number (for totals such as accelerator-hours)."""


@dataclass(frozen=True)
class Selector(Expr):
    """Series of one name. ``catalogued`` names are checked against the catalogue's labels."""

    name: str
    matchers: tuple[tuple[str, Matcher], ...] = ()
    labels: frozenset[str] | None = None  # None: not known (a recording rule's series)

    def promql(self) -> str:
        if not self.matchers:
            return self.name
        return self.name + "{" + ", ".join(_matcher(k, m) for k, m in self.matchers) + "}"

    def where(self, **matchers: Matcher) -> Selector:
        if self.labels is not None:
            unknown = sorted(set(matchers) - self.labels)
            if unknown:
                raise QueryError(f"{self.name}: no label {', '.join(unknown)} "
                                 f"(labels: {', '.join(sorted(self.labels))})")
        return replace(self, matchers=self.matchers + tuple(matchers.items()))

    def selectors(self) -> list[Selector]:
        return [self]


def series(name: str, **matchers: Matcher) -> Selector:
    """A catalogue metric by ``measurement.field``, e.g. ``accelerator.utilization_ratio``."""
    try:
        m = catalog.metric(name)
    except catalog.UnknownMetricError as exc:
        raise QueryError(str(exc)) from None
    return Selector(m.prometheus, labels=frozenset(m.labels)).where(**matchers)


def recorded(name: str, **matchers: Matcher) -> Selector:
    """A recording rule's series, e.g. ``site:accelerator_utilization_ratio:avg``."""
    if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name) or ":" not in name:
        raise QueryError(f"{name!r} is not a recording-rule name (level:metric:operation)")
    return Selector(name).where(**matchers)


AggOp = Literal["sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile"]


@dataclass(frozen=True)
class Agg(Expr):
    """An aggregation across series: ``op by (labels) (expr)``; ``param`` for topk/quantile."""

    op: AggOp
    expr: Expr
    by: tuple[str, ...] = ()
    param: float | None = None

    def __post_init__(self) -> None:
        if (self.op in ("topk", "bottomk", "quantile")) != (self.param is not None):
            raise QueryError(f"{self.op}: a parameter is needed for topk, bottomk and quantile "
                             "and only for them")

    def promql(self) -> str:
        by = f" by ({', '.join(self.by)})" if self.by else ""
        param = f"{self.param:g}, " if self.param is not None else ""
        return f"{self.op}{by} ({param}{self.expr.promql()})"

    def where(self, **matchers: Matcher) -> Expr:
        return replace(self, expr=self.expr.where(**matchers))

    def selectors(self) -> list[Selector]:
        return self.expr.selectors()


OverTimeFn = Literal["avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
                     "count_over_time", "last_over_time", "quantile_over_time", "increase",
                     "rate"]


@dataclass(frozen=True)
class OverTime(Expr):
    """A function over a window of each series; a non-selector argument becomes a subquery.

    ``at_end`` evaluates the window at the end of the dashboard's range (``@ end()``), so a
    ranking (the worst links) is the same at every step of a time series.
    """

    fn: OverTimeFn
    expr: Expr
    window: Window
    param: float | None = None
    step: Window | None = None
    at_end: bool = False

    def __post_init__(self) -> None:
        if (self.fn == "quantile_over_time") != (self.param is not None):
            raise QueryError(f"{self.fn}: a parameter is needed for quantile_over_time only")
        if self.fn in ("increase", "rate") and not isinstance(self.expr, Selector):
            raise QueryError(f"{self.fn} needs a counter series, not an expression")

    def promql(self) -> str:
        if isinstance(self.expr, Selector):
            inner = f"{self.expr.promql()}[{self.window.text}]"
        else:
            step = self.step.text if self.step else ""
            inner = f"({self.expr.promql()})[{self.window.text}:{step}]"
        if self.at_end:
            inner += " @ end()"
        param = f"{self.param:g}, " if self.param is not None else ""
        return f"{self.fn}({param}{inner})"

    def where(self, **matchers: Matcher) -> Expr:
        return replace(self, expr=self.expr.where(**matchers))

    def selectors(self) -> list[Selector]:
        return self.expr.selectors()


@dataclass(frozen=True)
class Fn(Expr):
    """A PromQL function of one expression and literal arguments (clamp_max, abs, ...)."""

    name: Literal["clamp_max", "clamp_min", "abs", "round", "timestamp"]
    expr: Expr
    args: tuple[float, ...] = ()

    def promql(self) -> str:
        extra = "".join(f", {a:g}" for a in self.args)
        return f"{self.name}({self.expr.promql()}{extra})"

    def where(self, **matchers: Matcher) -> Expr:
        return replace(self, expr=self.expr.where(**matchers))

    def selectors(self) -> list[Selector]:
        return self.expr.selectors()


BinOp = Literal["+", "-", "*", "/", "<", "<=", ">", ">=", "==", "!=", "and", "or", "unless"]
_COMPARISONS = {"<", "<=", ">", ">=", "==", "!="}


@dataclass(frozen=True)
class Bin(Expr):
    """A binary operation; ``on``/``group_left`` match series with different label sets."""

    op: BinOp
    left: Expr
    right: Expr
    bool_: bool = False
    on: tuple[str, ...] | None = None
    group_left: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.bool_ and self.op not in _COMPARISONS:
            raise QueryError(f"bool applies to comparisons, not {self.op!r}")

    def promql(self) -> str:
        mods = " bool" if self.bool_ else ""
        if self.on is not None:
            mods += f" on ({', '.join(self.on)})"
        if self.group_left is not None:
            mods += f" group_left ({', '.join(self.group_left)})"
        return f"{_operand(self.left)} {self.op}{mods} {_operand(self.right)}"

    def matching(self, on: Sequence[str], group_left: Sequence[str] | None = None) -> Bin:
        return replace(self, on=tuple(on),
                       group_left=None if group_left is None else tuple(group_left))

    def where(self, **matchers: Matcher) -> Expr:
        return replace(self, left=self.left.where(**matchers),
                       right=self.right.where(**matchers))

    def selectors(self) -> list[Selector]:
        return self.left.selectors() + self.right.selectors()


def _operand(e: Expr) -> str:
    return f"({e.promql()})" if isinstance(e, Bin) else e.promql()


def constant_like(expr: Expr, value: float) -> Expr:
    """Series with ``expr``'s labels and the constant ``value``: a threshold line per subject."""
    return expr * 0 + value


PlaceMatcher = Matcher | tuple[str, ...]
"""A policy rule's matcher (`computewatch.thresholds.PlaceRule`): a tuple of values matches
any of them exactly (`re_any`)."""


def _place_matcher(m: PlaceMatcher) -> Matcher:
    return re_any(m) if isinstance(m, tuple) else m


def by_place(expr: Expr, rules: Sequence[tuple[Mapping[str, PlaceMatcher], float]]) -> Expr:
    """A policy value per subject: series with ``expr``'s labels, valued by the first rule
    whose matchers the subject meets, rules joined by ``or``. The rules are the core's
    (`computewatch.thresholds`: ``pue_target_rules``, ``site_minimum_rules``, ...).

    Rules are given most specific first (per-site overrides, then regions, then the default
    with no matchers). Each part is `constant_like`, which keeps every series it matches, and
    PromQL's ``or`` keeps the left side's series, so each subject gets the first rule that
    matches it, exactly as `Policy.pue_target_entry` and `Policy.utilization_minimum_entry`
    resolve it. Compare with the result (``expr.lt(by_place(expr, rules))``), never inside a
    part: a comparison drops the series that pass it, and ``or`` would then fall through to
    the next, wrong, rule.
    """
    if not rules:
        raise QueryError("by_place needs at least one rule")
    parts = [constant_like(expr.where(**{k: _place_matcher(v) for k, v in m.items()}), value)
             for m, value in rules]
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out
