"""Exported Prometheus metrics and the Prometheus query client."""
