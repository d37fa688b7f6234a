"""The time-driven simulator's event loop and baselines on literal traces, JCTs by hand.

Times are seconds from 0; the debounce is 1 s, so a round runs 1 s after the change that
triggers it (a burst: 1 s after its last change, at most 10 s after its first).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gpualloc.sim.philly import TraceJob
from gpualloc.sim.time_baselines import FifoBestFit, FreeMap, KaiLike, KueueLike, quotas_of
from gpualloc.sim.time_metrics import jain, percentile, run_metrics, time_average, water_fill
from gpualloc.sim.time_oracle import OracleSrpt
from gpualloc.sim.timeline import Action, SimJob, SimNode, Simulation, job_of

pytestmark = pytest.mark.unit


def job(
    row: int,
    at: float,
    gpus: int,
    seconds: float,
    vc: str = "a",
    priority: int = 0,
) -> SimJob:
    return job_of(TraceJob(row, at, seconds, gpus, vc), gpus * seconds / 3600, priority)


def nodes(count: int, gpus: int = 8) -> list[SimNode]:
    return [SimNode(f"n{i}", gpus) for i in range(count)]


def jct(jobs: Sequence[SimJob]) -> list[float | None]:
    return [None if j.finished is None else j.finished - j.arrival for j in jobs]


def queued(jobs: Sequence[SimJob]) -> list[float | None]:
    return [None if j.first_start is None else j.first_start - j.arrival for j in jobs]


class Recorder:
    """A scheduler that places nothing and notes when it was called."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[float] = []

    def round(self, sim: Simulation) -> list[Action]:
        self.calls.append(sim.now)
        return []

    def wake_at(self) -> float | None:
        return None


# -- the event loop -------------------------------------------------------------------------
def test_fifo_jobs_wait_for_the_gang_ahead_and_run_for_their_duration() -> None:
    # A (8 GPUs, 100 s) at 0 starts at 1 and ends at 101; B (4, 50 s) at 10 and C (4, 30 s)
    # at 20 wait for it and start together at 102 (the round after A leaves)
    jobs = [job(0, 0, 8, 100), job(1, 10, 4, 50), job(2, 20, 4, 30)]
    sim = Simulation(nodes(1), jobs, start=0)
    stats = sim.run(FifoBestFit())
    assert jct(jobs) == [101, 142, 112]
    assert queued(jobs) == [1, 92, 82]
    assert stats.half_placed_gangs == 0 and sim.allocated == 0 and sim.active == {}
    m = run_metrics(jobs, sim.series, sim.capacity, 0, 200, {"a": 1.0})
    # GPUs held: 8 over [1, 101), 8 over [102, 132), 4 over [132, 152) of 200 s x 8 GPUs
    assert m["utilisation"] == pytest.approx((800 + 240 + 80) / 1600, abs=1e-4)
    assert m["jct_hours"]["mean"] == pytest.approx((101 + 142 + 112) / 3 / 3600, abs=1e-4)
    assert m["makespan_hours"] == pytest.approx(152 / 3600, abs=0.01)


def test_a_gang_that_does_not_fit_is_passed_over_by_a_later_small_job() -> None:
    # 2 nodes; X (4 GPUs, 1000 s) holds half of one; G (16 = 2 x 8) must wait for it,
    # S (4 GPUs) arriving after G goes ahead on X's node
    jobs = [job(0, 0, 4, 1000), job(1, 5, 16, 100), job(2, 6, 4, 10)]
    sim = Simulation(nodes(2), jobs, start=0)
    sim.run(FifoBestFit())
    assert queued(jobs) == [1, 997, 1]  # G starts in the round after X leaves at 1001
    assert jct(jobs) == [1001, 1097, 11]


def test_a_burst_is_planned_once_quiet_for_the_debounce_but_within_ten_of_it() -> None:
    burst = [job(i, i * 0.5, 1, 10) for i in range(40)]  # one arrival every 0.5 s for 20 s
    sim = Simulation(nodes(1), burst, start=0)
    recorder = Recorder()
    sim.run(recorder)
    assert recorder.calls == [10.0, 20.5]  # capped at 10 s after 0; then 1 s after 19.5


def test_a_preempted_job_restarts_from_its_last_checkpoint() -> None:
    # kai-like: L (8 GPUs, priority 0, 3600 s) runs from 1; H (8 GPUs, priority 100, 100 s)
    # arrives at 1000 and preempts it at 1001; L's pods take the 30 s grace, H runs
    # 1032-1132; L has done 1000 s, checkpointed at 600 (every 600 s): 400 s x 8 GPUs lost;
    # it restarts at 1133 with 3000 s left
    low, high = job(0, 0, 8, 3600, priority=0), job(1, 1000, 8, 100, priority=100)
    sim = Simulation(nodes(1), [low, high], checkpoint_seconds=600, start=0)
    stats = sim.run(KaiLike({"vc-a": 8}))
    assert jct([low, high]) == [4133, 132]
    assert low.preemptions == 1 and low.lost_gpu_seconds == 400 * 8
    assert low.runs == [(1, 1001), (1133, 4133)]
    assert stats.evictions == 1 and stats.half_placed_gangs == 0


def test_without_checkpoints_a_preempted_job_starts_over() -> None:
    low, high = job(0, 0, 8, 3600, priority=0), job(1, 1000, 8, 100, priority=100)
    sim = Simulation(nodes(1), [low, high], checkpoint_seconds=float("inf"), start=0)
    sim.run(KaiLike({"vc-a": 8}))
    assert low.lost_gpu_seconds == 1000 * 8 and jct([low]) == [1133 + 3600]


# -- baselines ------------------------------------------------------------------------------
def test_best_fit_takes_the_fullest_node_that_fits_and_undoes_a_gang_that_does_not() -> None:
    free = FreeMap([SimNode("a", 8, free=3), SimNode("b", 8, free=5), SimNode("c", 8)])
    assert free.best_fit(2) == 0 and free.best_fit(4) == 1 and free.best_fit(6) == 2
    assert free.place_gang(2, 8) is None and free.free == [3, 5, 8]
    assert free.place_gang(2, 4) == [1, 2] and free.free == [3, 1, 4]


def test_quotas_follow_the_weights_and_sum_to_the_capacity() -> None:
    assert quotas_of({"a": 0.5, "b": 0.3, "c": 0.2}, 10) == {"a": 5, "b": 3, "c": 2}
    assert sum(quotas_of({"a": 1, "b": 1, "c": 1}, 16).values()) == 16


def test_kueue_lends_idle_quota_and_reclaims_it_for_its_owner() -> None:
    # 2 nodes, quota 8 GPUs each for vc a and b; b's second job borrows a's quota at 0 and is
    # evicted when a's job arrives at 100 (within a's own quota); a's job runs once b's pods
    # are gone (101 + 30 s grace, round at 132); the victim waits for a node to free up
    b1, b2, a1 = job(0, 0, 8, 10_000, "b"), job(1, 0, 8, 10_000, "b"), job(2, 100, 8, 50, "a")
    sim = Simulation(nodes(2), [b1, b2, a1], checkpoint_seconds=0, start=0)
    sim.run(KueueLike({"vc-a": 8, "vc-b": 8}))
    assert queued([b1, b2, a1]) == [1, 1, 32]
    assert b2.preemptions == 1 and b1.preemptions == 0
    assert b2.runs[0] == (1, 101) and b2.runs[1][0] == 183  # after a1 left at 182
    assert sim.stats.half_placed_gangs == 0


def test_kueue_admits_by_quota_so_a_gang_can_be_half_placed_then_requeued() -> None:
    # 3 nodes; X (5 GPUs) on n0, Y (5 GPUs) on n1; G (2 x 6) fits the quota (10 + 12 <= 24)
    # but only one node has 6 free: one worker binds, the other waits; after the 5 min
    # waitForPodsReady timeout G is evicted and requeued with a backoff of 60 s, doubling;
    # admitted at 11, 373, 795, 1337, 2119, 3381 (each time evicted 301 s later) and at 5603,
    # though X and Y left at 5001
    x, y, g = job(0, 0, 5, 5000), job(1, 0, 5, 5000), job(2, 10, 12, 100)
    sim = Simulation(nodes(3), [x, y, g], start=0)
    kueue = KueueLike({"vc-a": 24})
    sim.run(kueue)
    assert g.half_placed and sim.stats.half_placed_gangs == 1
    assert kueue.requeues == {g.key: 6} and g.preemptions == 0  # it never ran: nothing lost
    assert g.first_start == 5603
    fifo = [job(0, 0, 5, 5000), job(1, 0, 5, 5000), job(2, 10, 12, 100)]
    other = Simulation(nodes(3), fifo, start=0)
    other.run(FifoBestFit())
    assert other.stats.half_placed_gangs == 0 and fifo[2].first_start == 5002


def test_kai_serves_the_queue_furthest_below_its_share_first() -> None:
    # one 8-GPU node busy until 1001; a (deserved 6) holds nothing, b (deserved 2) holds the
    # running job: a's younger job goes before b's older one
    running, b_old, a_new = job(0, 0, 8, 1000, "b"), job(1, 5, 8, 10, "b"), job(2, 9, 8, 10, "a")
    sim = Simulation(nodes(1), [running, b_old, a_new], start=0)
    sim.run(KaiLike({"vc-a": 6, "vc-b": 2}))
    assert queued([a_new]) == [1001 + 1 - 9] and b_old.first_start == 1013
    fifo = [job(0, 0, 8, 1000, "b"), job(1, 5, 8, 10, "b"), job(2, 9, 8, 10, "a")]
    Simulation(nodes(1), fifo, start=0).run(FifoBestFit())
    assert fifo[1].first_start == 1002  # FIFO: the older first


def test_kai_never_preempts_equal_priority() -> None:
    jobs = [job(0, 0, 8, 1000), job(1, 5, 8, 10)]
    sim = Simulation(nodes(1), jobs, start=0)
    sim.run(KaiLike({"vc-a": 8}))
    assert [j.preemptions for j in jobs] == [0, 0] and queued(jobs) == [1, 997]


# -- metrics --------------------------------------------------------------------------------
def test_metric_helpers_by_hand() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 95) == 5
    assert jain([1, 1, 1]) == 1.0 and jain([1, 0, 0, 0]) == pytest.approx(0.25)
    # b asks for 1 only: a gets the rest though both weigh the same
    assert water_fill(10, {"a": 1, "b": 1}, {"a": 100, "b": 1}) == {"a": 9, "b": 1}
    assert water_fill(10, {"a": 3, "b": 1}, {"a": 100, "b": 100}) == {"a": 7.5, "b": 2.5}
    series = [(0.0, 4, 4), (10.0, 8, 0), (20.0, 0, 0)]
    assert time_average(series, 5, 15) == (6.0, 2.0)


def test_the_oracle_reads_true_remaining_time_which_no_policy_may() -> None:
    # A (8 GPUs) runs 1-101; B (100 s) and C (50 s) wait, C with the larger estimate: the
    # oracle goes by the truth, C runs 102-152, then B 153-253
    a, b, c = job(0, 0, 8, 100), job(1, 10, 8, 100), job(2, 20, 8, 50)
    c.estimated_gpu_hours = 10 * b.estimated_gpu_hours
    sim = Simulation(nodes(1), [a, b, c], start=0)
    sim.run(OracleSrpt())
    assert jct([a, b, c]) == [101, 243, 132]
