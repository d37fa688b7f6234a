"""Pure CP-SAT planner, greedy baselines and explanations. Imports nothing from Kubernetes."""

from gpualloc.solver.planner import plan

__all__ = ["plan"]
