"""Each hard-constraint family, on small literal scenarios."""

from __future__ import annotations

from gpualloc.model import NodeRequirements, Policy, Requirement, RunningPod, Taint, Toleration
from gpualloc.solver import plan
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
    snap,
)


def test_gang_that_does_not_fit_is_not_placed_at_all() -> None:
    s = snap([node("n0"), node("n1")], [gang("big", 3, 8)])
    p = plan(s)
    assert_valid(s, p)
    assert p.placements == ()
    assert "needs 3 workers x 8 GPUs" in p.unscheduled[0].reason
    assert "only 2 nodes have 8 free" in p.unscheduled[0].reason


def test_worker_gpus_stay_on_one_node() -> None:
    # 8 GPUs free in total, but 4 + 4 on two nodes: an 8-GPU worker cannot be split
    pods = [RunningPod("x/a", "n0", 4), RunningPod("x/b", "n1", 4)]
    s = snap([node("n0"), node("n1")], [gang("tp8", 1, 8)], pods)
    p = plan(s)
    assert p.placements == ()
    assert "only 0 nodes have 8 free" in p.unscheduled[0].reason


def test_unmanaged_pods_use_capacity() -> None:
    s = snap([node("n0")], [inference("inf", 2, 4)], [RunningPod("x/other", "n0", 6)])
    p = plan(s)
    assert p.placements == ()  # only 2 GPUs left


def test_products_and_gpu_memory() -> None:
    nodes = [node("h0", product=H100), node("a0", product=A100)]
    jobs = [
        gang("on-h100", 1, 8, requirements=only(H100)),
        gang(
            "big-memory", 1, 8, created=1, requirements=NodeRequirements(min_gpu_memory_mib=80000)
        ),
        gang("nowhere", 1, 1, requirements=only("NVIDIA-B200")),
    ]
    s = snap(nodes, jobs)
    p = plan(s)
    assert_valid(s, p)
    assert nodes_of(p, "on-h100") == ["h0"]
    reasons = {u.job: u.reason for u in p.unscheduled}
    assert "no node allows its products (NVIDIA-B200)" in reasons["ns/nowhere"]
    # big-memory needs the H100 node, which on-h100 (older, same priority) already took
    assert "ns/big-memory" in reasons


def test_minimum_gpu_memory_explained() -> None:
    s = snap(
        [node("a0", product=A100)],
        [gang("m", 1, 1, requirements=NodeRequirements(min_gpu_memory_mib=80000))],
    )
    assert "needs 80000 MiB per GPU" in plan(s).unscheduled[0].reason


def test_taints_cordons_and_tolerations() -> None:
    taint = Taint("dedicated", "llm", "NoSchedule")
    nodes = [node("tainted", taints=(taint,)), node("cordoned", cordoned=True)]
    tolerant = NodeRequirements(tolerations=(Toleration("dedicated", "Equal", "llm"),))
    s = snap(nodes, [gang("plain", 1, 8), gang("tolerant", 1, 8, created=1, requirements=tolerant)])
    p = plan(s)
    assert_valid(s, p)
    assert nodes_of(p, "tolerant") == ["tainted"]
    assert "ns/plain" in {u.job for u in p.unscheduled}
    assert "cordoned" in p.unscheduled[0].reason and "taint" in p.unscheduled[0].reason


def test_unhealthy_gpus_are_not_capacity() -> None:
    s = snap([node("n0", unhealthy_gpus=1), node("n1")], [gang("g", 2, 8)])
    assert plan(s).placements == ()
    s2 = snap([node("n0", unhealthy_gpus=1), node("n1")], [inference("i", 2, 7)])
    assert sorted(p.node for p in plan(s2).placements) == ["n0", "n1"]


def test_node_selector_and_required_affinity() -> None:
    nodes = [node("n0", labels={"zone": "a"}), node("n1", labels={"zone": "b"}), node("n2")]
    by_label = NodeRequirements(node_selector=(("zone", "b"),))
    by_name = NodeRequirements(
        affinity_terms=((Requirement("metadata.name", "In", ("n2",), field=True),),)
    )
    not_a = NodeRequirements(
        affinity_terms=((Requirement("zone", "NotIn", ("a",)), Requirement("zone", "Exists")),)
    )
    jobs = [
        gang("sel", 1, 4, requirements=by_label),
        gang("name", 1, 4, requirements=by_name),
        gang("expr", 1, 4, requirements=not_a, created=1),
    ]
    s = snap(nodes, jobs)
    p = plan(s)
    assert_valid(s, p)
    assert nodes_of(p, "sel") == ["n1"]
    assert nodes_of(p, "name") == ["n2"]
    assert nodes_of(p, "expr") == ["n1"]


def test_cpu_and_memory_capacity() -> None:
    # GPUs would fit four 2-GPU replicas; CPU only three
    s = snap([node("n0", cpu_milli=30_000)], [inference("cpu", 4, 2, cpu_milli=10_000)])
    p = plan(s)
    assert_valid(s, p)
    assert len(p.placements) == 3


def test_elastic_gang_between_min_and_max() -> None:
    s = snap([node("n0"), node("n1"), node("n2")], [gang("elastic", 5, 8, minimum=2)])
    p = plan(s)
    assert_valid(s, p)
    assert gpus_by_job(p) == {"ns/elastic": 24}


def test_running_pods_stay_and_new_replicas_are_added() -> None:
    pods = [running("inf", "n1", 2, replica=0)]
    s = snap([node("n0"), node("n1")], [inference("inf", 3, 2)], pods)
    p = plan(s)
    assert_valid(s, p)
    mine = [(q.replica, q.node) for q in p.placements if q.job == "ns/inf"]
    assert (0, "n1") in mine and len(mine) == 3
    assert sorted(r for r, _ in mine) == [0, 1, 2]


def test_preemption_only_of_preemptible_lower_priority_gangs() -> None:
    nodes = [node("n0"), node("n1")]
    pods = [running("low", "n0", 8, 0), running("low", "n1", 8, 1)]
    low = gang("low", 2, 8, priority=1, preemptible=True)
    high = gang("high", 1, 8, priority=10, created=5)
    s = snap(nodes, [low, high], pods)
    p = plan(s)
    assert_valid(s, p)
    assert [e.job for e in p.evictions] == ["ns/low"]
    assert len(nodes_of(p, "high")) == 1

    not_preemptible = gang("low", 2, 8, priority=1, preemptible=False)
    p = plan(snap(nodes, [not_preemptible, high], pods))
    assert p.evictions == ()
    assert "outranked" not in p.unscheduled[0].reason

    p = plan(snap(nodes, [low, high], pods), Policy(preemption=False))
    assert p.evictions == ()

    same_priority = gang("high", 1, 8, priority=1, created=5)
    assert plan(snap(nodes, [low, same_priority], pods)).evictions == ()


def test_victim_capacity_only_goes_to_higher_priority() -> None:
    # evicting `low` (prio 5) to fit `mid` (prio 5, more GPUs) would raise level 5: forbidden
    pods = [running("low", "n0", 2, 0)]
    low = inference("low", 1, 2, priority=5, preemptible=True)
    mid = gang("mid", 1, 8, priority=5, created=3)
    s = snap([node("n0")], [low, mid], pods)
    p = plan(s)
    assert p.evictions == ()
    assert nodes_of(p, "low") == ["n0"]


def test_eviction_limit_per_round() -> None:
    nodes = [node("n0"), node("n1")]
    pods = [running("a", "n0", 8), running("b", "n1", 8)]
    jobs = [
        gang("a", 1, 8, priority=1, preemptible=True),
        gang("b", 1, 8, priority=1, preemptible=True, created=1),
        gang("urgent", 2, 8, priority=9),
    ]
    p = plan(snap(nodes, jobs, pods), Policy(max_evictions_per_round=1))
    assert len(p.evictions) <= 1
    assert "ns/urgent" in {u.job for u in p.unscheduled}
