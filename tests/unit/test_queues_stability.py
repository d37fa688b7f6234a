"""No oscillation: plans applied round after round (placed replicas start running, victims
leave at once) on random queue scenarios settle. With no job arriving or leaving, a job is
evicted at most once, the last rounds evict nothing, and every eviction is paid for by a
job of another queue within its nominal or a higher-priority job of the same queue."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from gpualloc.model import Plan, Queue, QueueQuota, RunningPod, Snapshot
from gpualloc.solver import plan
from tests.unit.builders import H100, gang, inference, node
from tests.unit.test_queues import in_queue

pytestmark = pytest.mark.unit
ROUNDS = 8


def _contended(seed: int) -> tuple[Snapshot, list[list[str]]]:
    """3-4 nodes of 8 GPUs, 2-3 queues of 0-16 nominal GPUs, 6-9 small jobs, mostly
    preemptible, arriving in three waves (job keys per wave)."""
    r = random.Random(seed)
    nodes = [node(f"n{i}") for i in range(r.randint(3, 4))]
    names = ["a", "b", "c"][: r.randint(2, 3)]
    queues = [Queue(n, ("ns",), quota=(QueueQuota(H100, r.choice([0, 4, 8, 16])),)) for n in names]
    jobs = []
    for j in range(r.randint(6, 9)):
        preemptible = r.random() < 0.8
        if r.random() < 0.6:
            workers, gpus = r.choice([(1, 2), (1, 4), (1, 8), (2, 4)])
            job = gang(f"j{j}", workers, gpus, r.choice([0, 5]), j, preemptible=preemptible)
        else:
            job = inference(
                f"j{j}", r.randint(1, 3), r.choice([1, 2]), 0, j, preemptible=preemptible
            )
        jobs.append(in_queue(r.choice(names), job))
    waves: list[list[str]] = [[], [], []]
    for job in jobs:
        waves[r.randrange(3)].append(job.key)
    return Snapshot(tuple(nodes), (), tuple(jobs), tuple(queues)), waves


def _apply(s: Snapshot, p: Plan) -> Snapshot:
    """Placed replicas run where the plan put them; evicted jobs' pods are gone."""
    evicted = {e.job for e in p.evictions}
    gpus = {j.key: j.gpus_per_replica for j in s.jobs}
    pods = [
        RunningPod(f"{q.job}-{q.replica}", q.node, gpus[q.job], job=q.job, replica=q.replica)
        for q in p.placements
        if q.job not in evicted
    ]
    return replace(s, pods=tuple(pods))


@pytest.mark.parametrize("seed", range(40))
def test_rounds_settle(seed: int) -> None:
    base, waves = _contended(seed)
    arrived: set[str] = set()
    s = replace(base, jobs=())
    previous: Plan | None = None
    evicted: list[str] = []
    per_round: list[int] = []
    for round_ in range(ROUNDS):
        if round_ < len(waves):
            arrived |= set(waves[round_])
            pods = s.pods
            s = replace(base, jobs=tuple(j for j in base.jobs if j.key in arrived), pods=pods)
        p = plan(s, previous=previous)
        jobs = {j.key: j for j in s.jobs}
        for e in p.evictions:
            assert jobs[e.job].preemptible, e
            assert "reclaimed by queue" in e.reason or "preempted (priority" in e.reason
        evicted += [e.job for e in p.evictions]
        per_round.append(len(p.evictions))
        s, previous = _apply(s, p), p
    assert len(evicted) == len(set(evicted)), f"evicted twice: {evicted} ({per_round})"
    assert per_round[-3:] == [0, 0, 0], per_round
