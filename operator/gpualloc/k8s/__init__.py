"""Conversions between Kubernetes objects and the model, and the one client module."""
