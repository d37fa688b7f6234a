"""What would let a waiting job run now: counterfactual plans of the same model.

Each answer solves the planner's own model on a changed snapshot: the job at the top
priority, nothing else waiting, and one thing changed (running jobs evictable; fewer
workers; another split of its GPUs; another product; running jobs finished as their
estimates say). It is never on the main plan's path: callers give it a time budget, and
answers it could not reach in time are left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from gpualloc.model import Job, JobKind, Plan, Policy, RunningPod, Snapshot
from gpualloc.solver.explain import no_eligible_node, plural
from gpualloc.solver.planner import plan

_STEP_SECONDS = 2.0  # most one counterfactual solve may take
MAX_GPUS_PER_POD = 64  # the CRDs' bound on gpusPerWorker / gpusPerReplica


@dataclass(frozen=True)
class Victim:
    """A running job that would have to be evicted (or moved) for the waiting one."""

    job: str
    gpus: int
    gpu_hours_lost: float  # GPUs x hours since its pods started (work since a checkpoint)
    preemptible: bool


@dataclass(frozen=True)
class Unblock:
    job: str
    fits_now: bool = False  # free capacity is enough: it waits for others, not for GPUs
    never: str | None = None  # fits nowhere, even on an empty cluster
    evict: tuple[Victim, ...] = ()  # the fewest GPUs of running work that would make room
    evict_status: str = ""  # OPTIMAL: no set that takes fewer GPUs exists
    alternatives: tuple[str, ...] = ()  # changes to the job that fit now, evicting nothing
    free_at: float | None = None  # when running jobs' estimatedGPUHours say enough frees up
    complete: bool = True  # False: the budget ran out before every question was answered

    def message(self) -> str:
        if self.never:
            return f"cannot run as asked: {self.never}" + self._alternatives("; it would fit")
        if self.fits_now:
            return "free GPUs are enough: it waits only for jobs ahead of it"
        parts = []
        if self.evict:
            names = ", ".join(
                f"{v.job} ({v.gpus} GPUs, {v.gpu_hours_lost:.1f} GPU-h lost"
                + ("" if v.preemptible else ", not preemptible")
                + ")"
                for v in self.evict
            )
            proof = " (proven fewest GPUs)" if self.evict_status == "OPTIMAL" else ""
            parts.append(f"it would run now if {names} moved or were evicted{proof}")
        if self.alternatives:
            parts.append("it would fit now " + " or ".join(self.alternatives))
        if self.free_at is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.free_at))
            parts.append(f"running jobs' estimates free enough GPUs by {stamp}")
        if not parts:
            return "nothing short of more GPUs would let it run now"
        return "; ".join(parts)

    def _alternatives(self, lead: str) -> str:
        return f"{lead} " + " or ".join(self.alternatives) if self.alternatives else ""

    def as_status(self) -> dict[str, object]:
        """The structured `status.unblock` of the job."""
        out: dict[str, object] = {"message": self.message(), "complete": self.complete}
        if self.evict:
            out["evict"] = [
                {
                    "job": v.job,
                    "gpus": v.gpus,
                    "gpuHoursLost": round(v.gpu_hours_lost, 2),
                    "preemptible": v.preemptible,
                }
                for v in self.evict
            ]
            out["evictProof"] = self.evict_status
        if self.alternatives:
            out["alternatives"] = list(self.alternatives)
        if self.free_at is not None:
            out["freeAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.free_at))
        return out


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def unblock(
    snapshot: Snapshot, policy: Policy, key: str, now: float, budget_seconds: float = 10.0
) -> Unblock:
    """The cheapest changes that would let job `key` run now (see the module docstring)."""
    job = next(j for j in snapshot.jobs if j.key == key)
    budget = _Budget(budget_seconds)
    asked = _Question(snapshot, policy, job, budget)
    never = no_eligible_node(job, snapshot.nodes)
    if never is None and asked.fits(job):
        return Unblock(key, fits_now=True)
    alternatives = asked.alternatives()
    if never is not None:
        return Unblock(key, never=never, alternatives=alternatives, complete=budget.left() > 0)
    evict, status = asked.evictions(now)
    free_at = asked.free_at(now)
    return Unblock(
        key,
        evict=evict,
        evict_status=status,
        alternatives=alternatives,
        free_at=free_at,
        complete=budget.left() > 0,
    )


class _Question:
    """One waiting job, asked against the running work of one snapshot."""

    def __init__(self, snapshot: Snapshot, policy: Policy, job: Job, budget: _Budget) -> None:
        self.job = job
        self.budget = budget
        self.policy = replace(policy, relative_gap=0.0, max_evictions_per_round=None)
        running = {p.job for p in snapshot.pods if p.job is not None}
        self.running = tuple(j for j in snapshot.jobs if j.key in running and j.key != job.key)
        self.top = max((j.priority for j in snapshot.jobs), default=0)
        # its own pods (a job restarting) stay; the rest of the cluster is what runs now
        self.snapshot = replace(snapshot, jobs=self.running, queues=())

    def _solve(
        self,
        job: Job,
        preemption: bool,
        pods: tuple[RunningPod, ...] | None = None,
        others: tuple[Job, ...] | None = None,
    ) -> Plan:
        """Plan with `job` at the top; `pods` and `others` (the running jobs) replace the
        snapshot's when given."""
        asked = replace(job, priority=self.top + 1)
        seconds = max(0.1, min(_STEP_SECONDS, self.budget.left()))
        others = self.snapshot.jobs if others is None else others
        snapshot = replace(self.snapshot, jobs=(*others, asked))
        if pods is not None:
            snapshot = replace(snapshot, pods=pods)
        # free capacity means nothing moved either; the eviction question may move jobs
        rules = self.policy.defragmentation
        rules = replace(rules, enabled=rules.enabled and preemption)
        return plan(
            snapshot,
            replace(
                self.policy,
                preemption=preemption,
                time_limit_seconds=seconds,
                defragmentation=rules,
            ),
        )

    def fits(self, job: Job, pods: tuple[RunningPod, ...] | None = None) -> bool:
        if self.budget.left() <= 0:
            return False
        placed = sum(1 for p in self._solve(job, False, pods).placements if p.job == job.key)
        own = sum(1 for p in (pods or self.snapshot.pods) if p.job == job.key)
        return placed - own >= max(1, job.min_replicas - own)

    def alternatives(self) -> tuple[str, ...]:
        """Changes to the job itself that fit in the free capacity."""
        job, found = self.job, []
        unit = "worker" if job.kind == JobKind.TRAINING else "replica"
        fewer = self._most_replicas_that_fit()
        if fewer is not None:
            found.append(f"with {plural(fewer, unit)} instead of {job.replicas}")
        total = job.replicas * job.gpus_per_replica
        # another split of the same GPUs, the nearest to what it asked first: at most what a
        # pod may ask and the largest node has (a node may claim a billion GPUs)
        largest = min(max((n.gpus for n in self.snapshot.nodes), default=0), MAX_GPUS_PER_POD)
        for gpus in sorted(range(1, largest + 1), key=lambda g: abs(g - job.gpus_per_replica)):
            if gpus == job.gpus_per_replica or total % gpus:
                continue
            count = total // gpus
            if count > self.policy.max_pods_per_job:
                continue
            split = replace(job, gpus_per_replica=gpus, replicas=count, min_replicas=count)
            if self.fits(split):
                found.append(f"as {plural(count, unit)} of {plural(gpus, 'GPU')}")
                break
        for product in sorted({n.product for n in self.snapshot.nodes}):
            if job.requirements.products and product not in job.requirements.products:
                moved = replace(job, requirements=replace(job.requirements, products=(product,)))
                if self.fits(moved):
                    found.append(f"on {product}")
        return tuple(found)

    def _most_replicas_that_fit(self) -> int | None:
        """The most replicas below what it asked that fit now (fits is monotone in the
        count: a binary search)."""
        lo, hi, best = 1, self.job.replicas - 1, None
        while lo <= hi and self.budget.left() > 0:
            mid = (lo + hi) // 2
            if self.fits(replace(self.job, replicas=mid, min_replicas=mid)):
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best

    def evictions(self, now: float) -> tuple[tuple[Victim, ...], str]:
        """The running jobs to evict so it runs now: every running job evictable, the
        planner's order (fewest GPUs taken from each priority, highest first, then the
        fewest jobs) chooses; its status says whether that is proven."""
        if self.budget.left() <= 0:
            return (), ""
        evictable = tuple(replace(j, preemptible=True) for j in self.running)
        result = self._solve(self.job, True, others=evictable)
        if not any(p.job == self.job.key for p in result.placements):
            return (), ""
        preemptible = {j.key: j.preemptible for j in self.running}
        victims = []
        for eviction in result.evictions:
            pods = [p for p in self.snapshot.pods if p.job == eviction.job]
            hours = sum(p.gpus * (now - p.started) / 3600 for p in pods if p.started)
            victims.append(
                Victim(
                    eviction.job,
                    sum(p.gpus for p in pods),
                    max(0.0, hours),
                    preemptible[eviction.job],
                )
            )
        return tuple(sorted(victims, key=lambda v: v.job)), result.status

    def free_at(self, now: float) -> float | None:
        """When running jobs finish as their `estimatedGPUHours` say (from their first pod's
        start), the first time enough has left for this job; None if no estimate gets there."""
        ends = []
        for job in self.running:
            held = [p for p in self.snapshot.pods if p.job == job.key]
            started = min((p.started for p in held if p.started), default=0.0)
            gpus = sum(p.gpus for p in held)
            if job.estimated_gpu_hours is not None and started and gpus:
                ends.append((max(now, started + job.estimated_gpu_hours / gpus * 3600), job.key))
        ends.sort()
        pods = self.snapshot.pods
        for end, key in ends:
            pods = tuple(p for p in pods if p.job != key)
            if self.budget.left() <= 0:
                return None
            if self.fits(self.job, pods):
                return end
        return None
