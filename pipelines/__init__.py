"""Analytics pipelines: each module's ``run(store, period, policy, topology, ...)`` reads
windowed aggregates from a Store and returns core `computewatch.findings.Finding`s.

Pipelines import only from the core (store, catalogue, topology, policy, findings, and the
definitions of utilization, PUE and tier compliance), never from collectors/ or another
layer. Aggregation is pushed down into the store's windowed queries, so memory grows with
subjects x windows, not with raw samples; within one run the period's utilization is read
once per device and hour and shared by the pipelines that ask for it (`_shared.SharedScan`).
`PIPELINES` is the registry by name, and `run_pipelines` the one runner that the command
line, the alert push and the report use.
"""

from computewatch.pipelines._runner import PIPELINES, Pipeline, run_pipelines

__all__ = ["PIPELINES", "Pipeline", "run_pipelines"]
