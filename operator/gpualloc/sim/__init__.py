"""Trace-replay simulator and benchmarks (no cluster)."""
