"""Topology-aware placement (spec.topology): literal scenario tables.

`solve` runs the CP-SAT plan itself (instance, model, decode, reasons), the part of the
planner this feature lives in; scenarios where the planner's whole pipeline gives the same
answer use `plan` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gpualloc.cli import main
from gpualloc.k8s.convert import SpecError, job_from_k8s, policy_from_k8s
from gpualloc.model import Job, Placement, Plan, Policy, RunningPod, TopologyRequest, Unscheduled
from gpualloc.solver import plan
from gpualloc.solver.baselines import plan_greedy
from gpualloc.solver.cpsat import AllocationModel, Solution
from gpualloc.solver.decode import decode
from gpualloc.solver.explain import Explainer
from gpualloc.solver.instance import build_instance
from gpualloc.solver.topology import respects_required, spans
from gpualloc.solver.topology_greedy import greedy_placements
from tests.unit.builders import assert_valid, gang, inference, node, running, snap

pytestmark = pytest.mark.unit

ZONE = "topology.kubernetes.io/zone"
BLOCK = "network.example.com/block"
RACK = "topology.kubernetes.io/rack"
CLIQUE = "nvidia.com/gpu.clique"
POLICY = Policy(topology_levels=(ZONE, BLOCK, RACK, CLIQUE))


def rack_node(name: str, zone: str, rack: str, gpus: int = 8, **labels: str) -> Any:
    return node(name, gpus, labels={ZONE: zone, BLOCK: "b", RACK: rack, **labels})


def two_racks(per_rack: int = 3) -> list[Any]:
    return [rack_node(f"{r}{i}", "z", r) for r in ("r1", "r2") for i in range(per_rack)]


def solve(nodes: list[Any], jobs: list[Job], pods: list[RunningPod] | None = None) -> Plan:
    """The CP-SAT plan with topology, decoded, with the reasons for jobs left waiting."""
    s = snap(nodes, jobs, pods)
    inst = build_instance(s, POLICY)
    sol = AllocationModel(inst, POLICY).solve()
    placements, placed = decode(inst, sol)
    why = Explainer(
        s.nodes,
        inst.free_by_node,
        placements,
        {j.key: j for j in s.jobs},
        sol.status,
        POLICY.topology_levels,
    )
    waiting = tuple(
        Unscheduled(st.job.key, why.why(st.job, st.lo))
        for j, st in enumerate(inst.jobs)
        if j not in placed and not st.running
    )
    result = Plan(sol.status, sol.objective, sol.bound, sol.seconds, tuple(placements), (), waiting)
    assert_valid(s, result)
    assert respects_required(s.jobs, placements, {n.name: n for n in nodes}, POLICY.topology_levels)
    return result


def racks_of(result: Plan | Sequence[Placement], nodes: list[Any], job: Job) -> list[str]:
    placements = result.placements if isinstance(result, Plan) else result
    found = spans(job, placements, {n.name: n for n in nodes}, POLICY.topology_levels)
    assert found is not None
    return ["/".join(str(v) for v in d) for d in found[1]]


def reason(result: Plan, job: Job) -> str:
    return next(u.reason for u in result.unscheduled if u.job == job.key)


def req(required: str | None = None, preferred: str | None = None) -> dict[str, Any]:
    return {"topology": TopologyRequest(required, preferred)}


# -- required ----------------------------------------------------------------------------
def test_required_rack_keeps_every_gang_inside_one_rack() -> None:
    # 3 gangs of 2 on two racks of 3 nodes: unaware, all 3 fit (one straddling both racks);
    # inside one rack each, only 2 can run
    nodes = two_racks()
    jobs = [gang(f"g{i}", 2, 8, created=i, **req(RACK)) for i in range(3)]
    result = solve(nodes, jobs)
    assert {p.job for p in result.placements} == {"ns/g0", "ns/g1"}
    assert racks_of(result, nodes, jobs[0]) != racks_of(result, nodes, jobs[1])
    for job in jobs[:2]:
        assert len(racks_of(result, nodes, job)) == 1
    assert "in one rack" in reason(result, jobs[2])
    greedy = plan_greedy(snap(nodes, jobs), "best-fit", explain=False)
    assert len(greedy.placements) == 6  # unaware best-fit straddles: what required forbids
    assert not respects_required(
        jobs, greedy.placements, {n.name: n for n in nodes}, POLICY.topology_levels
    )


def test_gang_larger_than_every_rack_waits_with_the_reason() -> None:
    nodes = two_racks()
    job = gang("big", 4, 8, **req(RACK))
    result = solve(nodes, [job])
    assert result.placements == ()
    assert reason(result, job) == (
        "needs 4 workers x 8 GPUs in one rack; no rack has 4 nodes with 8 free "
        "(the most is 3, in rack z/b/r1)"
    )


def test_racks_with_the_same_name_in_two_zones_are_two_domains() -> None:
    # rack r1 of zone a and rack r1 of zone b: 2 + 2 nodes, never one rack of 4
    nodes = [rack_node(f"{z}{i}", z, "r1") for z in ("a", "b") for i in range(2)]
    job = gang("four", 4, 8, **req(RACK))
    result = solve(nodes, [job])
    assert result.placements == ()
    assert "no rack has 4 nodes with 8 free" in reason(result, job)
    two = gang("two", 2, 8, **req(RACK))
    assert len(racks_of(solve(nodes, [two]), nodes, two)) == 1


def test_nodes_without_the_label_are_not_used_for_a_required_level() -> None:
    nodes = [*two_racks(1), node("bare0"), node("bare1")]
    job = gang("g", 2, 8, **req(RACK))
    result = solve(nodes, [job])
    assert result.placements == ()
    assert "no rack has 2 nodes with 8 free (the most is 1" in reason(result, job)


def test_identical_gangs_are_placed_oldest_first_each_in_one_rack() -> None:
    # pending fixed-size gangs of one shape are counted together (one count per rack)
    nodes = two_racks(4)
    jobs = [gang(f"g{i}", 3, 8, created=i, **req(RACK)) for i in range(3)]
    result = solve(nodes, jobs)
    assert {p.job for p in result.placements} == {"ns/g0", "ns/g1"}
    assert sorted(racks_of(result, nodes, j)[0] for j in jobs[:2]) == ["z/b/r1", "z/b/r2"]


def test_elastic_gang_grows_only_inside_its_rack() -> None:
    # 4 workers wanted, 2 enough: 3 in one rack rather than 4 over two
    nodes = two_racks()
    job = gang("elastic", 4, 8, minimum=2, **req(RACK))
    result = solve(nodes, [job])
    assert len(result.placements) == 3
    assert len(racks_of(result, nodes, job)) == 1


def test_new_replicas_join_the_rack_the_running_ones_are_in() -> None:
    nodes = two_racks(2)
    pods = [running("chat", "r20", 4)]
    job = inference("chat", 3, 4, **req(RACK))
    result = solve(nodes, [job], pods)
    assert sorted(p.node for p in result.placements) == ["r20", "r20", "r21"]


def test_required_narrow_level_with_a_wider_one_named_by_path() -> None:
    # required NVLink clique: 2 cliques of 2 nodes in one rack; a gang of 2 takes one clique
    nodes = [rack_node(f"n{i}", "z", "r1", **{CLIQUE: f"c{i // 2}"}) for i in range(4)]
    job = gang("nvl", 2, 8, **req(CLIQUE))
    result = solve(nodes, [job])
    placed = racks_of(result, nodes, job)
    assert len(placed) == 1 and placed[0].startswith("z/b/r1/c")


# -- preferred ---------------------------------------------------------------------------
def test_preferred_spans_fewer_racks_than_greedy_best_fit() -> None:
    # r1: a node with 4 GPUs free; r2: two empty nodes. A gang of 4 x 4 GPUs: best-fit fills
    # the fullest node first (r1) and spans both racks; the plan keeps it in r2
    nodes = [rack_node("a0", "z", "r1"), rack_node("b0", "z", "r2"), rack_node("b1", "z", "r2")]
    pods = [RunningPod("other/x", "a0", 4)]
    job = gang("tp4", 4, 4, **req(preferred=RACK))
    greedy = plan_greedy(snap(nodes, [job], pods), "best-fit", explain=False)
    assert racks_of(greedy, nodes, job) == ["z/b/r1", "z/b/r2"]
    result = solve(nodes, [job], pods)
    assert racks_of(result, nodes, job) == ["z/b/r2"]
    whole = plan(snap(nodes, [job], pods), POLICY)  # the planner's pipeline agrees
    assert racks_of(whole, nodes, job) == ["z/b/r2"]


def test_preferred_never_gives_up_a_placement_to_save_a_rack() -> None:
    nodes = two_racks(2)
    job = gang("g", 3, 8, **req(preferred=RACK))
    result = solve(nodes, [job])
    assert len(result.placements) == 3
    assert len(racks_of(result, nodes, job)) == 2


def test_preferred_rack_inside_a_required_zone() -> None:
    # zone a: racks of 1 and 2 free nodes; zone b: 3 racks of 1. A gang of 3 must stay in one
    # zone; zone a holds it in 2 racks, zone b only in 3
    nodes = [
        rack_node("a0", "a", "r1"),
        rack_node("a1", "a", "r2"),
        rack_node("a2", "a", "r2"),
        *(rack_node(f"b{i}", "b", f"r{i}") for i in range(3)),
    ]
    job = gang("g", 3, 8, **req(required=ZONE, preferred=RACK))
    result = solve(nodes, [job])
    assert racks_of(result, nodes, job) == ["a/b/r1", "a/b/r2"]


def test_preferred_domains_come_after_priority() -> None:
    # the higher-priority gang is placed first even if the preferring one then spans 2 racks
    nodes = two_racks(2)
    high = gang("high", 1, 8, priority=10)
    low = gang("low", 2, 8, **req(preferred=RACK))
    result = solve(nodes, [high, low])
    assert {p.job for p in result.placements} == {"ns/high", "ns/low"}


# -- node classes stay exact -------------------------------------------------------------
def test_node_classes_split_by_domain_only_when_a_job_asks_for_topology() -> None:
    nodes = two_racks(3)
    plain = build_instance(snap(nodes, [gang("g", 1, 8)]), POLICY)
    assert len(plain.classes) == 1  # six identical nodes: one class
    aware = build_instance(snap(nodes, [gang("g", 1, 8, **req(RACK))]), POLICY)
    assert sorted(len(c.nodes) for c in aware.classes) == [3, 3]
    for cls in aware.classes:
        assert len({n.labels[RACK] for n in cls.nodes}) == 1


def test_mixed_sizes_in_aggregated_rack_classes_decode_node_by_node() -> None:
    # 2 racks of 4 identical nodes, gangs of 4x2, 2x4 and 3x8 GPUs that must each stay in a
    # rack: the counts per class decode to a valid node-by-node packing
    nodes = two_racks(4)
    jobs = [
        gang("small", 4, 2, **req(RACK)),
        gang("mid", 2, 4, **req(RACK)),
        gang("large", 3, 8, **req(RACK)),
        gang("free", 2, 8),
    ]
    result = solve(nodes, jobs)
    assert {p.job for p in result.placements} == {j.key for j in jobs}


# -- the API: refused values name the field ----------------------------------------------
def job_obj(topology: Any) -> dict[str, Any]:
    return {
        "kind": "LLMTrainingJob",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": {"workers": 2, "gpusPerWorker": 8, "topology": topology},
    }


@pytest.mark.parametrize(
    ("topology", "field", "message"),
    [
        ({"required": "example.com/pod"}, "spec.topology.required", "not a topology level"),
        ({"preferred": RACK.upper()}, "spec.topology.preferred", "must be a node label key"),
        ({"required": 7}, "spec.topology.required", "must be a node label key"),
        ({"required": "x" * 400}, "spec.topology.required", "must be a node label key"),
        ({"requried": RACK}, "spec.topology.requried", "unknown field"),
        ("rack", "spec.topology", "must be an object"),
    ],
)
def test_malformed_or_unknown_topology_is_refused_by_field(
    topology: Any, field: str, message: str
) -> None:
    with pytest.raises(SpecError) as err:
        job_from_k8s(job_obj(topology), levels=POLICY.topology_levels)
    assert err.value.field == field
    assert message in err.value.message
    assert len(str(err.value)) < 400


def test_a_level_the_policy_lists_is_read() -> None:
    job = job_from_k8s(job_obj({"required": RACK, "preferred": CLIQUE}), levels=(RACK, CLIQUE))
    assert job.topology == TopologyRequest(RACK, CLIQUE)
    with pytest.raises(SpecError) as refused:
        job_from_k8s(job_obj({"required": RACK}), levels=())
    assert "(none)" in refused.value.message


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ([ZONE, ZONE], "twice"),
        (["bad key"], "must be a node label key"),
        ([f"l{i}" for i in range(9)], "at most 8"),
        ("rack", "must be a list"),
    ],
)
def test_policy_levels_are_bounded_label_keys(levels: Any, message: str) -> None:
    obj = {"kind": "AllocationPolicy", "metadata": {"name": "default"}}
    obj["spec"] = {"topology": {"levels": levels}}
    with pytest.raises(SpecError) as err:
        policy_from_k8s(obj)
    assert err.value.field.startswith("spec.topology.levels")
    assert message in err.value.message
    good = policy_from_k8s({**obj, "spec": {"topology": {"levels": [ZONE, RACK]}}})
    assert good.topology_levels == (ZONE, RACK)


# -- the warm start and the plan kept when the solver finds none in time -------------------
def test_topology_aware_best_fit_keeps_requests_and_is_the_fallback_plan() -> None:
    # r1 has one node with 4 GPUs free and one empty; r2 two empty nodes
    nodes = two_racks(2)
    pods = [RunningPod("other/x", "r10", 4)]
    jobs = [
        gang("rack", 2, 8, created=0, **req(RACK)),  # only r2 holds 2 x 8
        gang("pref", 2, 4, created=1, **req(preferred=RACK)),  # r1: the 4 left + half r11
    ]
    s = snap(nodes, jobs, pods)
    inst = build_instance(s, POLICY)
    placed = greedy_placements(inst)
    by_job = {inst.jobs[j].job.name: sorted(n) for j, n in placed.items()}
    assert by_job == {"rack": ["r20", "r21"], "pref": ["r10", "r11"]}
    model = AllocationModel(inst, POLICY)
    model.hint({}, {})
    sol = model._fallback_plan(Solution("UNKNOWN", 0.0, 0.0, 0.0))
    placements, _ = decode(inst, sol)
    assert sol.status == "FEASIBLE"
    assert sorted((p.job, p.node) for p in placements) == [
        ("ns/pref", "r10"),
        ("ns/pref", "r11"),
        ("ns/rack", "r20"),
        ("ns/rack", "r21"),
    ]


# -- gpualloc plan -o table ------------------------------------------------------------
def _k8s_node(name: str, rack: str) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", ZONE: "z", RACK: rack}
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": {**labels, "nvidia.com/gpu.memory": "81559"}},
        "status": {"allocatable": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8"}},
    }


def test_plan_table_shows_the_domains_each_gang_got(tmp_path: Path) -> None:
    nodes = [_k8s_node(f"{r}-{i}", r) for r in ("r1", "r2") for i in range(2)]
    jobs = [
        job_obj({"required": RACK}) | {"metadata": {"name": "g", "namespace": "ns"}},
        job_obj({"required": CLIQUE}) | {"metadata": {"name": "typo", "namespace": "ns"}},
    ]
    policy = {"kind": "AllocationPolicy", "metadata": {"name": "default"}}
    policy["spec"] = {"topology": {"levels": [ZONE, RACK]}}
    for name, docs in (("nodes", nodes), ("jobs", jobs), ("policy", [policy])):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    args = [f"--{n}={tmp_path / n}.yaml" for n in ("nodes", "jobs", "policy")]
    result = CliRunner().invoke(main, ["plan", *args, "-o", "table"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("ns/g "))
    assert row.endswith("in 1 rack (z/r1)") or row.endswith("in 1 rack (z/r2)"), row
    typo = next(line for line in result.output.splitlines() if line.startswith("ns/typo"))
    assert f"refused: spec.topology.required: {CLIQUE} is not a topology level" in typo
