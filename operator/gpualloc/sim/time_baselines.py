"""Baseline schedulers for the time-driven simulator, under the same event loop as gpualloc.

Each models a scheduler stack people run for GPU training on Kubernetes (what each leaves
out is in docs/benchmarks.md, "Time-driven simulator"). None reads a job's duration or
estimate. Placement, where a baseline places a pod itself, is kube-scheduler's
NodeResourcesFit with the MostAllocated strategy on `nvidia.com/gpu` (the usual GPU-cluster
profile: the fullest node that fits, ties to the first node), i.e. best-fit.

- `fifo-bestfit`: kube-scheduler with the coscheduling plugin. Gangs in FIFO order (priority,
  then arrival); a gang is bound whole or not at all; one that does not fit is passed over
  and later ones may go ahead (kube-scheduler moves on to the next pod; nothing is reserved).
  No preemption.
- `kueue-like`: Kueue with one ClusterQueue per virtual cluster, nominal GPU quota from the
  VC's entitlement, all in one cohort (borrowing without limit, reclaim of borrowed quota),
  BestEffortFIFO, waitForPodsReady (5 min, requeue with backoff); admitted workloads' pods
  are then placed one by one by kube-scheduler (best-fit, not gang-aware).
- `kai-like`: KAI scheduler: queues (virtual clusters) taken furthest below their deserved
  share first, jobs by priority then age, gang best-fit, and a pending job may preempt
  lower-priority preemptible jobs of its own queue.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

from gpualloc.sim.timeline import Action, Bind, Delete, SimJob, SimNode, Simulation

GRACE = 30.0  # preempted pods' grace period, as gpualloc's default policy


class FreeMap:
    """Free GPUs per node, with best-fit lookups in O(GPUs per node)."""

    def __init__(self, nodes: Iterable[SimNode]) -> None:
        nodes = list(nodes)
        self.names = [n.name for n in nodes]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.free = [n.free for n in nodes]
        size = max((n.gpus for n in nodes), default=0) + 1
        self.buckets: list[list[int]] = [[] for _ in range(size)]  # free -> node indexes
        for i, f in enumerate(self.free):
            self.buckets[f].append(i)

    def _move(self, node: int, delta: int) -> None:
        self.buckets[self.free[node]].remove(node)
        self.free[node] += delta
        bisect.insort(self.buckets[self.free[node]], node)

    def take(self, node: int, gpus: int) -> None:
        self._move(node, -gpus)

    def give(self, node: int, gpus: int) -> None:
        self._move(node, gpus)

    def best_fit(self, gpus: int) -> int | None:
        """The node with the fewest free GPUs that fit `gpus` (first by order on ties)."""
        for f in range(gpus, len(self.buckets)):
            if self.buckets[f]:
                return self.buckets[f][0]
        return None

    def place_gang(self, workers: int, gpus: int) -> list[int] | None:
        """Nodes for every worker, best-fit one after another, taken; or None, untouched."""
        picks: list[int] = []
        for _ in range(workers):
            node = self.best_fit(gpus)
            if node is None:
                for n in picks:
                    self.give(n, gpus)
                return None
            self.take(node, gpus)
            picks.append(node)
        return picks

    @property
    def largest(self) -> int:
        return next((f for f in range(len(self.buckets) - 1, 0, -1) if self.buckets[f]), 0)


def bind_gang(job: SimJob, picks: Sequence[int], free: FreeMap) -> list[Action]:
    return [Bind(job.key, i, free.names[n]) for i, n in enumerate(picks)]


def evict(job: SimJob) -> list[Action]:
    return [Delete(job.key, replica, GRACE, evict=True) for replica in sorted(job.bound)]


def fifo_order(jobs: Iterable[SimJob]) -> list[SimJob]:
    return sorted(jobs, key=lambda j: (-j.priority, j.arrival, j.trace.row))


def quotas_of(weights: Mapping[str, float], capacity: int) -> dict[str, int]:
    """GPUs per queue in proportion to `weights`, summing to `capacity` (largest remainder)."""
    total = sum(weights.values()) or 1.0
    exact = {q: capacity * w / total for q, w in weights.items()}
    out = {q: int(v) for q, v in exact.items()}
    rest = capacity - sum(out.values())
    for q in sorted(exact, key=lambda q: (out[q] - exact[q], q))[:rest]:
        out[q] += 1
    return out


def best_fit_in_order(jobs: Iterable[SimJob], free: FreeMap) -> list[Action]:
    """Each gang in turn bound whole by best-fit, or passed over (nothing reserved)."""
    actions: list[Action] = []
    for job in jobs:
        if free.largest == 0:
            break
        picks = free.place_gang(job.workers, job.gpus_per_worker)
        if picks is not None:
            actions += bind_gang(job, picks, free)
    return actions


class FifoBestFit:
    name = "fifo-bestfit"

    def round(self, sim: Simulation) -> list[Action]:
        waiting = fifo_order(j for j in sim.active.values() if j.waiting)
        return best_fit_in_order(waiting, FreeMap(sim.nodes.values()))

    def wake_at(self) -> float | None:
        return None


class KueueLike:
    """Quota admission per ClusterQueue, then kube-scheduler pod by pod."""

    name = "kueue-like"

    def __init__(
        self,
        quotas: Mapping[str, int],
        pods_ready_timeout: float = 300.0,
        backoff_base: float = 60.0,
        backoff_max: float = 3600.0,
    ) -> None:
        self.nominal = dict(quotas)  # namespace (ClusterQueue) -> nominal GPUs
        self.timeout = pods_ready_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.admitted: dict[str, float] = {}  # job key -> admission time
        self.queued_at: dict[str, float] = {}  # job key -> its place in the queue (requeues)
        self.not_before: dict[str, float] = {}  # job key -> end of its requeue backoff
        self.requeues: dict[str, int] = {}
        self._wake: float | None = None

    def wake_at(self) -> float | None:
        return self._wake

    def round(self, sim: Simulation) -> list[Action]:
        self.admitted = {k: t for k, t in self.admitted.items() if k in sim.active}
        actions = self._pods_ready_timeouts(sim)
        actions += self._admit(sim)
        actions += self._kube_scheduler(sim)
        pending = [t + self.timeout for k, t in self.admitted.items() if not sim.active[k].running]
        later = [t for k, t in self.not_before.items() if k in sim.active and t > sim.now]
        self._wake = min([*pending, *later], default=None)
        return actions

    def _usage(self, sim: Simulation) -> dict[str, int]:
        usage = dict.fromkeys(self.nominal, 0)
        for key in self.admitted:
            job = sim.active[key]
            usage[job.namespace] = usage.get(job.namespace, 0) + job.gpus
        return usage

    def _release(self, job: SimJob, now: float) -> list[Action]:
        """Evict an admitted workload: its quota back, its pods deleted, requeued."""
        del self.admitted[job.key]
        count = self.requeues[job.key] = self.requeues.get(job.key, 0) + 1
        self.queued_at[job.key] = now
        backoff = min(self.backoff_max, self.backoff_base * 2 ** (count - 1))
        self.not_before[job.key] = now + backoff
        return evict(job)

    def _pods_ready_timeouts(self, sim: Simulation) -> list[Action]:
        actions: list[Action] = []
        for key, at in list(self.admitted.items()):
            job = sim.active[key]
            if not job.running and sim.now >= at + self.timeout:
                actions += self._release(job, sim.now)
        return actions

    def _admit(self, sim: Simulation) -> list[Action]:
        usage = self._usage(sim)
        capacity = sum(self.nominal.values())
        queues: dict[str, list[SimJob]] = {}
        for job in sim.active.values():
            if job.key in self.admitted or not job.waiting:
                continue
            if self.not_before.get(job.key, 0.0) > sim.now:
                continue
            queues.setdefault(job.namespace, []).append(job)
        for jobs in queues.values():
            jobs.sort(
                key=lambda j: (-j.priority, self.queued_at.get(j.key, j.arrival), j.trace.row)
            )
        heads = {q: 0 for q in queues}
        actions: list[Action] = []
        while heads:
            # Kueue's cycle: every queue's head; those within their own quota first
            entries = sorted(
                heads,
                key=lambda q: (
                    usage.get(q, 0) + queues[q][heads[q]].gpus > self.nominal.get(q, 0),
                    -queues[q][heads[q]].priority,
                    self.queued_at.get(queues[q][heads[q]].key, queues[q][heads[q]].arrival),
                ),
            )
            for q in entries:
                job = queues[q][heads[q]]
                own = usage.get(q, 0) + job.gpus <= self.nominal.get(q, 0)
                if sum(usage.values()) + job.gpus > capacity and own:
                    actions += self._reclaim(sim, usage, q, job.gpus, capacity)
                if sum(usage.values()) + job.gpus <= capacity:
                    self.admitted[job.key] = sim.now
                    usage[q] = usage.get(q, 0) + job.gpus
                heads[q] += 1  # admitted, or inadmissible for now (BestEffortFIFO)
                if heads[q] == len(queues[q]):
                    del heads[q]
        return actions

    def _reclaim(
        self, sim: Simulation, usage: dict[str, int], preemptor: str, gpus: int, capacity: int
    ) -> list[Action]:
        """Evict workloads of other queues above their nominal quota (borrowers), lowest
        priority and newest first, while they still borrow, until `gpus` fit in the cohort."""
        victims = sorted(
            (sim.active[k] for k in self.admitted),
            key=lambda j: (j.priority, -self.admitted[j.key], -j.trace.row),
        )
        chosen: list[SimJob] = []
        need = sum(usage.values()) + gpus - capacity
        for job in victims:
            if need <= 0:
                break
            q = job.namespace
            if q != preemptor and usage[q] > self.nominal.get(q, 0):  # q borrows
                chosen.append(job)
                usage[q] -= job.gpus
                need -= job.gpus
        if need > 0:  # not enough borrowed quota to take back: nothing evicted
            for job in chosen:
                usage[job.namespace] += job.gpus
            return []
        actions: list[Action] = []
        for job in chosen:
            actions += self._release(job, sim.now)
            self.not_before.pop(job.key, None)  # preempted, not failed: no backoff
        return actions

    def _kube_scheduler(self, sim: Simulation) -> list[Action]:
        """Pods of admitted workloads, one by one in creation order, best-fit."""
        free = FreeMap(sim.nodes.values())
        actions: list[Action] = []
        for key, _ in sorted(self.admitted.items(), key=lambda kv: kv[1]):
            job = sim.active[key]
            if job.terminating:
                continue  # its old pods must go before the new ones are created
            for replica in range(job.workers):
                if replica in job.bound:
                    continue
                node = free.best_fit(job.gpus_per_worker)
                if node is None:
                    continue
                free.take(node, job.gpus_per_worker)
                actions.append(Bind(key, replica, free.names[node]))
        return actions


class KaiLike:
    """Fair-share queue order, priority then age within a queue, gangs best-fit, priority
    preemption within a queue."""

    name = "kai-like"

    def __init__(self, deserved: Mapping[str, float]) -> None:
        self.deserved = dict(deserved)  # namespace (queue) -> deserved GPUs
        self.pipelined: set[str] = set()  # preemptors waiting for their victims to go

    def wake_at(self) -> float | None:
        return None

    def round(self, sim: Simulation) -> list[Action]:
        free = FreeMap(sim.nodes.values())
        usage: dict[str, int] = {}
        for job in sim.active.values():
            if job.bound:
                usage[job.namespace] = usage.get(job.namespace, 0) + len(job.bound) * (
                    job.gpus_per_worker
                )
        waiting = fifo_order(j for j in sim.active.values() if j.waiting)
        self.pipelined &= {j.key for j in waiting}
        actions: list[Action] = []
        unplaced: list[SimJob] = []
        for job in (j for j in waiting if j.key in self.pipelined):
            # a preemptor takes the GPUs its victims freed before anyone else does
            picks = free.place_gang(job.workers, job.gpus_per_worker)
            if picks is not None:
                self.pipelined.discard(job.key)
                actions += bind_gang(job, picks, free)
                usage[job.namespace] = usage.get(job.namespace, 0) + job.gpus
        started = {a.job for a in actions}
        queues: dict[str, list[SimJob]] = {}
        for job in waiting:
            if job.key not in self.pipelined and job.key not in started:
                queues.setdefault(job.namespace, []).append(job)
        heads = {q: 0 for q in queues}
        while heads:
            # the queue furthest below its deserved share goes next
            q = min(heads, key=lambda q: (usage.get(q, 0) / max(self.deserved.get(q, 0), 1), q))
            job = queues[q][heads[q]]
            heads[q] += 1
            if heads[q] == len(queues[q]):
                del heads[q]
            picks = free.place_gang(job.workers, job.gpus_per_worker) if free.largest else None
            if picks is None:
                unplaced.append(job)
                continue
            actions += bind_gang(job, picks, free)
            usage[q] = usage.get(q, 0) + job.gpus
        return actions + self._preempt(sim, free, unplaced)

    def _preempt(self, sim: Simulation, free: FreeMap, unplaced: list[SimJob]) -> list[Action]:
        actions: list[Action] = []
        taken: set[str] = set()
        lowest: dict[str, int] = {}  # queue -> lowest priority of its preemptible running jobs
        for v in sim.active.values():
            if v.running and v.preemptible:
                lowest[v.namespace] = min(lowest.get(v.namespace, v.priority), v.priority)
        for job in unplaced:
            if job.priority <= lowest.get(job.namespace, job.priority):
                continue  # no one it may preempt
            victims = sorted(
                (
                    v
                    for v in sim.active.values()
                    if v.namespace == job.namespace
                    and v.running
                    and v.preemptible
                    and v.priority < job.priority
                    and v.key not in taken
                ),
                key=lambda v: (v.priority, -v.arrival),
            )
            chosen: list[SimJob] = []
            for victim in victims:
                chosen.append(victim)
                for node in victim.bound.values():
                    free.give(free.index[node], victim.gpus_per_worker)
                picks = free.place_gang(job.workers, job.gpus_per_worker)
                if picks is not None:
                    break  # the GPUs stay claimed in `free` for the preemptor
            else:
                for victim in chosen:  # not enough: nothing evicted
                    for node in victim.bound.values():
                        free.take(free.index[node], victim.gpus_per_worker)
                continue
            self.pipelined.add(job.key)
            for victim in chosen:
                taken.add(victim.key)
                actions += evict(victim)
        return actions
