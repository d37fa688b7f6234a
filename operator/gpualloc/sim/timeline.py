"""The time-driven simulator's event loop: jobs arrive, wait, run, may be preempted, leave.

A scheduler (gpualloc through the controller's own `decide`, or a baseline) is called in
rounds with the controller's timing (controller/handlers.py): after a change (an arrival, a
departure, preempted pods gone, a wake-up the scheduler asked for), a round runs once
nothing has changed for `debounce` seconds, at most 10 x `debounce` after the first change.
The controller's periodic re-plan is left out: nothing changes between events here, so it
would plan the same state again. A round takes no simulated time.

A round returns actions: bind a pod to a node (it holds the node's GPUs at once), or delete
one (it holds them for its grace period, then they are free). A gang runs once every worker
is bound; its work then advances until it completes or loses a pod, when it falls back to
its last checkpoint (every `checkpoint_seconds` of work; 0 = nothing lost) and waits again.
"""

from __future__ import annotations

import heapq
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Never, Protocol

from tqdm import tqdm

from gpualloc.sim.philly import TraceJob, gang_of


@dataclass
class SimNode:
    name: str
    gpus: int
    product: str = "NVIDIA-P100"
    gpu_memory_mib: int = 16384
    free: int = -1  # set from gpus when -1

    def __post_init__(self) -> None:
        if self.free < 0:
            self.free = self.gpus


@dataclass(eq=False)
class SimJob:
    """One job: what a user submits (shape, estimate, priority) and what happens to it."""

    trace: TraceJob
    name: str
    namespace: str  # the virtual cluster's queue
    workers: int
    gpus_per_worker: int
    estimated_gpu_hours: float  # all a scheduler may know of its length
    priority: int = 0
    preemptible: bool = True  # every Philly job checkpoints; preemption needs a higher priority
    bound: dict[int, str] = field(default_factory=dict)  # replica -> node, holding GPUs
    terminating: int = 0  # its pods still shutting down (holding GPUs)
    work_done: float = 0.0  # seconds of work safe in a checkpoint
    running_since: float | None = None
    first_start: float | None = None
    finished: float | None = None
    preemptions: int = 0  # runs cut short
    lost_gpu_seconds: float = 0.0  # work redone after them
    run: int = 0  # bumped at each interruption: an earlier run's completion is stale
    half_placed: bool = False  # ever held GPUs with only part of its gang bound
    runs: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each run

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gpus(self) -> int:
        return self.workers * self.gpus_per_worker

    @property
    def arrival(self) -> float:
        return self.trace.arrival

    @property
    def running(self) -> bool:
        return self.running_since is not None

    @property
    def waiting(self) -> bool:
        """Arrived, not running, nothing bound or shutting down: a scheduler may place it."""
        return not self.running and not self.bound and not self.terminating


def job_of(trace: TraceJob, estimated_gpu_hours: float, priority: int = 0) -> SimJob:
    gang = gang_of(f"job-{trace.row:05d}", trace.gpus)
    return SimJob(
        trace=trace,
        name=f"job-{trace.row:05d}",
        namespace=f"vc-{trace.vc}",
        workers=gang.workers,
        gpus_per_worker=gang.gpus_per_worker,
        estimated_gpu_hours=estimated_gpu_hours,
        priority=priority,
    )


@dataclass(frozen=True)
class Bind:
    job: str  # job key
    replica: int
    node: str


@dataclass(frozen=True)
class Delete:
    job: str
    replica: int
    grace: float = 30.0  # seconds its GPUs stay held
    evict: bool = False  # a preemption (Eviction API), not a clean-up


Action = Bind | Delete


class Scheduler(Protocol):
    name: str

    def round(self, sim: Simulation) -> Sequence[Action]:
        """What to do now; reads `sim` (nodes, jobs), never changes it."""
        ...

    def wake_at(self) -> float | None:
        """A time this scheduler must run even if nothing changes (a timeout), or None."""
        ...


@dataclass
class RunStats:
    rounds: int = 0
    events: int = 0
    round_seconds: float = 0.0  # wall time inside the scheduler
    max_round_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's, all threads (CP-SAT's included)
    half_placed_gangs: int = 0
    evictions: int = 0  # pods deleted while holding GPUs, preemptions or not


_ARRIVE, _FINISH, _GONE, _WAKE, _ROUND = range(5)  # same time: arrivals first, round last


class Simulation:
    def __init__(
        self,
        nodes: Sequence[SimNode],
        jobs: Sequence[SimJob],
        *,
        checkpoint_seconds: float = 1800.0,
        debounce: float = 1.0,
        start: float | None = None,
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.capacity = sum(n.gpus for n in nodes)
        self.jobs = {j.key: j for j in jobs}
        self.active: dict[str, SimJob] = {}  # arrived and not finished, in arrival order
        self.checkpoint_seconds = checkpoint_seconds
        self.debounce = debounce
        self.now = start if start is not None else min((j.arrival for j in jobs), default=0.0)
        self.start = self.now
        self.stats = RunStats()
        self.allocated = 0  # GPUs held by pods (bound or shutting down)
        self.busy = 0  # GPUs of running gangs
        self.series: list[tuple[float, int, int]] = [(self.now, 0, 0)]  # (t, allocated, busy)
        # (time, kind, sequence, job key, run or node index)
        self._events: list[tuple[float, int, int, str, int]] = []
        self._node_names = list(self.nodes)
        self._node_index = {name: i for i, name in enumerate(self._node_names)}
        self._seq = 0
        self._first_change: float | None = None
        self._last_change = 0.0
        self._wakes: set[float] = set()
        for job in jobs:
            self._push(job.arrival, _ARRIVE, job.key)

    # -- events ----------------------------------------------------------------------------
    def _push(self, at: float, kind: int, key: str = "", arg: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, kind, self._seq, key, arg))

    def _changed(self) -> None:
        if self._first_change is None:
            self._first_change = self.now
            self._push(self.now + self.debounce, _ROUND)
        self._last_change = self.now

    def _sample(self) -> None:
        point = (self.now, self.allocated, self.busy)
        if self.series[-1][0] == self.now:
            self.series[-1] = point
        else:
            self.series.append(point)

    def run(self, scheduler: Scheduler, progress: bool = False) -> RunStats:
        started, cpu = time.monotonic(), time.process_time()
        shown = started
        bar = tqdm(
            total=len(self.jobs),
            desc=f"{scheduler.name:13}",
            unit="job",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        try:
            while self._events:
                at, kind, _, key, arg = heapq.heappop(self._events)
                self.now = max(self.now, at)
                self.stats.events += 1
                if kind == _ARRIVE:
                    self.active[key] = self.jobs[key]
                    self._changed()
                elif kind == _FINISH:
                    self._finish(self.jobs[key], arg, bar)
                elif kind == _GONE:
                    self._gone(self.jobs[key], self._node_names[arg])
                elif kind == _WAKE:
                    self._wakes.discard(at)
                    self._changed()
                elif kind == _ROUND:
                    self._maybe_round(scheduler)
                if progress and time.monotonic() - shown > 0.5:
                    shown = time.monotonic()
                    self._progress(bar, started)
        finally:
            bar.close()
        self.stats.wall_seconds = time.monotonic() - started
        self.stats.cpu_seconds = time.process_time() - cpu
        return self.stats

    def _progress(self, bar: tqdm[Never], started: float) -> None:
        elapsed = max(1e-9, time.monotonic() - started)
        bar.set_postfix_str(
            f"sim {(self.now - self.start) / 3600:.1f}h, {self.stats.events / elapsed:.0f} ev/s, "
            f"{len(self.active)} in system"
        )

    def _maybe_round(self, scheduler: Scheduler) -> None:
        if self._first_change is None:
            return
        due = min(self._last_change + self.debounce, self._first_change + 10 * self.debounce)
        if self.now < due:
            self._push(due, _ROUND)
            return
        self._first_change = None
        began = time.monotonic()
        actions = scheduler.round(self)
        spent = time.monotonic() - began
        self.stats.rounds += 1
        self.stats.round_seconds += spent
        self.stats.max_round_seconds = max(self.stats.max_round_seconds, spent)
        self.apply(actions)
        wake = scheduler.wake_at()
        if wake is not None and wake not in self._wakes:
            self._wakes.add(wake)
            self._push(max(wake, self.now), _WAKE)

    # -- state changes ---------------------------------------------------------------------
    def apply(self, actions: Iterable[Action]) -> None:
        touched: dict[str, SimJob] = {}
        for action in actions:
            job = self.active[action.job]
            touched[job.key] = job
            if isinstance(action, Delete):
                self._delete(job, action)
            else:
                self._bind(job, action)
        for job in touched.values():
            if job.bound and not job.running and not job.half_placed:
                job.half_placed = True
                self.stats.half_placed_gangs += 1
        self._sample()

    def _bind(self, job: SimJob, action: Bind) -> None:
        node = self.nodes[action.node]
        if action.replica in job.bound or not 0 <= action.replica < job.workers:
            raise ValueError(f"{job.key}: replica {action.replica} bound twice or out of range")
        if node.free < job.gpus_per_worker:
            raise ValueError(f"{job.key}: node {node.name} has {node.free} GPUs free")
        node.free -= job.gpus_per_worker
        self.allocated += job.gpus_per_worker
        job.bound[action.replica] = node.name
        if len(job.bound) == job.workers:
            job.running_since = self.now
            if job.first_start is None:
                job.first_start = self.now
            self.busy += job.gpus
            self._push(self.now + job.trace.duration - job.work_done, _FINISH, job.key, job.run)

    def _delete(self, job: SimJob, action: Delete) -> None:
        node_name = job.bound.pop(action.replica, None)
        if node_name is None:
            return  # a pod not on a node (queued): nothing held
        self.stats.evictions += 1
        if job.running_since is not None:
            self._interrupt(job)
        if action.grace <= 0:
            self._release(node_name, job.gpus_per_worker)
        else:
            job.terminating += 1
            self._push(self.now + action.grace, _GONE, job.key, self._node_index[node_name])

    def _interrupt(self, job: SimJob) -> None:
        """A running gang lost a pod: back to its last checkpoint, waiting again."""
        assert job.running_since is not None
        progress = job.work_done + self.now - job.running_since
        every = self.checkpoint_seconds
        kept = progress if every <= 0 else max(job.work_done, math.floor(progress / every) * every)
        job.lost_gpu_seconds += (progress - kept) * job.gpus
        job.runs.append((job.running_since, self.now))
        job.work_done = kept
        job.preemptions += 1
        job.running_since = None
        job.run += 1
        self.busy -= job.gpus

    def _release(self, node_name: str, gpus: int) -> None:
        self.nodes[node_name].free += gpus
        self.allocated -= gpus

    def _gone(self, job: SimJob, node_name: str) -> None:
        job.terminating -= 1
        self._release(node_name, job.gpus_per_worker)
        self._sample()
        self._changed()

    def _finish(self, job: SimJob, run: int, bar: tqdm[Never]) -> None:
        if run != job.run or job.running_since is None:
            return  # that run was cut short
        job.finished = self.now
        job.runs.append((job.running_since, self.now))
        job.work_done = job.trace.duration
        job.running_since = None
        self.busy -= job.gpus
        for node_name in job.bound.values():
            self._release(node_name, job.gpus_per_worker)
        job.bound.clear()
        del self.active[job.key]
        bar.update(1)
        self._sample()
        self._changed()
