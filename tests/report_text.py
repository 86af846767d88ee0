"""What counts as an untranslated word in a rendered report, for the zh-CN and English checks.

A zh-CN report may still hold Latin script where it is not a word of English prose: ids
(sites, hubs, clusters, namespaces, rules, CSV columns, options, file paths), units and
standards' abbreviations, numbers, hashes and the product's name. Everything else in Latin
script is an English word the catalogue missed. An English report holds no Chinese except
what the policy file quotes (its sources name Chinese documents: 发改高技〔2021〕1742号).
"""

from __future__ import annotations

import re

from computewatch.topology import Topology

__all__ = ["NOT_WORDS", "chinese_outside", "english_words"]

NOT_WORDS = {
    # units, standards, protocols and products: the same in every language
    "PUE", "UTC", "kWh", "MWh", "MJ", "ms", "km", "h", "s", "x", "ISO", "IEC", "EN", "GB",
    "RM2", "SHA", "IT", "UPS", "PDU", "MIB", "UPS-MIB", "RTT", "p95", "API", "Kubernetes", "Pod",
    "PodResources", "kubelet", "computewatch", "CSV", "csv", "json", "E_DC", "E_IT", "GPU",
    "NPU", "DC", "true", "pass", "fail", "incomplete", "no_data", "over_limit",
    # the command a reader runs for every finding: `computewatch analyze --format csv|json`
    "analyze", "format", "definition",
    # statistics in the rules' definitions: percentiles, the interquartile range, a z-score
    "p50", "IQR", "z",
    # the shipped policy's Chinese sources name the agencies by their English abbreviations
    "NDRC", "CAC", "MIIT", "NEA",
}
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_.:/][A-Za-z0-9]+)*")
_HEX = re.compile(r"[0-9a-f]{8,}")
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")


def english_words(text: str, topology: Topology, extra_ids: set[str] = frozenset(), *,
                  wrapped: bool = False) -> list[str]:
    """The Latin-script tokens of ``text`` that are English words: not an id of the topology
    or in ``extra_ids`` (namespaces, the store's path), not an identifier (``a_b``, a path,
    an option), not a hash, not in `NOT_WORDS`. ``wrapped`` (text from a printed page, where a
    narrow cell may break an id at a hyphen: ``zjk-`` / ``b-facility``) also allows the
    pieces of an id on either side of one of its hyphens."""
    ids = {s.id for s in topology.sites} | {h.id for h in topology.hubs} | {
        c.id for c in topology.clusters} | set(extra_ids)
    for site in topology.sites:  # a Chinese site name may end in a letter: 芜湖智算中心C
        if site.name_zh:
            text = text.replace(site.name_zh, " ")
    if wrapped:
        ids |= {piece for i in list(ids) for k in range(1, i.count("-") + 1)
                for piece in i.rsplit("-", k) + i.split("-", k)}
    known = NOT_WORDS | ids
    found = []
    for token in _TOKEN.findall(text):
        if token in known or _HEX.fullmatch(token) or any(c in token for c in "_/.:"):
            continue
        if all(part in known or part.isdigit() for part in token.split("-")):
            continue
        found.append(token)
    return found


def chinese_outside(text: str, allowed: str) -> list[str]:
    """The runs of Chinese in ``text`` that ``allowed`` (e.g. the policy's sources) lacks."""
    return [run for run in _CJK.findall(text) if run not in allowed]
