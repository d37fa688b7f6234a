"""Pure CP-SAT planner, greedy baselines and explanations. Imports nothing from Kubernetes."""
