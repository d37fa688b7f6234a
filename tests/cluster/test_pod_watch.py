"""The operator's pod watch (outside Kopf) against the real apiserver: it wakes the planning
loop when a pod is bound or deleted. (An expired resourceVersion, which makes it list again,
cannot be provoked on a young cluster: the apiserver keeps 75 s of watch history.)"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from gpualloc.controller.podwatch import PodWatch, pod_fingerprint, pod_key
from gpualloc.k8s.client import Kube as Client
from tests.cluster.conftest import Kube
from tests.cluster.test_local_cluster import gpu_pod

pytestmark = pytest.mark.cluster


def test_binding_and_deletion_wake_the_loop(kube: Kube, namespace: str) -> None:
    seen: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def notify(event_type: str, pod: dict[str, Any]) -> None:
        with lock:
            seen.append((pod_key(pod), pod_fingerprint(event_type, pod)))

    def fingerprints() -> list[Any]:
        with lock:
            return [fp for key, fp in seen if key == f"pod/{namespace}/watched"]

    watch = PodWatch(Client(kube.api_client()), notify, timeout_seconds=5)
    watch.start()
    try:
        kube.core.create_namespaced_pod(namespace, gpu_pod("watched", 1))
        bound = kube.wait_for(
            lambda: [fp for fp in fingerprints() if fp and fp[0]], what="the bind to be seen"
        )
        node = kube.core.read_namespaced_pod("watched", namespace).spec.node_name
        assert bound[0][0] == node
        kube.core.delete_namespaced_pod("watched", namespace, grace_period_seconds=0)
        kube.wait_for(lambda: fingerprints()[-1] is None, what="the deletion to be seen")
    finally:
        watch.stop.set()
