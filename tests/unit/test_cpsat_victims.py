"""A running job whose eviction can free nothing anyone may use gets no eviction variable
(solver/cpsat.py, `_useless_victims`): the plans are as good in every objective as with it,
and a cluster of one priority level has no eviction stage at all."""

from __future__ import annotations

import random

import pytest

from gpualloc.model import Policy, RunningPod, Snapshot
from gpualloc.solver.cpsat import AllocationModel
from gpualloc.solver.instance import build_instance
from gpualloc.solver.lexicographic import solve_lexicographic
from tests.unit.builders import gang, inference, node, running, snap

pytestmark = pytest.mark.unit
POLICY = Policy(time_limit_seconds=10, num_workers=1)


def _values(s: Snapshot, prune: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """Each objective's value in the final plan (stages may fold differently)."""
    with monkeypatch.context() as patch:
        if not prune:
            patch.setattr(AllocationModel, "_useless_victims", lambda self: set())
        model = AllocationModel(build_instance(s, POLICY), POLICY)
    objectives = model.objectives()
    solver, _ = solve_lexicographic(
        model.model, objectives, time_limit=10, relative_gap=0.0, num_workers=1
    )
    assert solver is not None
    return {o.name: float(solver.value(o.expr)) for o in objectives}


def _random_cluster(rng: random.Random) -> Snapshot:
    nodes = [node(f"n{i}") for i in range(rng.randint(2, 5))]
    pods: list[RunningPod] = []
    jobs = []
    for i, n in enumerate(nodes):
        for r in range(rng.randint(0, 2)):
            used = rng.choice([1, 2, 4])
            name = f"r{i}-{r}"
            cpu = rng.choice([0, 0, 40_000])
            jobs.append(
                inference(
                    name,
                    1,
                    used,
                    priority=rng.choice([0, 0, 5]),
                    preemptible=rng.random() < 0.7,
                    created=-1 - r,
                    cpu_milli=cpu,
                )
            )
            pods.append(running(name, n.name, used, cpu_milli=cpu))
    for i in range(rng.randint(1, 6)):
        size = rng.choice([1, 2, 4, 8])
        workers = 2 if size == 8 and rng.random() < 0.2 else 1
        priority = rng.choice([0, 0, 0, 5])
        cpu = rng.choice([0, 0, 30_000])
        jobs.append(
            gang(
                f"j{i}",
                workers,
                size,
                priority=priority,
                created=rng.randint(0, 99),
                cpu_milli=cpu,
            )
        )
    return snap(nodes, jobs, pods)


def test_without_useless_victims_every_objective_is_as_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(11)
    pruned_some = 0
    for _ in range(150):
        s = _random_cluster(rng)
        full = _values(s, prune=False, monkeypatch=monkeypatch)
        lean = _values(s, prune=True, monkeypatch=monkeypatch)
        if "evictions" in full and "evictions" not in lean:
            pruned_some += 1
            assert full.pop("evictions") == 0.0  # no plan of the full model evicts anyone
        assert full == lean, s
    assert pruned_some >= 20  # the property was exercised, not skipped


def test_one_priority_level_has_no_eviction_stage() -> None:
    # every node busy with preemptible jobs, a gang waiting at the same priority: no
    # eviction can serve it (a victim's GPUs go to higher priority only)
    s = snap(
        [node("n0"), node("n1")],
        [
            inference("a", 1, 6, preemptible=True),
            inference("b", 1, 4, preemptible=True),
            gang("wait", 1, 4, created=5),
        ],
        [running("a", "n0", 6), running("b", "n1", 4)],
    )
    model = AllocationModel(build_instance(s, POLICY), POLICY)
    assert model.e == {}
    assert "evictions" not in [o.name for o in model.objectives()]
    assert model.solve().new_replicas == {2: 1}  # the gang takes n1's 4 free GPUs


def test_a_victim_whose_cpu_a_waiting_job_needs_keeps_its_variable() -> None:
    # n0: 4 GPUs free but all its CPU held by the running job: evicting it (same priority)
    # is the only way to place the 4-GPU job, so the model must still be able to
    s = snap(
        [node("n0", cpu_milli=8000)],
        [
            inference("hog", 1, 1, preemptible=True, cpu_milli=8000),
            gang("wait", 1, 4, created=5, cpu_milli=1000),
        ],
        [running("hog", "n0", 1, cpu_milli=8000)],
    )
    model = AllocationModel(build_instance(s, POLICY), POLICY)
    assert list(model.e) == [0]
