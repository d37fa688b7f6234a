"""GPU queues in the planner, one rule per scenario: guarantees, borrowing, limits, weights,
the tree, reclaim, oscillation. Pending-only scenarios are checked against a brute-force
optimum (tests/unit/queue_oracle.py); the rest against hand-computed outcomes."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from gpualloc.model import Job, Node, Plan, Queue, QueueQuota, RunningPod, Snapshot
from gpualloc.solver import plan
from gpualloc.solver.cpsat import AllocationModel, Solution
from tests.unit import queue_oracle
from tests.unit.builders import (
    A100,
    H100,
    assert_valid,
    gang,
    gpus_by_job,
    inference,
    node,
    nodes_of,
    only,
    running,
)

pytestmark = pytest.mark.unit


def q(name: str, *quota: QueueQuota, **kw: object) -> Queue:
    return Queue(name, ("ns",), quota=quota, **kw)  # type: ignore[arg-type]


def h100(nominal: int, **kw: int) -> QueueQuota:
    return QueueQuota(H100, nominal, kw.get("borrowing"), kw.get("lending"))


def in_queue(queue: str, job: Job) -> Job:
    return replace(job, queue=queue)


def snap(
    nodes: list[Node],
    jobs: list[Job],
    queues: list[Queue],
    pods: list[RunningPod] = (),  # type: ignore[assignment]
) -> Snapshot:
    return Snapshot(tuple(nodes), tuple(pods), tuple(jobs), tuple(queues))


def per_queue(p: Plan, s: Snapshot) -> dict[str, int]:
    queue = {j.key: j.queue for j in s.jobs}
    out: dict[str, int] = {}
    for pl in p.placements:
        out[str(queue[pl.job])] = out.get(str(queue[pl.job]), 0) + pl.gpus
    return out


def reasons(p: Plan) -> dict[str, str]:
    return {u.job.removeprefix("ns/"): u.reason for u in p.unscheduled}


# -- pending-only scenarios against the brute-force optimum -------------------------------
@dataclass(frozen=True)
class Case:
    name: str
    snapshot: Snapshot
    expected: dict[str, int]  # GPUs per queue, hand-computed


def _gangs(queue: str, prefix: str, count: int, gpus: int = 8, **kw: object) -> list[Job]:
    return [
        in_queue(queue, gang(f"{prefix}{i}", 1, gpus, preemptible=True, created=i, **kw))
        for i in range(count)
    ]


CASES = [
    # nominal is guaranteed: b's older jobs would take both nodes; a gets its 8 back
    Case(
        "guarantee",
        snap(
            [node("n0"), node("n1")],
            [*_gangs("b", "b", 2), in_queue("a", gang("a0", 1, 8, preemptible=True, created=9))],
            [q("a", h100(8)), q("b", h100(8))],
        ),
        {"a": 8, "b": 8},
    ),
    # inside a queue, nominal goes by priority: the 6-GPU high job, not the 8-GPU low one
    Case(
        "guarantee-by-priority-inside-the-queue",
        snap(
            [node("n0")],
            [
                in_queue("a", gang("high", 1, 6, priority=10, preemptible=True)),
                in_queue("a", gang("low", 1, 8, priority=1, preemptible=True)),
            ],
            [q("a", h100(8))],
        ),
        {"a": 6},
    ),
    # idle nominal of b and unreserved GPUs are borrowed
    Case(
        "borrow",
        snap(
            [node("n0"), node("n1"), node("n2")],
            _gangs("a", "a", 3),
            [q("a", h100(8)), q("b", h100(8))],
        ),
        {"a": 24},
    ),
    Case(
        "borrowing-limit",
        snap(
            [node("n0"), node("n1"), node("n2")],
            _gangs("a", "a", 3),
            [q("a", h100(8, borrowing=8)), q("b", h100(8))],
        ),
        {"a": 16},
    ),
    # b lends none of its nominal: its 8 stay idle for it
    Case(
        "lending-limit",
        snap(
            [node("n0"), node("n1"), node("n2")],
            _gangs("a", "a", 3),
            [q("a", h100(8)), q("b", h100(8, lending=0))],
        ),
        {"a": 16},
    ),
    # a job that is not preemptible could never be reclaimed: only within nominal
    Case(
        "not-preemptible-only-within-nominal",
        snap(
            [node("n0"), node("n1")],
            [in_queue("a", gang("a0", 1, 8)), in_queue("a", gang("a1", 1, 8, created=1))],
            [q("a", h100(8))],
        ),
        {"a": 8},
    ),
    # borrowed GPUs / weight are levelled: weight 2 borrows twice as much
    Case(
        "weights",
        snap(
            [node("n0", 16), node("n1", 16)],
            [*_gangs("a", "a", 2), *_gangs("b", "b", 2), *_gangs("c", "c", 3)],
            [q("a"), q("b"), q("c", weight=2.0)],
        ),
        {"a": 8, "b": 8, "c": 16},
    ),
    # leximin, not total: 2x8 gang of a beats two 4-GPU jobs of c once b has its share
    Case(
        "leximin-with-gangs",
        snap(
            [node("n0", 16), node("n1", 16)],
            [
                in_queue("a", gang("a0", 2, 8, preemptible=True)),
                *_gangs("b", "b", 2),
                *_gangs("c", "c", 2, gpus=4),
            ],
            [q("a"), q("b"), q("c")],
        ),
        {"a": 16, "b": 8, "c": 8},
    ),
    # per-product quota: a's H100 quota does not cover A100s, b's A100 quota is b's
    Case(
        "per-product",
        snap(
            [node("h", 8, H100), node("x", 8, A100)],
            [*_gangs("a", "a", 2), *_gangs("b", "b", 1)],
            [q("a", h100(8)), q("b", QueueQuota(A100, 8))],
        ),
        {"a": 8, "b": 8},
    ),
    # the tree: org's quota (its children's) comes before x's borrowing; then inside org
    Case(
        "tree-parent-quota-first",
        snap(
            [node("n0", 16), node("n1", 16)],
            [*_gangs("team-a", "a", 3), *_gangs("x", "x", 3)],
            [
                Queue("org"),
                Queue("team-a", ("ns",), parent="org", quota=(h100(8),)),
                Queue("team-b", ("ns",), parent="org", quota=(h100(8),)),
                q("x", h100(16)),
            ],
        ),
        {"team-a": 16, "x": 16},
    ),
    Case(
        "tree-sibling-nominal-before-borrowing",
        snap(
            [node("n0", 16)],
            [*_gangs("team-a", "a", 2), in_queue("team-b", gang("b0", 1, 8, created=9))],
            [
                Queue("org"),
                Queue("team-a", ("ns",), parent="org", quota=(h100(8),)),
                Queue("team-b", ("ns",), parent="org", quota=(h100(8),)),
            ],
        ),
        {"team-a": 8, "team-b": 8},
    ),
    # `*` pools every product: 8 GPUs of any kind
    Case(
        "star-quota",
        snap(
            [node("h", 8, H100), node("x", 8, A100)],
            [*_gangs("a", "a", 2), in_queue("b", gang("b0", 1, 8))],
            [q("a", QueueQuota("*", 8)), q("b", QueueQuota("*", 8))],
        ),
        {"a": 8, "b": 8},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plan_is_the_brute_force_optimum(case: Case) -> None:
    p = plan(case.snapshot)
    assert p.status == "OPTIMAL"
    assert_valid(case.snapshot, p)
    assert queue_oracle.placements_ok(p, case.snapshot)
    top, winners = queue_oracle.best(case.snapshot)
    assert queue_oracle.Scorer(case.snapshot).key(queue_oracle.of_plan(p)) == top
    assert per_queue(p, case.snapshot) == case.expected
    assert any(per_queue_of(w, case.snapshot) == case.expected for w in winners)


def per_queue_of(a: queue_oracle.Assignment, s: Snapshot) -> dict[str, int]:
    jobs = {j.key: j for j in s.jobs}
    out: dict[str, int] = {}
    for key, nodes in a.items():
        queue = str(jobs[key].queue)
        out[queue] = out.get(queue, 0) + jobs[key].gpus_per_replica * len(nodes)
    return out


def test_weighted_max_min_with_elastic_replicas() -> None:
    # 32 GPUs, three queues with nothing nominal, weights 1, 1, 2: 8, 8, 16
    jobs = [in_queue(x, inference(f"{x}0", 40, 1, preemptible=True)) for x in "abc"]
    s = snap([node(f"n{i}") for i in range(4)], jobs, [q("a"), q("b"), q("c", weight=2.0)])
    p = plan(s)
    assert per_queue(p, s) == {"a": 8, "b": 8, "c": 16}
    assert {k: r.fair_share for k, r in p.queues.items()} == {"a": 8.0, "b": 8.0, "c": 8.0}


def test_borrowing_that_already_runs_counts_in_the_fair_share() -> None:
    # a already borrows 8 (running); the free 8 go to b, not to a's older waiting job
    jobs = [
        in_queue("a", gang("a0", 1, 8, preemptible=True)),
        in_queue("a", gang("a1", 1, 8, preemptible=True, created=1)),
        in_queue("b", gang("b1", 1, 8, preemptible=True, created=9)),
    ]
    s = snap(TWO, jobs, [q("a"), q("b")], [running("a0", "n0", 8)])
    assert gpus_by_job(plan(s)) == {"ns/a0": 8, "ns/b1": 8}


def test_queue_reports() -> None:
    s = CASES[2].snapshot  # a borrows 16 beyond its nominal 8
    r = plan(s).queues
    assert r["a"].usage == {H100: 24} and r["a"].nominal == {H100: 8}
    assert r["a"].borrowed == {H100: 16} and r["a"].admitted == 3 and r["a"].pending == 0
    assert r["b"].usage == {} and r["b"].borrowed == {H100: 0} and r["b"].fair_share == 0


# -- lending along the tree, fairness per product ------------------------------------------
def test_two_lending_reserves_are_held_together() -> None:
    # a and b lend none of their 8: both stay idle for them, so x (nominal 0) gets 24 - 8 - 8
    # = 8, not the 16 that either reserve alone would leave
    s = snap(
        [node("n0"), node("n1"), node("n2")],
        _gangs("x", "x", 3),
        [q("a", h100(8, lending=0)), q("b", h100(8, lending=0)), q("x")],
    )
    assert per_queue(plan(s), s) == {"x": 8}


def test_a_childs_reserve_is_inside_its_parents() -> None:
    # org holds 16 for its own (lendingLimit 0 of 16); team-a's reserve of 8 is part of it,
    # not on top: x gets 32 - 16 = 16. When team-a wants 24: team-b lends its idle 8 within
    # org (team-a's 16 are org's guarantee), the other 16 are levelled between org and x
    org = Queue("org", quota=(h100(16, lending=0),))
    queues = [
        org,
        Queue("team-a", ("ns",), parent="org", quota=(h100(8, lending=0),)),
        Queue("team-b", ("ns",), parent="org", quota=(h100(8),)),
        q("x"),
    ]
    nodes = [node(f"n{i}") for i in range(4)]
    s = snap(nodes, _gangs("x", "x", 4), queues)
    assert per_queue(plan(s), s) == {"x": 16}
    s = snap(nodes, [*_gangs("x", "x", 4), *_gangs("team-a", "a", 3)], queues)
    assert per_queue(plan(s), s) == {"x": 8, "team-a": 24}


def _by_product(p: Plan, s: Snapshot) -> dict[tuple[str, str], int]:
    queue = {j.key: str(j.queue) for j in s.jobs}
    product = {n.name: n.product for n in s.nodes}
    out: dict[tuple[str, str], int] = {}
    for pl in p.placements:
        key = (queue[pl.job], product[pl.node])
        out[key] = out.get(key, 0) + pl.gpus
    return out


def _two_products(quota: tuple[QueueQuota, ...]) -> Snapshot:
    """8 H100 and 16 A100; a wants 8 H100 (a gang) and up to 16 A100, b up to 16 A100."""
    jobs = [
        in_queue("a", gang("ah", 1, 8, preemptible=True, requirements=only(H100))),
        in_queue("a", inference("aa", 16, 1, preemptible=True, requirements=only(A100))),
        in_queue("b", inference("bb", 16, 1, preemptible=True, requirements=only(A100))),
    ]
    return snap([node("h", 8, H100), node("x", 16, A100)], jobs, [q("a", *quota), q("b", *quota)])


def test_fair_share_is_per_product() -> None:
    # nothing nominal: A100s are levelled between the two queues that want them (8 and 8);
    # a's H100s, which b cannot use, do not cost it A100s (summed: a 8 + 4, b 12)
    s = _two_products(())
    assert _by_product(plan(s), s) == {("a", H100): 8, ("a", A100): 8, ("b", A100): 8}


def test_a_star_quota_pools_the_products_in_the_fair_share() -> None:
    # `*` nominal 4 each: one pool; a borrows 8 + x - 4, b 16 - x - 4: equal at x = 4
    s = _two_products((QueueQuota("*", 4),))
    assert _by_product(plan(s), s) == {("a", H100): 8, ("a", A100): 4, ("b", A100): 12}


def test_an_eviction_pays_on_one_of_the_victims_nodes() -> None:
    # b's 2-node gang borrows n0 (H100) and half of n1 (A100); a1 (H100 only, within a's
    # nominal) needs n0: the 8 free A100s on n1 do not excuse the eviction
    jobs = [
        in_queue("b", gang("b0", 2, 8, preemptible=True)),
        in_queue("a", gang("a1", 1, 8, requirements=only(H100))),
    ]
    pods = [running("b0", "n0", 8), running("b0", "n1", 8, replica=1)]
    s = snap([node("n0", 8, H100), node("n1", 16, A100)], jobs, [q("a", h100(8)), q("b")], pods)
    p = plan(s)
    assert_valid(s, p)
    assert [e.job for e in p.evictions] == ["ns/b0"] and nodes_of(p, "a1") == ["n0"]


# -- reasons name the queue ------------------------------------------------------------------
def test_waiting_at_nominal_names_the_queue_and_who_lends() -> None:
    s = snap(
        [node("n0"), node("n1")],
        [*_gangs("a", "a", 2), in_queue("b", gang("b0", 1, 8))],
        [q("a", h100(8)), q("b", h100(8, lending=0))],
    )
    why = reasons(plan(s))["a1"]
    assert why.startswith(f"queue a is at its nominal 8 {H100} and cannot borrow: b lends 0")


def test_waiting_behind_higher_priority_jobs_of_the_queue() -> None:
    jobs = [
        in_queue("a", gang("big", 1, 8, priority=5, preemptible=True)),
        in_queue("a", gang("small", 1, 8, priority=1, preemptible=True)),
        in_queue("b", gang("b0", 1, 8)),
    ]
    s = snap([node("n0")], jobs, [q("a", h100(8)), q("b", h100(8))], [running("b0", "n0", 8)])
    why = reasons(plan(s))
    assert why["small"].startswith("waiting behind 1 higher-priority job in queue a")


def test_a_job_that_is_not_preemptible_says_it_runs_only_within_nominal() -> None:
    why = reasons(plan(CASES[5].snapshot))["a1"]
    assert "a job that is not preemptible runs only within it" in why


# -- reclaim -------------------------------------------------------------------------------
TWO = [node("n0"), node("n1")]
BORROWING_B = [
    in_queue("b", gang("b1", 1, 8, preemptible=True)),
    in_queue("b", gang("b2", 1, 8, preemptible=True)),
]
B_RUNS = [running("b1", "n0", 8, started=100.0), running("b2", "n1", 8, started=200.0)]


def test_reclaim_evicts_the_newest_borrowing_job_in_the_same_plan_that_places_the_owner() -> None:
    s = snap(
        TWO,
        [*BORROWING_B, in_queue("a", gang("a1", 1, 8))],
        [q("a", h100(8)), q("b", h100(8))],
        B_RUNS,
    )
    p = plan(s)
    assert_valid(s, p)
    assert [e.job for e in p.evictions] == ["ns/b2"]  # started last: least work lost
    assert gpus_by_job(p) == {"ns/a1": 8, "ns/b1": 8}
    assert "reclaimed by queue a" in p.evictions[0].reason
    assert "queue b was borrowing" in p.evictions[0].reason
    assert p.holds["ns/b2"].nodes == ("n1",) and p.holds["ns/b2"].for_jobs == ("ns/a1",)


def test_reclaim_takes_the_lowest_priority_borrower_before_the_newest() -> None:
    # Kueue's candidate order: lower priority first, then the most recently admitted. b2
    # (priority 1) started first, b1 (priority 5) last: b2 goes
    jobs = [
        in_queue("b", gang("b1", 1, 8, priority=5, preemptible=True)),
        in_queue("b", gang("b2", 1, 8, priority=1, preemptible=True)),
        in_queue("a", gang("a1", 1, 8)),
    ]
    pods = [running("b1", "n1", 8, started=200.0), running("b2", "n0", 8, started=100.0)]
    s = snap(TWO, jobs, [q("a", h100(8)), q("b")], pods)
    p = plan(s)
    assert [e.job for e in p.evictions] == ["ns/b2"] and nodes_of(p, "a1") == ["n0"]


def test_no_reclaim_from_work_within_nominal() -> None:
    # b uses exactly its nominal 16; a (nominal 0) may not take any of it
    s = snap(
        TWO,
        [*BORROWING_B, in_queue("a", gang("a1", 1, 8, preemptible=True))],
        [q("a"), q("b", h100(16))],
        B_RUNS,
    )
    p = plan(s)
    assert not p.evictions and "ns/a1" not in gpus_by_job(p)


def test_a_queue_at_its_nominal_cannot_reclaim_by_calling_a_new_job_the_guaranteed_one() -> None:
    # a (nominal 1) runs a0 within it; a1 would be guaranteed only if a0 were relabelled as
    # borrowing: no reclaim from b, even though leximin would like a to borrow more
    jobs = [
        in_queue("a", inference("a0", 1, 1, preemptible=True)),
        in_queue("a", inference("a1", 1, 1, preemptible=True, created=5)),
        in_queue("b", gang("b0", 1, 8, preemptible=True)),
        in_queue("b", gang("b1", 1, 7, preemptible=True)),
        in_queue("b", gang("b2", 1, 8, preemptible=True, created=9)),  # b wants more too
    ]
    pods = [running("a0", "n0", 1), running("b1", "n0", 7), running("b0", "n1", 8)]
    s = snap(TWO, jobs, [q("a", h100(1)), q("b")], pods)
    p = plan(s)
    assert not p.evictions and "ns/a1" not in gpus_by_job(p)


def test_no_eviction_only_to_make_room_in_a_nominal_quota() -> None:
    # a (nominal 8) runs a0 (4); a1 (8) fits a's nominal only if a0 goes: evicting a0 frees no
    # GPU a1 uses, so neither a0 nor b's borrowing b1 is evicted for it
    jobs = [
        in_queue("a", inference("a0", 1, 4, preemptible=True)),
        in_queue("a", gang("a1", 1, 8, preemptible=True, created=5)),
        in_queue("b", inference("b0", 1, 4, preemptible=True)),
        in_queue("b", gang("b1", 1, 8, preemptible=True)),
    ]
    pods = [running("a0", "n0", 4), running("b0", "n0", 4), running("b1", "n1", 8)]
    p = plan(snap(TWO, jobs, [q("a", h100(8)), q("b")], pods))
    assert not p.evictions and "ns/a1" not in gpus_by_job(p)


def test_a_reclaim_never_swaps_a_running_borrower_for_a_waiting_one() -> None:
    # a1 fits the free n1; evicting b1 to put a1 on n0 and the older b2 on n1 would place one
    # more job (an age tie-break) at the price of an eviction: no
    jobs = [
        in_queue("a", gang("a1", 1, 8, created=5)),
        in_queue("b", gang("b1", 1, 8, preemptible=True, created=3)),
        in_queue("b", gang("b2", 1, 8, preemptible=True, created=1)),
    ]
    p = plan(snap(TWO, jobs, [q("a", h100(8)), q("b")], [running("b1", "n0", 8)]))
    assert not p.evictions and nodes_of(p, "a1") == ["n1"]


def test_no_fairness_preemption_between_borrowers() -> None:
    # both borrow (nominal 0): b holds everything; a waits instead of evicting
    s = snap(
        TWO,
        [*BORROWING_B, in_queue("a", gang("a1", 1, 8, preemptible=True))],
        [q("a"), q("b")],
        B_RUNS,
    )
    p = plan(s)
    assert not p.evictions


def test_a_reclaim_does_not_hand_the_free_gpus_to_another_queues_borrower() -> None:
    # Philly seed 43: b borrows 6 (b1, b2 on n0), c runs c1 at its nominal 4 on n1, 4 GPUs
    # of n1 free. a1 (1 GPU, within a's nominal) fits them. Evicting b2 to put a1 on n0 and
    # c's borrowing c2 in n1's free 4 levels the borrowing (b 2, c 4 instead of b 6, c 0),
    # but the eviction pays only for GPUs a1 had free: the next round then reclaimed again
    jobs = [
        in_queue("b", gang("b1", 1, 4, preemptible=True, created=1)),
        in_queue("b", gang("b2", 1, 4, preemptible=True, created=2)),
        in_queue("c", gang("c1", 1, 4, preemptible=True, created=3)),
        in_queue("c", gang("c2", 1, 4, preemptible=True, created=4)),
        in_queue("a", gang("a1", 1, 1, preemptible=True, created=5)),
    ]
    pods = [
        running("b1", "n0", 4, started=100.0),
        running("b2", "n0", 4, started=200.0),
        running("c1", "n1", 4, started=300.0),
    ]
    queues = [q("a", h100(1)), q("b", h100(2)), q("c", h100(4))]
    s = snap(TWO, jobs, queues, pods)
    p = plan(s)
    assert_valid(s, p)
    assert not p.evictions and nodes_of(p, "a1") == ["n1"] and "ns/c2" not in gpus_by_job(p)


def test_borrowing_work_that_is_not_preemptible_is_not_reclaimed() -> None:
    jobs = [replace(j, preemptible=False) for j in BORROWING_B]
    s = snap(
        TWO, [*jobs, in_queue("a", gang("a1", 1, 8))], [q("a", h100(8)), q("b", h100(8))], B_RUNS
    )
    p = plan(s)
    assert not p.evictions
    assert "ns/a1" in {u.job for u in p.unscheduled}


def test_reclaim_within_parent_false_waits() -> None:
    queues = [q("a", h100(8), reclaim_within_parent=False), q("b", h100(8))]
    s = snap(TWO, [*BORROWING_B, in_queue("a", gang("a1", 1, 8))], queues, B_RUNS)
    assert not plan(s).evictions


def test_within_queue_lower_priority_preempts_and_never_waits() -> None:
    low = in_queue("a", gang("low", 1, 8, priority=1, preemptible=True))
    high = in_queue("a", gang("high", 1, 8, priority=9))
    pods = [running("low", "n0", 8)]
    s = snap([node("n0")], [low, high], [q("a", h100(8))], pods)
    p = plan(s)
    assert [e.job for e in p.evictions] == ["ns/low"] and "ns/high" in gpus_by_job(p)
    assert "preempted (priority 1) for higher-priority jobs in queue a" in p.evictions[0].reason
    never = snap([node("n0")], [low, high], [q("a", h100(8), preempt_within_queue=False)], pods)
    assert not plan(never).evictions


def test_no_preemption_across_queues_for_priority_alone() -> None:
    # b's low-priority job runs within b's nominal: a's priority does not matter
    low = in_queue("b", gang("low", 1, 8, priority=1, preemptible=True))
    high = in_queue("a", gang("high", 1, 8, priority=1000, preemptible=True))
    s = snap([node("n0")], [low, high], [q("a"), q("b", h100(8))], [running("low", "n0", 8)])
    assert not plan(s).evictions


def test_tree_reclaim_where_the_paths_part() -> None:
    # x borrows org's idle quota; team-a (beyond its own 8 but within org's 16) takes it back
    queues = [
        Queue("org"),
        Queue("team-a", ("ns",), parent="org", quota=(h100(8),)),
        Queue("team-b", ("ns",), parent="org", quota=(h100(8),)),
        q("x", h100(0)),
    ]
    jobs = [
        *_gangs("x", "x", 2),
        in_queue("team-a", gang("a0", 1, 8, preemptible=True)),
        in_queue("team-a", gang("a1", 1, 8, preemptible=True, created=5)),
    ]
    pods = [running("x0", "n0", 8, started=1.0), running("x1", "n1", 8, started=2.0)]
    s = snap(TWO, jobs, queues, pods)
    p = plan(s)
    assert_valid(s, p)
    assert sorted(e.job for e in p.evictions) == ["ns/x0", "ns/x1"]
    assert per_queue(p, s) == {"team-a": 16}


# -- no oscillation ------------------------------------------------------------------------
def test_same_state_same_plan() -> None:
    s = snap(
        TWO,
        [*BORROWING_B, in_queue("a", gang("a1", 1, 8))],
        [q("a", h100(8)), q("b", h100(8))],
        B_RUNS,
    )
    first = plan(s)
    again = plan(s, previous=first)
    assert again.placements == first.placements and again.evictions == first.evictions


def test_gang_overshoot_is_not_given_back() -> None:
    """b (nominal 12) runs two 8-GPU gangs; a (nominal 4) needs 4: one gang goes, b is left
    below nominal with 4 idle GPUs, and the evicted gang is not placed back, not in the next
    rounds either (the Kueue loop of #3779): no eviction after the first."""
    queues = [q("a", h100(4)), q("b", h100(12))]
    jobs = [*BORROWING_B, in_queue("a", inference("a1", 1, 4))]
    rounds = [
        B_RUNS,  # 1: b holds both nodes
        [B_RUNS[0], RunningPod("ns/b2-0", "n1", 8)],  # 2: the victim terminates
        [B_RUNS[0]],  # 3: gone
        [B_RUNS[0], running("a1", "n1", 4)],  # 4: a runs
        [B_RUNS[0], running("a1", "n1", 4)],  # 5
    ]
    previous: Plan | None = None
    evicted: list[str] = []
    for i, pods in enumerate(rounds):
        p = plan(snap(TWO, jobs, queues, pods), previous=previous)
        evicted += [e.job for e in p.evictions]
        assert "ns/b2" not in gpus_by_job(p), f"round {i + 1} gave b2 back"
        previous = p
    assert evicted == ["ns/b2"]


def test_a_hold_lasts_until_the_job_it_made_room_for_is_placed() -> None:
    queues = [q("a", h100(8)), q("b", h100(8))]
    jobs = [*BORROWING_B, in_queue("a", gang("a1", 1, 8))]
    first = plan(snap(TWO, jobs, queues, B_RUNS))
    gone = plan(snap(TWO, jobs, queues, [B_RUNS[0]]), previous=first)
    assert gpus_by_job(gone) == {"ns/a1": 8, "ns/b1": 8}
    assert "kept off n1 until ns/a1 run there" in reasons(gone)["b2"]
    assert gone.holds == {}  # a1 is placed now: the next round sees it pinned to n1
    terminating = plan(
        snap(TWO, jobs, queues, [B_RUNS[0], RunningPod("ns/b2-0", "n1", 8)]), previous=first
    )
    assert terminating.holds == first.holds  # a1 cannot be placed yet: the hold stays


def test_a_round_whose_solve_finds_no_plan_still_places_what_each_nominal_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a loaded machine a queued solve can end UNKNOWN (no plan in its time limit): the
    round then places, in free GPUs and evicting nothing, the waiting jobs within nominal."""
    monkeypatch.setattr(AllocationModel, "solve", lambda self: Solution("UNKNOWN", 0, 0, 0))
    queues = [q("a", h100(8)), Queue("b", ("b",), quota=(h100(8),))]
    jobs = [
        in_queue("a", gang("a1", 1, 8, created=1)),
        in_queue("a", gang("a2", 1, 8, created=2)),  # beyond a's nominal: not without a plan
        replace(in_queue("b", gang("b1", 1, 8, preemptible=True)), key="b/b1"),
    ]
    pods = [RunningPod("b/b1-0", "n0", 8, job="b/b1", replica=0)]
    p = plan(snap([node("n0"), node("n1"), node("n2")], jobs, queues, pods))
    assert gpus_by_job(p) == {"b/b1": 8, "ns/a1": 8} and p.evictions == ()
    assert "no plan in its time limit" in reasons(p)["a2"]


# -- without queues ------------------------------------------------------------------------
def test_without_queues_the_plan_is_the_priority_plan() -> None:
    jobs = [gang("old", 1, 8, created=1), gang("young", 1, 8, created=2, priority=5)]
    s = Snapshot((node("n0"),), (), tuple(jobs))
    p = plan(s)
    assert gpus_by_job(p) == {"ns/young": 8} and p.queues == {} and p.holds == {}
    assert "queues" not in p.to_json()


def test_a_job_without_a_usable_queue_waits() -> None:
    s = snap([node("n0")], [gang("lost", 1, 8), in_queue("gone", gang("x", 1, 8))], [q("a")])
    why = reasons(plan(s))
    assert why == {"lost": "the job is in no GPUQueue", "x": "queue gone cannot be used"}


# -- random small instances against the brute force ------------------------------------------
def _random_instance(seed: int) -> Snapshot:
    """2-3 nodes of 8 or 16 GPUs of two products, 2-3 queues (sometimes under a cohort) with
    random per-product, `*` or no quota, limits and weights, 3-5 gangs or inference jobs."""
    r = random.Random(seed)
    nodes = [
        node(f"n{i}", r.choice([8, 16]), r.choice([H100, H100, A100]))
        for i in range(r.randint(2, 3))
    ]
    names = ["a", "b", "c"][: r.randint(2, 3)]
    tree = r.random() < 0.3
    queues = [Queue("org")] if tree else []
    for i, name in enumerate(names):
        quota = []
        for product in r.sample([H100, A100, "*"], r.randint(0, 2)):
            nominal = r.choice([0, 4, 8, 16])
            lending = r.choice([None, None, None, 0])
            quota.append(QueueQuota(product, nominal, r.choice([None, None, 0, 8]), lending))
        queues.append(
            Queue(
                name,
                ("ns",),
                parent="org" if tree and i < 2 else None,
                quota=tuple(quota),
                weight=r.choice([1.0, 1.0, 2.0]),
            )
        )
    jobs = []
    for j in range(r.randint(3, 5)):
        preemptible = r.random() < 0.7
        priority = r.choice([0, 5])
        if r.random() < 0.7:
            workers, gpus = r.choice([(1, 4), (1, 8), (2, 4), (2, 8)])
            job = gang(f"j{j}", workers, gpus, priority, j, preemptible=preemptible)
        else:
            replicas, gpus = r.randint(1, 2), r.choice([2, 4])
            job = inference(f"j{j}", replicas, gpus, priority, j, preemptible=preemptible)
        jobs.append(in_queue(r.choice(names), job))
    return snap(nodes, jobs, queues)


@pytest.mark.parametrize("seed", range(40))
def test_random_instances_reach_the_brute_force_optimum(seed: int) -> None:
    s = _random_instance(seed)
    p = plan(s)
    assert p.status == "OPTIMAL"
    assert_valid(s, p)
    assert queue_oracle.placements_ok(p, s)
    top, _ = queue_oracle.best(s)
    assert queue_oracle.Scorer(s).key(queue_oracle.of_plan(p)) == top
