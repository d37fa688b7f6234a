"""The tie order within a priority level: earliest estimated finish (creation time plus the
user's estimated run time) first, so short jobs win ties and no job starves; jobs without an
estimate by age (solver/order.py), and the plans that follow from it."""

from __future__ import annotations

import pytest

from gpualloc.model import Job
from gpualloc.solver import plan
from gpualloc.solver.order import planning_order
from tests.unit.builders import gang, gpus_by_job, node, snap

pytestmark = pytest.mark.unit
HOUR = 3600.0


def keys(jobs: list[Job]) -> list[str]:
    return [j.key.removeprefix("ns/") for j in planning_order(jobs)]


def test_a_job_with_a_shorter_estimate_wins_a_tie() -> None:
    # both want the one free node; the younger one is estimated at 1 h, the older at 20 h
    long = gang("long", 1, 8, created=0, estimated_gpu_hours=160.0)
    short = gang("short", 1, 8, created=60, estimated_gpu_hours=8.0)
    assert keys([long, short]) == ["short", "long"]
    assert gpus_by_job(plan(snap([node("n0")], [long, short]))) == {"ns/short": 8}


def test_an_old_job_wins_over_short_jobs_submitted_after_its_estimated_finish() -> None:
    # old: created at 0, estimated 1 h on 8 GPUs: its estimated finish is at 1 h
    old = gang("old", 1, 8, created=0, estimated_gpu_hours=8.0)
    # a 6-minute job submitted at 50 min would finish by 56 min: it goes first
    early = gang("early", 1, 8, created=50 * 60, estimated_gpu_hours=0.8)
    assert keys([old, early]) == ["early", "old"]
    # however short, a job submitted after 1 h ranks behind: old cannot be passed forever
    late = [gang(f"late{i}", 1, 8, created=HOUR + i, estimated_gpu_hours=0.01) for i in range(5)]
    assert keys([*late, old])[0] == "old"
    assert gpus_by_job(plan(snap([node("n0")], [*late, old]))) == {"ns/old": 8}


def test_estimates_are_compared_as_run_time_over_the_jobs_gpus() -> None:
    # 16 GPU-hours on 2 x 8 GPUs is 1 h; 4 GPU-hours on one GPU is 4 h
    wide = gang("wide", 2, 8, created=0, estimated_gpu_hours=16.0)
    narrow = gang("narrow", 1, 1, created=0, estimated_gpu_hours=4.0)
    assert keys([narrow, wide]) == ["wide", "narrow"]


def test_without_estimates_the_order_is_by_age_then_name() -> None:
    jobs = [gang("c", 1, 1, created=30), gang("b", 1, 1, created=10), gang("a", 1, 1, created=10)]
    assert keys(jobs) == ["a", "b", "c"]
    assert gpus_by_job(plan(snap([node("n0", gpus=1)], jobs))) == {"ns/a": 1}


def test_leaving_the_estimate_out_never_moves_a_job_ahead() -> None:
    # no estimate ranks as the level's longest estimated run time (here 3 h)
    blank = gang("blank", 1, 8, created=0)
    honest = gang("honest", 1, 8, created=0, estimated_gpu_hours=8.0)
    longest = gang("longest", 1, 8, created=-1, estimated_gpu_hours=24.0)
    assert keys([blank, honest, longest]) == ["honest", "longest", "blank"]


def test_priority_still_comes_first() -> None:
    low = gang("low", 1, 8, created=0, estimated_gpu_hours=0.1)
    high = gang("high", 1, 8, priority=5, created=99, estimated_gpu_hours=1000.0)
    assert keys([low, high]) == ["high", "low"]
