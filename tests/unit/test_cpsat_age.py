"""The tie order's bonus is per GPU placed (solver/cpsat.py, the `age` objective): among
plans placing as many GPUs, the GPUs go to the earliest-ranked jobs, so small jobs ranked
behind a larger one cannot outvote it by their number."""

from __future__ import annotations

import pytest

from gpualloc.model import Job
from gpualloc.solver import plan
from tests.unit.builders import gang, gpus_by_job, inference, node, snap

pytestmark = pytest.mark.unit


def _small(count: int, first_created: int) -> list[Job]:
    return [gang(f"small{i}", 1, 1, created=first_created + i) for i in range(count)]


def test_a_gang_ranked_first_beats_eight_one_gpu_jobs_ranked_behind_it() -> None:
    # one free 8-GPU node: the 8-GPU gang (oldest, ranked 1) or the eight 1-GPU jobs (2-9);
    # both place 8 GPUs. A bonus per job (9 for the gang, 8+...+1 = 36 for the small jobs)
    # gave the node to the small jobs; per GPU it is 9 x 8 = 72 against 36
    first = gang("first", 1, 8, created=0)
    result = plan(snap([node("n0")], [first, *_small(8, 1)]))
    assert gpus_by_job(result) == {"ns/first": 8}


def test_of_two_identical_gangs_the_first_ranked_beats_the_small_jobs_between_them() -> None:
    # identical pending gangs share one count variable (a group); its bonus is the sum of
    # its first placed jobs' bonuses: 10 x 8 for the first gang against 9+...+2 = 44
    gangs = [gang("first", 1, 8, created=0), gang("last", 1, 8, created=100)]
    result = plan(snap([node("n0")], [*gangs, *_small(8, 1)]))
    assert gpus_by_job(result) == {"ns/first": 8}


def test_an_elastic_job_ranked_first_gets_its_replicas_before_later_small_jobs() -> None:
    # 2 replicas of 4 GPUs, at least 1: per GPU placed, 9 x 4 x 2 = 72 against 36
    elastic = inference("elastic", 2, 4, created=0)
    result = plan(snap([node("n0")], [elastic, *_small(8, 1)]))
    assert gpus_by_job(result) == {"ns/elastic": 8}


def test_more_gpus_still_come_before_the_tie_order() -> None:
    # the 8-GPU gang ranked last still wins a 4-GPU job ranked first: GPUs per level first
    result = plan(
        snap([node("n0")], [inference("old", 1, 4, created=0), gang("new", 1, 8, created=9)])
    )
    assert gpus_by_job(result) == {"ns/new": 8}
