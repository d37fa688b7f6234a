"""The pod watch: which pod changes can change the best plan.

Pods change by the thousand in a burst (created, bound, marked running). Kopf's per-event
machinery (an object worker, loggers, cause detection) cost more of the operator's CPU than
creating the pods did, on a machine where the apiserver needs that CPU, so pods are watched
by this plain stream instead: parse each event and poke the loop only when the pod's
fingerprint changed. Like the Kopf handlers it only wakes the loop; rounds read afresh.
(hack/bench_operator.py times bindings with the same watch.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gpualloc.k8s.client import Kube, WatchExpired

log = logging.getLogger("gpualloc.podwatch")
Obj = dict[str, Any]
Notify = Callable[[str, Obj], object]  # (event type, pod), called on the watch's thread


def pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"pod/{meta.get('namespace')}/{meta.get('name')}"


def pod_fingerprint(event_type: str | None, pod: Obj) -> Any:
    """What about a pod matters to the plan (None: gone). Bound, finished, failed, being
    deleted: capacity changed. Running after bound: no news."""
    if event_type == "DELETED":
        return None
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    phase = status.get("phase")
    return (
        spec.get("nodeName"),
        phase if phase in ("Succeeded", "Failed") else None,
        bool(meta.get("deletionTimestamp")),
    )


class PodWatch:
    """Runs in a thread: LIST, then WATCH from its version; LIST again when the version
    expired or the stream failed."""

    def __init__(self, kube: Kube, notify: Notify, timeout_seconds: int = 60) -> None:
        self.kube = kube
        self.notify = notify
        self.timeout_seconds = timeout_seconds
        self.stop = threading.Event()
        self.listed = threading.Event()  # the first LIST is in: no later change is missed

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="pod-watch", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                if version is None:
                    pods, version = self.kube.list_pods_versioned()
                    for pod in pods:
                        self.notify("ADDED", pod)
                    self.listed.set()
                for event in self.kube.watch_pods(version, self.timeout_seconds):
                    if self.stop.is_set():
                        return
                    pod = event["object"]
                    version = pod["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.notify(event["type"], pod)
            except WatchExpired:
                version = None
            except Exception as err:  # apiserver restarting, connection dropped: list again
                log.warning("pod watch failed (%s); listing again in 1s", err)
                version = None
                self.stop.wait(1)
