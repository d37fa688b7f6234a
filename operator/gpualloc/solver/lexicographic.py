"""Solve a CP-SAT model for several objectives in strict order.

Consecutive objectives are folded into one weighted sum while the weights stay small
enough for exact integer arithmetic; each such stage is solved, its value is then fixed
(as a lower bound) and the next stage starts from the previous solution as a hint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model, cp_model_helper

# Largest weight product folded into one stage; CP-SAT is exact on int64, this keeps
# objective values well inside the range where its LP relaxation is still precise.
_MAX_STAGE_RANGE = 2**50


class Model(cp_model.CpModel):
    """A CpModel without the camelCase aliases OR-Tools sets on every instance (about 1-2 ms
    a model: one per planning round, one per openb batch); gpualloc calls only the
    snake_case methods."""

    def _add_pre_pep8_methods(self) -> None:
        pass


@dataclass(frozen=True)
class Objective:
    """One term to maximize, with its possible span of values."""

    name: str
    expr: cp_model.LinearExprT
    span: int  # max value - min value; 0 means the term is constant
    # start a stage of its own, so the relative gap limit applies to this term alone
    separate: bool = False
    # a looser gap for tie-breaking terms, so they do not eat the time budget
    min_gap: float = 0.0


@dataclass
class StageResult:
    names: tuple[str, ...]  # the objectives solved together in this stage
    status: str
    objective: float
    bound: float
    seconds: float


def _stages(objectives: list[Objective]) -> list[list[tuple[Objective, int]]]:
    """Group objectives (highest first) into stages of (objective, weight)."""
    stages: list[list[tuple[Objective, int]]] = []
    current: list[Objective] = []
    product = 1
    for obj in objectives:
        if obj.span <= 0:
            continue
        if current and (obj.separate or product * (obj.span + 1) > _MAX_STAGE_RANGE):
            stages.append(_weigh(current))
            current, product = [], 1
        current.append(obj)
        product *= obj.span + 1
    if current:
        stages.append(_weigh(current))
    return stages


def _weigh(objs: list[Objective]) -> list[tuple[Objective, int]]:
    weighted: list[tuple[Objective, int]] = []
    weight = 1
    for obj in reversed(objs):
        weighted.append((obj, weight))
        weight *= obj.span + 1
    return list(reversed(weighted))


def solve_lexicographic(
    model: cp_model.CpModel,
    objectives: list[Objective],
    *,
    time_limit: float,
    relative_gap: float,
    num_workers: int,
    deterministic_time: float | None = None,
) -> tuple[cp_model.CpSolver | None, list[StageResult]]:
    """Returns the solver holding the final solution (None if none was found) and per-stage
    results; the first stage's objective and bound are the headline figures.
    `deterministic_time`: a budget in CP-SAT's deterministic seconds (the same work on any
    machine and load, so a run is repeatable), split evenly over the stages; `time_limit`
    is then only a wall-clock safety cap, split likewise."""
    stages = _stages(objectives) or [[(Objective("feasibility", 0, 1), 1)]]
    deadline = time.monotonic() + time_limit
    results: list[StageResult] = []
    last: cp_model.CpSolver | None = None
    for index, stage in enumerate(stages):
        remaining = deadline - time.monotonic()
        share = remaining / (len(stages) - index)
        if any(obj.min_gap for obj, _ in stage):
            share = min(share, time_limit / 4)  # tie-breakers never take most of the budget
        expr = sum(weight * obj.expr for obj, weight in stage)
        _maximize(model, expr)
        solver = cp_model.CpSolver()
        if deterministic_time is not None:
            solver.parameters.max_deterministic_time = deterministic_time / len(stages)
            share = time_limit / len(stages)
        solver.parameters.max_time_in_seconds = max(0.05, share)
        solver.parameters.relative_gap_limit = max(relative_gap, *(obj.min_gap for obj, _ in stage))
        solver.parameters.num_workers = num_workers
        status = solver.solve(model)
        name = solver.status_name(status)
        tolerance = max((obj.min_gap for obj, _ in stage), default=0.0)
        proven = solver.objective_value >= solver.best_objective_bound
        if name == "OPTIMAL" and not proven and not tolerance:
            name = "FEASIBLE"  # stopped at the policy's gap limit, not proven optimal
        results.append(
            StageResult(
                tuple(obj.name for obj, _ in stage),
                name,
                solver.objective_value if status in _FOUND else 0.0,
                solver.best_objective_bound,
                solver.wall_time,
            )
        )
        if status not in _FOUND:
            break
        last = solver
        if index < len(stages) - 1:  # the next stage keeps this value, starting from here
            model.add(expr >= round(solver.objective_value))
            _hint_solution(model, solver)
    return last, results


def _maximize(model: cp_model.CpModel, expr: cp_model.LinearExprT) -> None:
    """`model.maximize(expr)`, an integer expression's terms written in one call each
    instead of one per term (the same objective; stages and batches set thousands)."""
    if not isinstance(expr, cp_model.LinearExpr) or not expr.is_integer():
        model.maximize(expr)
        return
    flat = cp_model_helper.FlatIntExpr(expr)
    model.clear_objective()  # type: ignore[no-untyped-call]
    objective = model.proto.objective
    objective.vars.extend([v.index for v in flat.vars])
    objective.coeffs.extend([-c for c in flat.coeffs])
    objective.scaling_factor = -1.0
    objective.offset = -flat.offset


_FOUND = (cp_model.OPTIMAL, cp_model.FEASIBLE)


def _hint_solution(model: cp_model.CpModel, solver: cp_model.CpSolver) -> None:
    """Hint every variable at its value in the solver's solution (the next stage starts
    there): the solution vector copied at once, as `add_hint` per variable would write it."""
    model.clear_hints()  # type: ignore[no-untyped-call]
    values = solver.response_proto.solution  # one value per variable, in index order
    hint = model.proto.solution_hint
    hint.vars.extend(range(len(values)))
    hint.values.extend(values)
