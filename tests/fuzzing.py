"""Hypothesis settings and strategies shared by the property-based and fuzz tests.

Every property test runs a fixed, derandomized example budget, so `make test` takes the same
time on every run and a failure reproduces on the next (Hypothesis prints the failing example;
no example database is kept). ``CW_FUZZ_EXAMPLES=N`` sets the budget of every fuzz test for a
longer search by hand, e.g. ``CW_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest -q
tests/test_fuzz.py``; ``CW_ROUND_TRIP_EXAMPLES`` does the same for the round trips.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["FUZZ_EXAMPLES", "ROUND_TRIP_EXAMPLES", "fuzz", "label_text", "round_trip"]

FUZZ_EXAMPLES = int(os.environ.get("CW_FUZZ_EXAMPLES", "100"))
"""Examples per fuzz test (pure functions: parsers and config loaders)."""

ROUND_TRIP_EXAMPLES = int(os.environ.get("CW_ROUND_TRIP_EXAMPLES", "20"))
"""Examples per round trip through a real server (each example is one write and one read)."""


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


fuzz = _settings(FUZZ_EXAMPLES)
round_trip = _settings(ROUND_TRIP_EXAMPLES)

# What devices and operators put in labels: any Unicode, weighted towards the characters line
# protocol and the exposition format treat specially, and now and then a lone surrogate (a
# JSON "\\ud800" decodes to one). Characters are drawn one by one and joined: `st.text`
# draws from its alphabet with weights of its own and seldom picks the special ones.
_SPECIAL = st.sampled_from(list('\\ ,="#_\n\t\r\x00\x7f\x1b\u2028\ufeff'))
_CHAR = st.one_of(st.characters(), st.characters(), _SPECIAL)
_TEXT = st.lists(_CHAR, max_size=24).map("".join)
_SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_WITH_SURROGATE = st.tuples(_TEXT, _SURROGATE, _TEXT).map("".join)
label_text = st.one_of(_TEXT, _TEXT, _TEXT, _WITH_SURROGATE)
"""A label value as a device or an operator might write it."""
