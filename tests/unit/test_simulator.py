"""The trace simulator: the openb protocol on small literal traces, device-level packing,
the baselines' choices, the batch planner and the Philly gang benchmark."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gpualloc.cli import main
from gpualloc.model.devices import DevicePlacement, GpuNode, PodRequest
from gpualloc.sim.openb import (
    BatchPlannerBase,
    TraceFormatError,
    crossings,
    read_nodes,
    read_pods,
    replay,
    sample_arrivals,
    unallocated_pct,
)
from gpualloc.sim.philly import Gang, cluster_of, gang_of, place_gpualloc, place_per_pod, score
from gpualloc.sim.policies import GpuallocBatch, make_policy
from gpualloc.solver.devices.bound import allocation_upper_bound
from gpualloc.solver.devices.device_policies import (
    FGD,
    BestFit,
    DevicePolicy,
    FirstFit,
    Spread,
    published_fgd_score,
)
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.fragmentation import Workload, node_fragmentation, typical_workload
from gpualloc.solver.devices.sharing import BatchOptions, _best, one_at_a_time, plan_batch


def gpu_node(name: str, gpus: int = 8, model: str = "A", cpu: int = 64_000) -> GpuNode:
    return GpuNode(name, model, gpus, cpu, 256_000)


def pod(
    name: str,
    gpus: int = 1,
    milli: int = 1000,
    cpu: int = 1000,
    spec: tuple[str, ...] = (),
    mem: int = 1000,
) -> PodRequest:
    return PodRequest(name, cpu, mem, gpus, milli if gpus else 0, spec)


# -- the protocol ----------------------------------------------------------------------


def test_sampling_with_replacement_stops_before_the_arrival_target() -> None:
    pods = [pod("a", 1), pod("b", 2), pod("s", 1, 500), pod("cpu", 0)]
    capacity = 10_000
    drawn = sample_arrivals(pods, capacity, 1.3, seed=7)
    asked = sum(p.gpu_request_milli for p in drawn)
    assert asked <= 1.3 * capacity
    assert asked > 1.3 * capacity - 2000  # one more draw (at most 2 GPUs) would pass it
    assert max(Counter(p.name for p in drawn).values()) > 1  # with replacement
    assert {p.name for p in drawn} <= {"a", "b", "s", "cpu"}


def test_sampling_is_the_seeded_draw_then_the_seeded_shuffle() -> None:
    pods = [pod("a", 1), pod("b", 2), pod("s", 1, 500)]
    rng = random.Random(3)
    expected: list[PodRequest] = []
    asked = 0
    while True:
        p = rng.choice(pods)
        if asked + p.gpu_request_milli > 1.0 * 4000:
            break
        expected.append(p)
        asked += p.gpu_request_milli
    rng.shuffle(expected)
    assert sample_arrivals(pods, 4000, 1.0, seed=3) == expected
    again = sample_arrivals(pods, 4000, 1.0, seed=3)
    other = [sample_arrivals(pods, 4000, 1.0, seed=s) for s in range(4, 9)]
    assert again == expected
    assert any(o != expected for o in other)


def test_levels_are_read_after_the_arrival_that_crosses_them() -> None:
    arrivals = [pod("a"), pod("cpu", 0), pod("b"), pod("s", 1, 500), pod("c")]
    # request after each arrival: 1000, 1000, 2000, 2500, 3500 of 2000 capacity
    assert crossings(arrivals, 2000, [50, 100, 125, 150, 175]) == {
        50: 0,
        100: 2,
        125: 3,
        150: 4,
        175: 4,
    }


def test_unallocated_pct_is_exactly_as_defined() -> None:
    assert unallocated_pct(0, 6_212_000) == 100.0
    assert unallocated_pct(6_212_000, 6_212_000) == 0.0
    assert unallocated_pct(5_915_000, 6_212_000) == pytest.approx(100 - 5915 / 6212 * 100)


def test_replay_reads_allocated_milli_at_each_level_and_drops_what_does_not_fit() -> None:
    nodes = [gpu_node("n0", gpus=2)]
    arrivals = [pod("a"), pod("s", 1, 300), pod("b"), pod("c")]  # 1000, 1300, 2300, 3300
    result = replay(nodes, arrivals, FirstFit(), levels=[50, 65, 100, 150])
    # a and the share share nothing: the share takes device 1, so b does not fit
    assert result.unallocated_gpu_pct == {"50": 50.0, "65": 35.0, "100": 35.0, "150": 35.0}
    assert [p.name for p in result.failed] == ["b", "c"]
    assert result.allocated_milli == 1300


def test_batches_never_span_a_reading() -> None:
    nodes = [gpu_node("n0", gpus=4)]
    arrivals = [pod(f"p{i}") for i in range(6)]
    seen: list[int] = []

    class Batches(BatchPlannerBase):
        def plan_batch(
            self, state: DeviceState, pods: Sequence[PodRequest]
        ) -> list[DevicePlacement | None]:
            seen.append(len(pods))
            return one_at_a_time(state, pods, BestFit())  # replay commits the plan itself

    result = replay(nodes, arrivals, Batches(), batch=4, levels=[25, 100, 150])
    assert seen == [1, 3, 2]  # cut at the arrivals crossing 25% and 100%
    assert result.unallocated_gpu_pct == {"25": 75.0, "100": 0.0, "150": 0.0}


def test_csv_readers_keep_gpu_nodes_and_parse_specs(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.csv"
    nodes.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nb,64000,262144,2,T4\na,32000,1000,0,\n"
        "c,96000,393216,8,G2\n"
    )
    pods = tmp_path / "pods.csv"
    pods.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        "p0,1000,2000,1,460,T4|G2\np1,2000,100,0,0,\np2,8000,100,2,1000,\n"
    )
    assert [n.name for n in read_nodes(nodes)] == ["b", "c"]
    p0, p1, p2 = read_pods(pods)
    assert (p0.is_share, p0.gpu_spec, p0.gpu_request_milli) == (True, ("T4", "G2"), 460)
    assert (p1.gpu_request_milli, p2.gpu_request_milli, p2.whole_gpus) == (0, 2000, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,cpu_milli,memory_mib,gpu_milli\np,1,1,500\n", "missing column(s) num_gpu"),
        ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,abc,1,1,500\n", ":2: cpu_milli must"),
        ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,-1,500\n", ":2: num_gpu must"),
        ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,2,500\n", ":2: pod p: a share"),
    ],
)
def test_a_malformed_pod_list_is_refused_naming_line_and_column(
    tmp_path: Path, text: str, message: str
) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text(text)
    with pytest.raises(TraceFormatError, match=re.escape(message)):
        read_pods(pods)
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,1000,8,T4\n")
    result = CliRunner().invoke(main, ["simulate", "--nodes", str(nodes), "--pods", str(pods)])
    assert result.exit_code == 2 and message in result.output


# -- device-level packing ------------------------------------------------------------


def test_a_share_must_fit_on_one_device() -> None:
    state = DeviceState([gpu_node("n0", gpus=2)])
    for name in ("a", "b"):
        spot = FirstFit().choose(state, pod(name, 1, 600))
        assert spot is not None
        state.place(pod(name, 1, 600), spot)
    assert state.gpu_left[0].tolist() == [400, 400]
    # 800 milli are free in total, but no single GPU has 500
    assert FirstFit().choose(state, pod("c", 1, 500)) is None
    assert not state.fits(pod("d", 1))[0]


def test_shares_pack_onto_one_gpu_and_whole_gpus_need_free_devices() -> None:
    state = DeviceState([gpu_node("n0", gpus=2)])
    for name, milli in (("a", 500), ("b", 500)):
        spot = BestFit().choose(state, pod(name, 1, milli))
        assert spot == DevicePlacement(0, (0,))
        state.place(pod(name, 1, milli), spot)
    assert state.gpu_left[0].tolist() == [0, 1000]
    assert BestFit().choose(state, pod("w", 2)) is None
    assert BestFit().choose(state, pod("w", 1)) == DevicePlacement(0, (1,))


def test_gpu_spec_restricts_models() -> None:
    state = DeviceState([gpu_node("a0", model="T4"), gpu_node("b0", model="V100")])
    picky = pod("p", 1, spec=("V100",))
    for policy in (FirstFit(), BestFit(), Spread()):
        spot = policy.choose(state, picky)
        assert spot is not None and state.nodes[spot.node].name == "b0"
    assert FirstFit().choose(state, pod("x", 1, spec=("A100",))) is None


def test_cpu_and_memory_are_constraints() -> None:
    state = DeviceState([gpu_node("n0", gpus=8, cpu=4000)])
    assert FirstFit().choose(state, pod("hungry", 1, cpu=5000)) is None
    assert FirstFit().choose(state, pod("fat", 1, mem=300_000)) is None
    assert FirstFit().choose(state, pod("ok", 1, cpu=4000)) is not None


def _tiny() -> DeviceState:
    state = DeviceState([gpu_node("n0"), gpu_node("n1"), gpu_node("n2", gpus=2, cpu=16_000)])
    state.place(pod("busy", 4, cpu=32_000), DevicePlacement(0, (0, 1, 2, 3)))
    return state


def test_first_fit_takes_the_first_node_that_fits() -> None:
    assert FirstFit().choose(_tiny(), pod("p")) == DevicePlacement(0, (4,))


def test_best_fit_takes_the_tightest_node() -> None:
    # left after: n0 3 GPUs / 31 CPU, n1 7 / 63, n2 1 / 15 -> n2 is tightest
    assert BestFit().choose(_tiny(), pod("p")) == DevicePlacement(2, (0,))


def test_spread_takes_the_emptiest_node() -> None:
    assert Spread().choose(_tiny(), pod("p")) == DevicePlacement(1, (0,))


def test_fgd_fills_the_gap_a_share_would_otherwise_leave() -> None:
    state = DeviceState([gpu_node("n0", gpus=2), gpu_node("n1", gpus=2)])
    state.place(pod("half", 1, 500), DevicePlacement(1, (1,)))
    workload = typical_workload([pod("w1"), pod("s", 1, 500)], state.models)
    # a second half GPU completes n1's device 1; anywhere else it would break a whole GPU
    assert FGD(workload).choose(state, pod("s", 1, 500)) == DevicePlacement(1, (1,))


def test_fragmentation_counts_free_gpus_the_workload_cannot_use() -> None:
    state = DeviceState([gpu_node("n0", gpus=2)])
    workload = typical_workload([pod("w2", 2)], state.models)  # only 2-GPU pods
    assert node_fragmentation(state.gpu_left, state.cpu_left, state.model, workload)[0] == 0
    state.place(pod("s", 1, 100), DevicePlacement(0, (0,)))
    # 1900 milli free, but no 2-GPU pod fits: all of it is fragment
    assert node_fragmentation(state.gpu_left, state.cpu_left, state.model, workload)[0] == 1900


# -- the batch planner -----------------------------------------------------------------


def _allocated(state: DeviceState, pods: list[PodRequest], policy: DevicePolicy) -> int:
    trial = state.copy()
    total = 0
    for p in pods:
        spot = policy.choose(trial, p)
        if spot is not None:
            trial.place(p, spot)
            total += p.gpu_request_milli
    return total


@pytest.mark.parametrize("seed", range(6))
def test_batch_planner_never_places_less_than_best_fit(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [
        gpu_node(f"n{i}", gpus=rng.choice([1, 2, 4]), cpu=rng.choice([8000, 16000]))
        for i in range(4)
    ]
    state = DeviceState(nodes)
    shapes = [pod("w1", cpu=3000), pod("w2", 2, cpu=5000), pod("s3", 1, 300, cpu=2000)]
    shapes += [pod("s7", 1, 700, cpu=2000), pod("c", 0, cpu=4000)]
    pods = [rng.choice(shapes) for _ in range(rng.randint(6, 12))]
    workload = typical_workload(shapes, state.models)
    where = plan_batch(state, pods, workload, BatchOptions(time_limit_seconds=1.0))
    trial = state.copy()
    for p, spot in zip(pods, where, strict=True):
        if spot is not None:
            trial.place(p, spot)  # raises if the plan overcommits anything
    placed = sum(p.gpu_request_milli for p, w in zip(pods, where, strict=True) if w)
    assert placed >= _allocated(state, pods, BestFit())


def test_batch_planner_packs_jointly_where_one_at_a_time_does_not() -> None:
    # one free GPU; arrivals 300, 700, 700: greedy-in-order takes 300 then one 700 (1000);
    # the best use of the batch is also 1000 milli, never less, and never overcommitted
    state = DeviceState([gpu_node("n0", gpus=1)])
    pods = [pod("a", 1, 300), pod("b", 1, 700), pod("c", 1, 700)]
    workload = typical_workload(pods, state.models)
    where = plan_batch(state, pods, workload)
    assert sum(p.gpu_request_milli for p, w in zip(pods, where, strict=True) if w) == 1000


def test_upper_bound_is_the_best_device_packing() -> None:
    # 3 devices: shares 600, 600, 400, 400, 500 and one whole GPU; best: 600+400, 600+400,
    # and the whole GPU -> 3000 (the 500 is left out)
    pods = [pod(f"s{m}{i}", 1, m) for i, m in enumerate([600, 600, 400, 400, 500])]
    assert allocation_upper_bound([*pods, pod("w")], [gpu_node("n0", gpus=3)]) == 3000


# -- the CLI contract ------------------------------------------------------------------


def test_simulate_json_contract(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.csv"
    nodes.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(f"n{i},64000,262144,{g},T4\n" for i, g in enumerate([2, 4, 8, 8]))
    )
    pods = tmp_path / "pods.csv"
    pods.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        "p0,4000,8000,1,1000,\np1,2000,4000,1,460,\np2,8000,8000,2,1000,\n"
        "p3,1000,1000,0,0,\np4,3000,4000,1,810,\n"
    )
    for policy in ("gpualloc", "fgd", "best-fit", "first-fit", "spread"):
        result = CliRunner().invoke(
            main,
            [
                *("simulate", "--nodes", str(nodes), "--pods", str(pods), "--seed", "42"),
                *("--policy", policy, "--batch", "4", "-o", "json", "--no-progress"),
            ],
        )
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["policy"] == policy and out["seed"] == 42
        assert list(out["unallocated_gpu_pct"]) == [str(v) for v in range(90, 131, 5)]
        assert all(0 <= v <= 100 for v in out["unallocated_gpu_pct"].values())
        assert isinstance(out["seconds"], float)


# -- Philly gangs ----------------------------------------------------------------------


def test_gangs_split_into_identical_workers_of_at_most_eight_gpus() -> None:
    assert gang_of("j", 4) == Gang("j", 1, 4)
    assert gang_of("j", 16) == Gang("j", 2, 8)
    assert gang_of("j", 12) == Gang("j", 2, 6)


def test_gang_unaware_placement_strands_gpus_and_gpualloc_does_not() -> None:
    nodes = cluster_of(2)
    gangs = [Gang("philly/a", 1, 6), Gang("philly/b", 2, 8), Gang("philly/c", 1, 2)]
    per_pod = score(gangs, place_per_pod(nodes, gangs, "best-fit"), 16)
    assert per_pod["stranded_gpus"] == 8 and per_pod["half_placed_gangs"] == 1
    ours = score(gangs, place_gpualloc(nodes, gangs, batch=3), 16)
    assert ours["stranded_gpus"] == 0
    assert ours["allocated_gpu_ratio"] >= per_pod["allocated_gpu_ratio"]


# -- FGD as published, and gpualloc on top of it ----------------------------------------


def test_published_fgd_score_is_the_simulators_integer_sigmoid() -> None:
    growth = np.array([[0.0, 1000.0, -1000.0, 30.0, -30.0, np.inf]])
    # int(100 x sigmoid(-growth in GPUs)); -1 where the pod does not fit
    assert published_fgd_score(growth).tolist() == [[50, 26, 73, 49, 50, -1]]


def test_published_fgd_gives_near_ties_to_the_first_node() -> None:
    # a 200-milli share: on n1's device 0 F shrinks by 187 milli, on n0's by 167; both
    # score 54, so the published FGD takes n0 (first by name) where the exact one takes n1
    state = DeviceState([gpu_node("n0", gpus=2), gpu_node("n1", gpus=2)])
    state.place(pod("a", 1, 500), DevicePlacement(0, (0,)))
    state.place(pod("b", 1, 300), DevicePlacement(1, (0,)))
    workload = typical_workload([pod("w")] * 14 + [pod("s", 1, 500)], state.models)
    share = pod("t", 1, 200)
    assert FGD(workload).choose(state, share) == DevicePlacement(1, (0,))
    assert FGD(workload, integer_score=True).choose(state, share) == DevicePlacement(0, (0,))


def test_cpu_only_pods_join_the_target_when_asked_all_free_gpu_their_fragment() -> None:
    state = DeviceState([gpu_node("n0", gpus=2)])
    pods = [pod("c", 0, cpu=4000), pod("w")]
    assert len(typical_workload(pods, state.models).prob) == 1
    with_cpu = typical_workload(pods, state.models, cpu_pods=True)
    assert sorted(with_cpu.num_gpu.tolist()) == [0, 1]
    # the CPU-only pod runs here, yet to it both free GPUs are fragment (half the weight)
    frag = node_fragmentation(state.gpu_left, state.cpu_left, state.model, with_cpu)
    assert frag[0] == pytest.approx(1000.0)


def test_fgd_policy_is_the_published_one_and_gpualloc_starts_from_it() -> None:
    state = DeviceState([gpu_node("n0", gpus=2), gpu_node("n1", gpus=2)])
    pod_list = [pod("w"), pod("s", 1, 500), pod("c", 0, cpu=4000)]
    fgd = make_policy("fgd", pod_list, state)
    assert isinstance(fgd, FGD) and fgd.integer_score
    assert 0 in fgd.workload.num_gpu.tolist()  # CPU-only pods in the target
    planner = make_policy("gpualloc", pod_list, state)
    assert isinstance(planner, GpuallocBatch) and planner.options.integer_score
    assert planner.workload.prob.tolist() == fgd.workload.prob.tolist()
    assert planner.workload.num_gpu.tolist() == fgd.workload.num_gpu.tolist()
    # a batch of one is FGD's own choice
    one = [pod("t", 1, 500)]
    assert planner.plan_batch(state, one) == [fgd.choose(state, one[0])]


def _fgd_one_at_a_time(
    state: DeviceState, pods: list[PodRequest], workload: Workload
) -> list[DevicePlacement | None]:
    trial, out = state.copy(), []
    for p in pods:
        spot = FGD(workload, integer_score=True).choose(trial, p)
        if spot is not None:
            trial.place(p, spot)
        out.append(spot)
    return out


def test_with_a_whole_gpu_pod_the_joint_plan_with_less_fragmentation_wins() -> None:
    # FGD puts three half GPUs on the 8-GPU node, one at a time; jointly they go to the
    # 2-GPU node and the 8-GPU node stays whole (F grows by 125 milli less than FGD's +375)
    state = DeviceState([gpu_node("n0", 8), gpu_node("n1", 2), gpu_node("n2", 4)])
    shapes = [pod("w1"), pod("w2", 2), pod("w4", 4), pod("s", 1, 500)]
    workload = typical_workload(shapes, state.models, cpu_pods=True)
    pods = [pod("a", 1, 500), pod("w", 4), pod("b", 1, 500), pod("c", 1, 500)]
    assert [w.node for w in _fgd_one_at_a_time(state, pods, workload) if w] == [0, 2, 0, 0]
    assert [w.node for w in plan_batch(state, pods, workload) if w] == [1, 2, 1, 1]


def test_shares_alone_keep_fgds_plan_when_it_places_them_all() -> None:
    state = DeviceState([gpu_node("n0", 8), gpu_node("n1", 2), gpu_node("n2", 4)])
    shapes = [pod("w1"), pod("w2", 2), pod("w4", 4), pod("s", 1, 500)]
    workload = typical_workload(shapes, state.models, cpu_pods=True)
    pods = [pod("a", 1, 500), pod("b", 1, 500), pod("c", 1, 500), pod("d", 0, cpu=2000)]
    assert plan_batch(state, pods, workload) == _fgd_one_at_a_time(state, pods, workload)


def test_a_joint_plan_replaces_fgd_where_it_places_more() -> None:
    # two single-GPU nodes; a half GPU then two whole GPUs: one at a time, the half takes a
    # GPU and the second whole GPU is dropped (1500 milli); jointly, both whole GPUs (2000)
    state = DeviceState([gpu_node("n0", gpus=1), gpu_node("n1", gpus=1)])
    pods = [pod("s", 1, 500), pod("w1"), pod("w2")]
    workload = typical_workload(pods, state.models, cpu_pods=True)
    fgd = _fgd_one_at_a_time(state, pods, workload)
    assert sum(p.gpu_request_milli for p, w in zip(pods, fgd, strict=True) if w) == 1500
    where = plan_batch(state, pods, workload)
    assert sum(p.gpu_request_milli for p, w in zip(pods, where, strict=True) if w) == 2000


def test_among_shares_a_plan_placing_more_is_refused_when_it_fragments_more_than_it_adds() -> None:
    # the coming pods are whole GPUs: a 300-milli share that breaks a free GPU leaves 700
    # milli they cannot use, more than the 300 it adds, so the plan that drops it stays
    # (openb gpushare100 seed 48: +470 placed, +1,739 fragment, 1,150 milli less at 90%)
    state = DeviceState([gpu_node("n0", gpus=1), gpu_node("n1", gpus=1)])
    state.place(pod("old", 1, 700), DevicePlacement(1, (0,)))
    workload = typical_workload([pod("w1")], state.models, cpu_pods=True)
    pods = [pod("a", 1, 300), pod("b", 1, 300)]
    drops_b = [DevicePlacement(1, (0,)), None]
    places_both = [DevicePlacement(1, (0,)), DevicePlacement(0, (0,))]
    assert _best(state, pods, workload, None, [drops_b, places_both], False) is drops_b
    # where the extra share fills a gap instead (F shrinks), placing more wins
    state.place(pod("old2", 1, 700), DevicePlacement(0, (0,)))
    assert _best(state, pods, workload, None, [drops_b, places_both], False) is places_both
