"""Between lexicographic stages every variable is hinted at its value in the last solution,
copied at once (solver/lexicographic.py): the same hint the per-variable `add_hint` wrote."""

from __future__ import annotations

import pytest
from ortools.sat.python import cp_model

from gpualloc.solver.lexicographic import _hint_solution

pytestmark = pytest.mark.unit


def test_the_copied_hint_is_the_per_variable_hint() -> None:
    model = cp_model.CpModel()
    xs = [model.new_int_var(0, 9, f"x{i}") for i in range(6)]
    flags = [model.new_bool_var(f"b{i}") for i in range(3)]
    model.add(sum(xs) <= 20)
    model.add(xs[0] >= 3 * flags[0] + 2)
    model.maximize(sum((i + 1) * x for i, x in enumerate(xs)) + sum(flags))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(model) == cp_model.OPTIMAL

    _hint_solution(model, solver)
    copied = (list(model.proto.solution_hint.vars), list(model.proto.solution_hint.values))
    model.clear_hints()  # type: ignore[no-untyped-call]
    for i in range(len(model.proto.variables)):
        var = model.get_int_var_from_proto_index(i)
        model.add_hint(var, solver.value(var))
    expected = (list(model.proto.solution_hint.vars), list(model.proto.solution_hint.values))
    assert copied == expected and len(copied[0]) == 9
