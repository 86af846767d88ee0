"""Benchmarks: each prints its figures and a ratio against a baseline measured in the same run.

Run them all with ``make bench`` (``python -m bench``), or one with
``python -m bench demo|ingest|query|lineprotocol``.
"""
