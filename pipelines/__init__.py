"""Analytics pipelines: each module takes a Store, a period and a policy and returns findings.

Pipelines import only from ``computewatch`` (store, catalogue, topology, policy), never from
collectors/. Aggregation is pushed down into the store's windowed queries.
"""

__all__: list[str] = []
