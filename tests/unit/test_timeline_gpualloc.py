"""gpualloc in the time-driven simulator is the controller's decide step: the same decision
on the same state, hand-computed JCTs through the event loop, and the CLI's --trace mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gpualloc.cli import main
from gpualloc.controller.decide import decide
from gpualloc.controller.pods import build_pod, pinned
from gpualloc.controller.state import ClusterState, CreatePod, PinPod
from gpualloc.sim.philly import TraceJob
from gpualloc.sim.time_gpualloc import GpuallocScheduler, job_object, policy_object
from gpualloc.sim.time_run import TraceOptions, prepare, sim_jobs
from gpualloc.sim.timeline import Bind, SimJob, SimNode, Simulation, job_of

pytestmark = pytest.mark.unit
Obj = dict[str, Any]


def job(row: int, at: float, gpus: int, seconds: float, priority: int = 0) -> SimJob:
    return job_of(TraceJob(row, at, seconds, gpus, "a"), gpus * seconds / 3600, priority)


def nodes(count: int) -> list[SimNode]:
    return [SimNode(f"n{i}", 8) for i in range(count)]


# -- the same decision as the controller's ------------------------------------------------
def literal_node(name: str) -> Obj:
    """A Node as the informer holds it (what test_decide.py writes out)."""
    return {
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": "NVIDIA-P100", "nvidia.com/gpu.memory": "16384"},
        },
        "spec": {},
        "status": {"allocatable": {"nvidia.com/gpu": "8", "cpu": "96", "memory": "1Ti"}},
    }


def literal_job(name: str, created: str, workers: int, gpus: int, estimate: float) -> Obj:
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "LLMTrainingJob",
        "metadata": {
            "name": name,
            "namespace": "vc-a",
            "uid": f"uid-vc-a-{name}",
            "generation": 1,
            "creationTimestamp": created,
        },
        "spec": {
            "workers": workers,
            "gpusPerWorker": gpus,
            "priority": 0,
            "preemptible": True,
            "estimatedGPUHours": estimate,
            "template": {"spec": {"containers": [{"name": "train", "image": "trainer"}]}},
        },
    }


def test_the_simulator_makes_the_controllers_decision_on_the_same_state() -> None:
    # n0 runs R (6 GPUs); P (2 x 8) and Q (2 GPUs) wait: R's node takes Q, P needs the other
    # two nodes whole
    r, p, q = job(0, 0, 6, 9999), job(1, 10, 16, 3600), job(2, 20, 2, 3600)
    sim = Simulation(nodes(3), [r, p, q], start=0)
    scheduler = GpuallocScheduler(sim.nodes.values())
    sim.now, sim.active = 1.0, {r.key: r}
    sim.apply(scheduler.round(sim))  # through the loop: R bound
    (r_node,) = r.bound.values()
    sim.now, sim.active = 21.0, {r.key: r, p.key: p, q.key: q}
    previous = scheduler.previous
    through_sim = {(a.job, a.replica, a.node) for a in scheduler.round(sim) if isinstance(a, Bind)}

    # the controller's view of that cluster, written out by hand
    jobs = [
        literal_job("job-00000", "1970-01-01T00:00:00Z", 1, 6, 15.0),
        literal_job("job-00001", "1970-01-01T00:00:10Z", 2, 8, 16.0),
        literal_job("job-00002", "1970-01-01T00:00:20Z", 1, 2, 2.0),
    ]
    running = pinned(build_pod(jobs[0], 0, 6, 1), r_node)
    running["spec"]["nodeName"] = r_node
    running["metadata"]["uid"] = "running-0"
    running["status"] = {"phase": "Running"}
    state = ClusterState(
        nodes=tuple(literal_node(f"n{i}") for i in range(3)),
        pods=(running,),
        jobs=tuple(jobs),
        policy=policy_object(2.0),
        now=21.0,
    )
    direct = decide(state, previous)
    by_controller = set()
    for w in direct.writes:
        if isinstance(w, CreatePod) and w.placed:
            meta = w.pod["metadata"]
            node = w.pod["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            by_controller.add((w.job, int(meta["labels"]["gpualloc.io/replica"]), node))
        assert not isinstance(w, PinPod)  # nothing was gated before
    assert through_sim == by_controller
    assert {(k, n) for k, _, n in through_sim} == {
        ("vc-a/job-00002", r_node),
        *(("vc-a/job-00001", n) for n in {"n0", "n1", "n2"} - {r_node}),
    }


def test_the_job_a_scheduler_sees_carries_an_estimate_never_the_duration() -> None:
    spec = job_object(job(0, 0, 4, 7200))["spec"]
    assert set(spec) == {
        "workers",
        "gpusPerWorker",
        "priority",
        "preemptible",
        "estimatedGPUHours",
        "template",
    }
    assert spec["estimatedGPUHours"] == 8.0
    window = prepare(
        TraceOptions(start=0, hours=1, nodes=1),
        [TraceJob(0, 10, 3600, 2, "a"), TraceJob(1, 20, 1800, 1, "b")],
    )
    exact = [j.estimated_gpu_hours for j in sim_jobs(window, TraceOptions(seed=1))]
    noisy = [j.estimated_gpu_hours for j in sim_jobs(window, TraceOptions(estimate_error=0.5))]
    assert exact == [2.0, 0.5] and noisy != exact and all(v > 0 for v in noisy)


# -- through the event loop, by hand ------------------------------------------------------
def test_gpualloc_jcts_by_hand() -> None:
    # as tests/unit/test_timeline.py's FIFO case: A (8 GPUs) at 0 runs 1-101, B (4) and C (4)
    # wait for it and run together from 102
    jobs = [job(0, 0, 8, 100), job(1, 10, 4, 50), job(2, 20, 4, 30)]
    sim = Simulation(nodes(1), jobs, start=0)
    stats = sim.run(GpuallocScheduler(sim.nodes.values()))
    assert [j.finished - j.arrival for j in jobs if j.finished] == [101, 142, 112]
    assert stats.half_placed_gangs == 0 and sim.allocated == 0


def test_gpualloc_preempts_through_the_eviction_and_the_victim_resumes_from_a_checkpoint() -> None:
    # L (priority 0, preemptible) runs from 1; H (priority 100) arrives at 1000: decide evicts
    # L (30 s grace) and places H once L's pod is gone (round at 1032); L lost 400 s of 1000
    # (checkpoints every 600 s) and restarts at 1133, after H, with 3000 s to go
    low, high = job(0, 0, 8, 3600, priority=0), job(1, 1000, 8, 100, priority=100)
    sim = Simulation(nodes(1), [low, high], checkpoint_seconds=600, start=0)
    scheduler = GpuallocScheduler(sim.nodes.values())
    stats = sim.run(scheduler)
    assert [j.finished - j.arrival for j in (low, high) if j.finished] == [4133, 132]
    assert low.runs == [(1, 1001), (1133, 4133)] and low.lost_gpu_seconds == 400 * 8
    assert stats.half_placed_gangs == 0 and scheduler.pods == {}


# -- the CLI ------------------------------------------------------------------------------
def tiny_trace(tmp_path: Path) -> Path:
    path = tmp_path / "philly.csv"
    path.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-01 00:00:00,600,8,4800,aa\n"
        "2017-10-01 00:01:00,300,16,4800,bb\n"
        "2017-10-01 00:02:00,120,1,120,aa\n"
        "2017-10-01 02:00:00,60,1,60,aa\n"  # after the 1-hour window
    )
    return path


def test_simulate_trace_json_contract(tmp_path: Path) -> None:
    args = ["simulate", "--trace", "philly", "--trace-file", str(tiny_trace(tmp_path))]
    args += ["--start", "2017-10-01", "--hours", "1", "--node-count", "2", "-o", "json"]
    args += ["--no-progress", "--policy", "fifo-bestfit,gpualloc", "--time-limit", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["window"]["jobs"] == 3 and out["window"]["gpus"] == 16
    assert list(out["policies"]) == ["fifo-bestfit", "gpualloc"]
    for run in out["policies"].values():
        assert run["finished"] == 3 and run["half_placed_gangs"] == 0
        # A (8 GPUs) runs 1-601 on one node, C (1 GPU) 121-241 on the other; the 2 x 8 gang B
        # needs both whole: 602-902. JCTs 601, 842, 121 s
        assert run["jct_hours"]["mean"] == pytest.approx((601 + 842 + 121) / 3 / 3600, abs=1e-4)
        assert run["run"]["unfinished"] == 0
        assert set(run["fairness"]["per_vc"]) == {"vc-aa", "vc-bb"}
        assert 0 < run["utilisation"] <= 1


def test_simulate_trace_table_plot_and_bad_input(tmp_path: Path) -> None:
    trace = str(tiny_trace(tmp_path))
    png = tmp_path / "out.png"
    base = ["simulate", "--trace", "philly", "--trace-file", trace, "--start", "2017-10-01"]
    base += ["--hours", "1", "--node-count", "2", "--no-progress"]
    result = CliRunner().invoke(main, [*base, "--policy", "all", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "kueue-like" in result.output and "goal" in result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, [*base, "--policy", "fifo"])
    assert bad.exit_code == 2 and "fifo-bestfit" in bad.output
    bad = CliRunner().invoke(main, [*base, "--start", "October"])
    assert bad.exit_code == 2 and "--start" in bad.output
    # the openb mode still needs its two lists
    assert "Missing option '--nodes'" in CliRunner().invoke(main, ["simulate"]).output


def test_a_node_profile_sets_the_cluster(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "pools:\n"
        "  - {count: 1, namePrefix: big-, gpuProduct: H100, gpusPerNode: 8, gpuMemoryMiB: 81559}\n"
        "  - {count: 2, namePrefix: small-, gpuProduct: T4, gpusPerNode: 4, gpuMemoryMiB: 16384}\n"
    )
    args = ["simulate", "--trace", "philly", "--trace-file", str(tiny_trace(tmp_path))]
    args += ["--start", "2017-10-01", "--hours", "1", "-o", "json", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--nodes", str(profile), "--policy", "gpualloc"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # 16 GPUs in all, but the 2 x 8 gang has only one 8-GPU node: it never fits and waits
    assert out["window"]["gpus"] == 16 and out["window"]["nodes"] == 3
    assert out["policies"]["gpualloc"]["run"]["unfinished"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools:\n  - {count: 1}\n")
    result = CliRunner().invoke(main, [*args, "--nodes", str(bad)])
    assert result.exit_code == 2 and "not a node profile" in result.output


def test_defragmentation_moves_one_job_so_a_blocked_gang_runs_at_once() -> None:
    # a and b fill n0, c and d n1; b and c finish at ~600: 4 + 4 free GPUs on two nodes.
    # G (8 GPUs) arrives at 1000. Plain gpualloc: G waits for a or d to finish (10 h).
    # With every job movable (checkpoints every 600 s): d has run less since its last
    # checkpoint than a, so d is moved next to a and G starts within a minute.
    def trace() -> list[SimJob]:
        return [
            job(0, 0, 4, 36000),
            job(1, 0, 4, 600),
            job(2, 5, 4, 600),
            job(3, 5, 4, 36000),
            job(4, 1000, 8, 100),
        ]

    plain = trace()
    sim = Simulation(nodes(2), plain, checkpoint_seconds=600, start=0)
    sim.run(GpuallocScheduler(sim.nodes.values()))
    assert plain[4].first_start is not None and plain[4].first_start > 30000

    moved = trace()
    sim = Simulation(nodes(2), moved, checkpoint_seconds=600, start=0)
    stats = sim.run(GpuallocScheduler(sim.nodes.values(), movable_checkpoint_seconds=600))
    a, d, g = moved[0], moved[3], moved[4]
    assert g.first_start is not None and g.first_start - g.arrival < 60
    assert (a.preemptions, d.preemptions) == (0, 1)
    assert d.lost_gpu_seconds == (1001 - 606) * 4  # the work since its checkpoint at 600 s
    assert stats.half_placed_gangs == 0
