"""GPU-device-level sharing solver (pure): fractional GPUs, fragmentation, FGD and the batch
CP-SAT plan. Used by the trace simulator only; the node-level planner does not import it."""
