"""Findings as alerts: push them to Alertmanager's API v2, keep them alive, resolve them.

Each finding (one incident: a latency episode of one link, an underused site, a lost card)
becomes one alert whose labels say what and where, never when: ``alertname`` (pipeline and
rule, e.g. ``UnderuseSiteBelowMinimum``), ``source="computewatch-analyze"``, ``pipeline``,
``rule``, ``subject_type``, ``subject``, ``severity``, ``hub``/``cluster``/``site`` where
known, ``kind`` (the pipeline) and ``scope`` (the subject type) as the shipped rules
(alerts/rules) label theirs, and ``group``, the finding's root cause
(`computewatch.triage.group_ids`: ``cluster:helinger``, ``link:a|b``,
``chronic:underuse:site_below_minimum``), which alerts/alertmanager.yml groups analyze's
alerts by, so a day's findings arrive as one notification per cause. The same finding in the
next run has the same labels, so Alertmanager gives it the same fingerprint and notifies
once. The numbers (observed, threshold, window, completeness) and the ``incident`` id are
annotations.

A run pushes every current finding with ``endsAt = now + hold``: while runs keep finding it,
each push moves endsAt forward; if runs stop (the scheduler died), Alertmanager resolves it
by itself after ``hold``. (Alertmanager only ever moves a firing alert's endsAt later, so a
shorter hold takes effect once the longer one has passed.) A finding that has gone since the
previous run is resolved at once (``endsAt = now``). Knowing what the previous run pushed
needs no state file: the push asks Alertmanager (``GET /api/v2/alerts`` filtered on
``source``) which of our alerts are active, and resolves those the current run did not find,
but only for pipelines that ran and succeeded, so ``--only latency`` or a failed pipeline
never resolves another pipeline's alerts. (An Alertmanager restarted without its alerts has
nothing to resolve, and the next run pushes what holds again.) Several analysers pushing to
one Alertmanager must then use distinct ``source`` values (the ``source`` argument; the
command always uses the default).

"Current" means the finding's window ends within ``recent`` of the analysed period's end: an
episode that ended days ago is history for the report, not a page for the NOC.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import requests

from computewatch.finding_text import finding_message, rule_title
from computewatch.findings import Analysis, Finding, Period, Severity, incident_id
from computewatch.i18n import using_language
from computewatch.rule_definitions import definition_in_language
from computewatch.triage import group_ids

__all__ = ["SOURCE", "PushError", "PushResult", "alert_name", "finding_alert",
           "finding_labels", "push_analysis", "push_findings"]

SOURCE = "computewatch-analyze"
_PLACE = ("hub", "cluster", "site")


class PushError(RuntimeError):
    """Alertmanager could not be reached or refused the alerts; the message says which."""


@dataclass(frozen=True, slots=True)
class PushResult:
    url: str
    firing: int  # alerts pushed (new or refreshed)
    resolved: int  # alerts resolved because their finding is gone
    skipped: int = 0  # findings not pushed: below the severity floor or not current
    resolved_names: tuple[str, ...] = field(default=(), repr=False)


def alert_name(pipeline: str, rule: str) -> str:
    """``underuse`` + ``site_below_minimum`` -> ``UnderuseSiteBelowMinimum``."""
    words = re.split(r"[^A-Za-z0-9]+", f"{pipeline}_{rule}")
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def _utc(value: Any) -> datetime:
    t = pd.Timestamp(value)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime()


def finding_labels(finding: Finding, source: str = SOURCE,
                   group: str | None = None) -> dict[str, str]:
    """The alert's identity: the same finding gives the same labels in every run; ``group``
    (its root cause) is a label when given."""
    f = finding
    labels = {"alertname": alert_name(f.pipeline, f.rule), "source": source,
              "pipeline": str(f.pipeline), "rule": str(f.rule),
              "subject_type": str(f.subject_type), "subject": str(f.subject),
              "severity": Severity(int(f.severity)).name.lower(),
              # kind and scope as the shipped rules label theirs, so routes and inhibitions
              # in alerts/alertmanager.yml treat findings like rule alerts of the same kind
              "kind": str(f.pipeline), "scope": str(f.subject_type)}
    for key in _PLACE:
        value = getattr(f, key)
        if isinstance(value, str) and value:  # an empty label is no label in Alertmanager
            labels[key] = value
    if group:
        labels["group"] = group
    return labels


def _number(value: Any) -> str:
    return f"{float(value):.6g}"


def _zh_title(rule: str) -> str:
    """The rule's title in Chinese (the ``title_zh`` annotation)."""
    with using_language("zh-CN"):
        return rule_title(rule)


def finding_alert(finding: Finding, *, now: datetime, hold: timedelta, source: str = SOURCE,
                  generator_url: str | None = None, group: str | None = None,
                  sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One postable alert (API v2) for a finding that holds now. ``sources`` maps the
    policy's sources to their Chinese (`Policy.sources_in`), for ``description_zh``."""
    f = finding
    start, end = _utc(f.start), _utc(f.end)
    summary = f.message or (f"{f.subject_type} {f.subject}: {f.rule} "
                            f"({_number(f.observed)} vs {_number(f.threshold)} {f.unit})")
    annotations = {"summary": str(summary), "observed": _number(f.observed),
                   "threshold": _number(f.threshold), "unit": str(f.unit),
                   "completeness": _number(f.completeness), "incident": incident_id(f),
                   "window_start": start.isoformat(), "window_end": end.isoformat()}
    if f.definition:
        annotations["description"] = str(f.definition)
        with using_language("zh-CN"):  # the rule's definition as a Chinese target shows it
            annotations["description_zh"] = definition_in_language(str(f.definition), sources)
    # What a Chinese target of the bridge shows (computewatch.finding_text).
    annotations["title_zh"] = _zh_title(f.rule)
    annotations["summary_zh"] = finding_message(f, "zh-CN")
    alert = {"labels": finding_labels(f, source, group), "annotations": annotations,
             "startsAt": min(start, now).isoformat(), "endsAt": (now + hold).isoformat()}
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


def _current(findings: Iterable[Finding], min_severity: Severity,
             period_end: datetime | None, recent: timedelta,
             groups: dict[int, str]) -> tuple[list[tuple[Finding, str | None]], int]:
    """Findings to alert on with their groups, one per label set (the latest window wins);
    and how many not."""
    kept: dict[tuple, tuple[Finding, str | None]] = {}
    skipped = 0
    for i, f in enumerate(findings):
        if int(f.severity) < min_severity or (
                period_end is not None and _utc(f.end) < period_end - recent):
            skipped += 1
            continue
        group = groups.get(i)
        key = tuple(sorted(finding_labels(f, group=group).items()))
        if key in kept:  # several episodes of one finding: one alert, the latest window
            skipped += 1
            if _utc(kept[key][0].end) >= _utc(f.end):
                continue
        kept[key] = (f, group)
    return list(kept.values()), skipped


def _active(session: requests.Session, base: str, source: str, timeout: float) -> list[dict]:
    params = {"active": "true", "silenced": "true", "inhibited": "true",
              "unprocessed": "true", "filter": f'source="{source}"'}
    try:
        resp = session.get(f"{base}/api/v2/alerts", params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise PushError(f"{base}: cannot reach Alertmanager ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise PushError(f"{base}/api/v2/alerts: HTTP {resp.status_code}: {resp.text[:200]}")
    return resp.json()


def push_findings(alertmanager_url: str, findings: Iterable[Finding], *,
                  pipelines: Collection[str], hold: timedelta = timedelta(hours=1),
                  now: datetime | None = None, period_end: datetime | None = None,
                  recent: timedelta | None = None, min_severity: Severity = Severity.WARNING,
                  source: str = SOURCE, generator_url: str | None = None,
                  timeout: float = 10.0, session: requests.Session | None = None,
                  period: Period | None = None,
                  sources: Mapping[str, str] | None = None) -> PushResult:
    """Push the current findings and resolve ours that are gone; one POST per run.

    ``pipelines``: those that ran and succeeded; only their vanished alerts are resolved.
    ``period``, the analysed one, lets the root-cause groups tell acute from chronic
    findings (`computewatch.triage.group_ids`).
    """
    base = alertmanager_url.rstrip("/")
    now = now or datetime.now(UTC)
    recent = recent if recent is not None else max(hold, timedelta(hours=1))
    own = session is None
    session = session or requests.Session()
    try:
        findings = list(findings)
        groups = dict(enumerate(group_ids(findings, period)))
        current, skipped = _current(findings, min_severity, period_end, recent, groups)
        alerts = [finding_alert(f, now=now, hold=hold, source=source,
                                generator_url=generator_url, group=g, sources=sources)
                  for f, g in current]
        keys = {tuple(sorted(a["labels"].items())) for a in alerts}
        resolved = []
        for old in _active(session, base, source, timeout):
            labels = old.get("labels", {})
            if tuple(sorted(labels.items())) in keys or labels.get("pipeline") not in pipelines:
                continue
            gone = {"labels": labels, "annotations": old.get("annotations", {}),
                    "startsAt": old.get("startsAt") or now.isoformat(),
                    "endsAt": now.isoformat()}
            if old.get("generatorURL"):
                gone["generatorURL"] = old["generatorURL"]
            resolved.append(gone)
        batch = alerts + resolved
        if batch:
            try:
                resp = session.post(f"{base}/api/v2/alerts", json=batch, timeout=timeout)
            except requests.RequestException as exc:
                raise PushError(f"{base}: cannot reach Alertmanager "
                                f"({type(exc).__name__})") from None
            if resp.status_code != 200:
                raise PushError(f"{base}/api/v2/alerts refused {len(batch)} alerts: "
                                f"HTTP {resp.status_code}: {resp.text[:300]}")
        return PushResult(base, len(alerts), len(resolved), skipped,
                          tuple(r["labels"].get("alertname", "") for r in resolved))
    finally:
        if own:
            session.close()


def push_analysis(alertmanager_url: str, analysis: Analysis, *,
                  hold: timedelta = timedelta(hours=1), now: datetime | None = None,
                  recent: timedelta | None = None, min_severity: Severity = Severity.WARNING,
                  source: str = SOURCE, generator_url: str | None = None,
                  timeout: float = 10.0, session: requests.Session | None = None,
                  sources: Mapping[str, str] | None = None) -> PushResult:
    """`push_findings` for one run of the pipelines: its findings, current as of its period's
    end, resolving only the vanished alerts of the pipelines that succeeded (a failed
    pipeline's alerts stay as they are)."""
    return push_findings(alertmanager_url, analysis.findings, pipelines=analysis.succeeded,
                         hold=hold, now=now, period_end=analysis.period.end, recent=recent,
                         min_severity=min_severity, source=source,
                         generator_url=generator_url, timeout=timeout, session=session,
                         period=analysis.period, sources=sources)
