"""/healthz verdicts: a wedged leader, a stuck lease loop or a dead loop task is unhealthy (the
kubelet restarts the replica); an idle follower is healthy. And a former leader stops
exporting the gauges only the leader computes."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from gpualloc.controller.liveness import Liveness, round_deadline
from gpualloc.metrics import exported as metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def liveness(clock: Clock, lease_done: list[float]) -> Liveness:
    return Liveness(lambda: 300.0, lambda: lease_done[0], lease_deadline=120.0, clock=clock)


def test_a_follower_is_healthy_while_its_lease_loop_runs() -> None:
    clock, lease_done = Clock(), [100.0]
    live = liveness(clock, lease_done)
    for _ in range(100):  # 1,000 s without a planning round: a follower plans nothing
        clock.now += 10
        lease_done[0] = clock.now
        assert live.problems() == []
    assert live.response("/healthz")[0] == 200


def test_a_stuck_lease_loop_is_unhealthy() -> None:
    clock, lease_done = Clock(), [100.0]
    live = liveness(clock, lease_done)
    clock.now += 119
    assert live.problems() == []
    clock.now += 2
    (problem,) = live.problems()
    assert "lease" in problem
    assert live.response("/healthz")[0] == 500


def test_a_leader_without_a_round_within_the_bound_is_unhealthy() -> None:
    clock, lease_done = Clock(), [100.0]
    live = liveness(clock, lease_done)
    clock.now += 1000
    lease_done[0] = clock.now
    live.leadership(True)  # the bound runs from becoming leader, not from the last round
    clock.now += 290
    lease_done[0] = clock.now
    live.round_completed()
    clock.now += 299
    lease_done[0] = clock.now
    assert live.problems() == []
    clock.now += 2
    lease_done[0] = clock.now
    (problem,) = live.problems()
    assert "planning round" in problem
    live.leadership(False)  # lost the lease: not its job any more
    assert live.problems() == []


def test_a_dead_loop_task_is_unhealthy() -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    async def scenario() -> list[str]:
        clock, lease_done = Clock(), [100.0]
        live = liveness(clock, lease_done)
        task = asyncio.create_task(crash())
        live.watch_task("planning", task)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return live.problems()

    (problem,) = asyncio.run(scenario())
    assert "planning" in problem and "boom" in problem


def test_the_round_bound_defaults_to_three_resyncs_or_five_minutes() -> None:
    resync = [60.0]
    bound = round_deadline(lambda: resync[0], None)
    assert bound() == 300
    resync[0] = 200  # the policy changed resyncSeconds
    assert bound() == 600
    assert round_deadline(lambda: resync[0], 42.0)() == 42


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_former_leader_stops_exporting_leader_only_gauges() -> None:
    metrics.leadership_changed(True)
    metrics.JOB_GPUS.labels("ns", "llama", "LLMTrainingJob", "0").set(16)
    metrics.ALLOCATED_GPUS.labels("H100").set(16)
    metrics.SOLVER_GAP.set(0.5)
    metrics.UNHEALTHY_GPUS.labels("gpu-1").set(2)
    assert sample("gpualloc_leader") == 1
    assert sample("gpualloc_job_allocated_gpus", namespace="ns", job_name="llama",
                  kind="LLMTrainingJob", priority="0") == 16  # fmt: skip
    assert sample("gpualloc_solver_gap_ratio") == 0.5

    metrics.leadership_changed(False)
    exported = {m.name for m in REGISTRY.collect()}
    for gauge in metrics.LEADER_ONLY:
        (family,) = gauge.describe()
        assert family.name not in exported, family.name
    assert sample("gpualloc_leader") == 0
    assert "gpualloc_rounds" in exported  # this replica's own counters stay

    metrics.leadership_changed(True)  # a later term starts empty, not with the old numbers
    assert sample("gpualloc_job_allocated_gpus", namespace="ns", job_name="llama",
                  kind="LLMTrainingJob", priority="0") is None  # fmt: skip
    assert sample("gpualloc_allocated_gpus", product="H100") is None
    assert sample("gpualloc_solver_gap_ratio") == 0
    metrics.leadership_changed(False)
