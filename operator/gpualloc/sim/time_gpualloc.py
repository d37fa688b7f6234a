"""gpualloc in the time-driven simulator: the controller's own decide step, every round.

The simulated cluster is kept as the Kubernetes objects the controller's informers would
hold (Node, LLMTrainingJob, Pod, Service dicts, built once and changed as the API server
would change them); each round builds a `ClusterState` from them, calls
`controller.decide.decide` with the previous plan (and the previous round's memo of job
parses), as `controller/reconcile.py` does, and
carries out its writes as the API server, kube-scheduler and the kubelet would:
- `CreatePod(placed=True)` and `PinPod`: the pod is bound to the node its affinity names at
  once (kube-scheduler's bind and the kubelet's start take no simulated time);
- `CreatePod(placed=False)`: a gated pod, queued;
- `DeletePod`: the pod shuts down for its grace period (the Eviction API's for `evict`, 30 s
  for the pod default), holding its GPUs, then is gone;
- `CreateService` and `PatchJobStatus` are stored (decide reads them back); Events and the
  policy's status are dropped.
Nothing of the planning is copied here: which job goes where is decide's alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpualloc.controller.decide import Decision, decide, iso
from gpualloc.controller.pods import replica_index
from gpualloc.controller.state import (
    ClusterState,
    CreatePod,
    CreateService,
    DeletePod,
    PatchJobStatus,
    PinPod,
)
from gpualloc.k8s.convert import GPU_RESOURCE, MEMORY_LABEL, PRODUCT_LABEL, committed_node
from gpualloc.model import Plan
from gpualloc.sim.timeline import Action, Bind, Delete, SimJob, SimNode, Simulation

Obj = dict[str, Any]
POD_DEFAULT_GRACE = 30.0  # a pod's terminationGracePeriodSeconds when it sets none


def policy_object(time_limit: float = 2.0, **spec: Any) -> Obj:
    """The AllocationPolicy `default` the simulated controller reads."""
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "AllocationPolicy",
        "metadata": {"name": "default"},
        "spec": {"solver": {"timeLimitSeconds": time_limit}, **spec},
    }


def node_object(node: SimNode) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {PRODUCT_LABEL: node.product, MEMORY_LABEL: str(node.gpu_memory_mib)},
        },
        "spec": {},
        "status": {"allocatable": {GPU_RESOURCE: str(node.gpus), "cpu": "96", "memory": "1Ti"}},
    }


def job_object(job: SimJob, checkpoint_seconds: float | None = None) -> Obj:
    """The LLMTrainingJob a user would submit: gang shape, priority and an estimate; never
    the true duration. With `checkpoint_seconds`, it is movable and says how often it
    checkpoints (defragmentation may move it)."""
    movable = (
        {"movable": True, "checkpoint": {"intervalSeconds": round(checkpoint_seconds)}}
        if checkpoint_seconds
        else {}
    )
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "LLMTrainingJob",
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "uid": f"uid-{job.namespace}-{job.name}",
            "generation": 1,
            "creationTimestamp": iso(job.arrival),
        },
        "spec": {
            "workers": job.workers,
            "gpusPerWorker": job.gpus_per_worker,
            "priority": job.priority,
            "preemptible": job.preemptible,
            "estimatedGPUHours": round(job.estimated_gpu_hours, 3),
            "template": {"spec": {"containers": [{"name": "train", "image": "trainer"}]}},
            **movable,
        },
        "status": {},
    }


def apply_patch(obj: Obj, ops: Sequence[Obj]) -> None:
    """A JSON patch of `add`/`replace` operations (what PinPod sends), applied in place."""
    for op in ops:
        *parents, last = op["path"].strip("/").split("/")
        target: Any = obj
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if isinstance(target, list):
            target[int(last)] = op["value"]
        else:
            target[last] = op["value"]


class GpuallocScheduler:
    """The Scheduler of sim/timeline.py that is the controller's decide step."""

    name = "gpualloc"

    def __init__(
        self,
        nodes: Sequence[SimNode],
        policy: Obj | None = None,
        movable_checkpoint_seconds: float | None = None,
    ) -> None:
        """`movable_checkpoint_seconds`: every job is movable and checkpoints this often
        (the defragmentation variant); None: no job is."""
        self.policy = policy if policy is not None else policy_object()
        self.checkpoint = movable_checkpoint_seconds
        self.nodes = tuple(node_object(n) for n in nodes)
        self.jobs: dict[str, Obj] = {}  # job key -> LLMTrainingJob
        self.pods: dict[str, Obj] = {}  # namespace/name -> Pod
        self.pod_gone_at: dict[str, float] = {}  # terminating pod -> when its grace ends
        self.services: dict[str, Obj] = {}  # job key -> its headless Service
        self.previous: Plan | None = None
        self.last: Decision | None = None
        self.solve_seconds = 0.0
        self.statuses: dict[str, int] = {}  # solver status -> rounds
        self._uids = 0
        self._version = 0  # resourceVersion, bumped on every change as the API server does

    def wake_at(self) -> float | None:
        return None  # pods bind at once: no bind deadline to recheck

    def state(self, sim: Simulation) -> ClusterState:
        """What the informers would hold now."""
        now = sim.now
        for key in [k for k in self.jobs if k not in sim.active]:  # finished: deleted
            del self.jobs[key]
            self.services.pop(key, None)
        for job in sim.active.values():
            if job.key not in self.jobs:
                self.jobs[job.key] = job_object(job, self.checkpoint)
                self._changed(self.jobs[job.key])
        for name in [p for p, at in self.pod_gone_at.items() if at <= now]:
            del self.pod_gone_at[name]
            self.pods.pop(name, None)
        for name in [p for p, pod in self.pods.items() if _job_key(pod) not in self.jobs]:
            del self.pods[name]  # a finished job's pods go with it
            self.pod_gone_at.pop(name, None)
        return ClusterState(
            nodes=self.nodes,
            pods=tuple(self.pods.values()),
            jobs=tuple(self.jobs.values()),
            services=tuple(self.services.values()),
            policy=self.policy,
            now=now,
        )

    def round(self, sim: Simulation) -> list[Action]:
        memo = self.last.memo if self.last is not None else None
        decision = decide(self.state(sim), self.previous, memo)
        self.previous, self.last = decision.plan, decision
        self.solve_seconds += decision.plan.solve_seconds
        self.statuses[decision.plan.status] = self.statuses.get(decision.plan.status, 0) + 1
        return self.carry_out(decision, sim.now)

    def carry_out(self, decision: Decision, now: float) -> list[Action]:
        """Apply the writes to the stored objects; the bindings and deletions for the sim."""
        actions: list[Action] = []
        for write in decision.writes:
            if isinstance(write, DeletePod):
                actions += self._delete(write, now)
            elif isinstance(write, PinPod):
                pod = self.pods[f"{write.namespace}/{write.name}"]
                apply_patch(pod, write.patch)
                actions.append(self._bind(write.job, pod, now))
            elif isinstance(write, CreatePod):
                pod = write.pod
                self._uids += 1
                pod["metadata"]["uid"] = f"pod-{self._uids}"
                pod["status"] = {"phase": "Pending"}
                self._changed(pod)
                self.pods[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"] = pod
                if write.placed:
                    actions.append(self._bind(write.job, pod, now))
            elif isinstance(write, CreateService):
                self.services[write.job] = write.service
            elif isinstance(write, PatchJobStatus) and write.job in self.jobs:
                self.jobs[write.job]["status"] = write.status
                self._changed(self.jobs[write.job])
        return actions

    def _changed(self, obj: Obj) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def _bind(self, job: str, pod: Obj, now: float) -> Bind:
        node = committed_node(pod)
        if node is None:
            raise ValueError(f"pod {pod['metadata']['name']} placed without a node")
        pod["spec"]["nodeName"] = node
        pod["status"] = {"phase": "Running", "startTime": iso(now)}
        self._changed(pod)
        return Bind(job, replica_index(pod), node)

    def _delete(self, write: DeletePod, now: float) -> list[Action]:
        name = f"{write.namespace}/{write.name}"
        pod = self.pods.get(name)
        if pod is None:
            return []
        if not pod["spec"].get("nodeName"):
            del self.pods[name]  # never bound: gone at once
            return []
        grace = POD_DEFAULT_GRACE if write.grace_seconds is None else float(write.grace_seconds)
        if grace <= 0:
            del self.pods[name]
        else:
            pod["metadata"]["deletionTimestamp"] = iso(now + grace)  # when it must be gone
            self._changed(pod)
            self.pod_gone_at[name] = now + grace
        return [Delete(write.job, replica_index(pod), grace, write.evict)]


def _job_key(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta['namespace']}/{meta['ownerReferences'][0]['name']}"
