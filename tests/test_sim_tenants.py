"""Simulated pods live as long as a job (hours to days), not one name per hour."""

from __future__ import annotations

from computewatch.sim.tenants import JOB_HOURS, job_lifetime, job_pod, job_start


def test_a_pod_keeps_its_name_for_its_jobs_lifetime_then_a_new_one_starts():
    ns, node = "llm-pretrain", "site-a-node-0007"
    hours, phase = job_lifetime(ns, node)
    assert hours in JOB_HOURS and 0 <= phase < hours
    base = 490_000  # an epoch hour in 2025
    start = job_start(base, hours, phase)
    assert start <= base < start + hours
    names = [job_pod(ns, node, h) for h in range(start, start + hours)]
    assert len(set(names)) == 1  # one pod for the whole job
    assert names[0] == f"{ns}-{start:x}-0007"  # named after the hour the job started
    assert job_pod(ns, node, start + hours) != names[0]  # the next job, a new pod
    assert job_pod(ns, node, start - 1) != names[0]


def test_a_day_of_one_node_has_few_pods_per_namespace():
    # A day meets at most ceil(24 / lifetime) + 1 jobs (5 at 6 h, 2 at 24 h+), not 24.
    base = 490_000
    for ns in ("vision", "speech", "recsys"):
        pods = {job_pod(ns, "n-0001", h) for h in range(base, base + 24)}
        hours, _ = job_lifetime(ns, "n-0001")
        assert len(pods) <= -(-24 // hours) + 1
