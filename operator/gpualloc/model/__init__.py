"""Pure data: nodes, pods, jobs, policy, snapshot and plan."""
