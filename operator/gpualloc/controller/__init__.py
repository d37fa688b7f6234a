"""Kopf handlers, the reconcile loop, actuation, status and events."""
