"""The decide step: `ClusterState` (+ the previous plan) -> `Decision`. Pure: no I/O.

Numbered as the round runs:
1. read the policy and the nodes (a malformed node is left out and noted, never fatal);
2. give each pod to the job that owns it (ownerReference UID), or to nobody;
3. prepare each job alone: a job that cannot be read, sized or trusted is refused on its own
   status and the round goes on without it (isolation); lost, failed, unbound and surplus
   pods are deleted, missing ones created, the rendezvous Service reconciled;
4. plan the jobs that remain with the CP-SAT planner;
5. turn the plan into writes: evictions (graceful, through the Eviction API), pins, creates;
6. report every job's status and Events.
The time-driven simulator calls this same function.

Reading a job's spec (its pod template, its sizing) is the costly part of step 3 when
hundreds of jobs wait; a `Memo` handed back in the `Decision` and passed to the next call
keeps each job's parse while its uid and generation (the API server bumps it on every spec
change) and the round's inputs to the parse are the same. decide keeps nothing itself.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from gpualloc.controller.pods import (
    PLACED_AT,
    build_pod,
    build_service,
    is_gated,
    pinned,
    placement_patch,
    pod_name,
    replica_index,
)
from gpualloc.controller.queues import queue_writes, read_queues
from gpualloc.controller.state import (
    ClusterState,
    CreatePod,
    CreateService,
    DeletePod,
    PatchJobStatus,
    PatchPolicyStatus,
    PatchQueueStatus,
    PinPod,
    RecordEvent,
    Write,
)
from gpualloc.controller.status import Outcome, job_report, report_key, status_changed
from gpualloc.k8s.convert import (
    JOB_LABEL,
    SizingWait,
    SpecError,
    check_pod_template,
    committed_node,
    job_from_k8s,
    node_from_k8s,
    pod_from_k8s,
    policy_from_k8s,
    rfc3339_seconds,
)
from gpualloc.model import Job, JobKind, Node, Placement, Plan, Policy, RunningPod, Snapshot
from gpualloc.solver import plan as solve
from gpualloc.solver.capacity import (
    NOTHING,
    Free,
    fitting,
    free_capacity,
    per_replica,
    usage_by_node,
)
from gpualloc.solver.queue_report import beneficiaries
from gpualloc.solver.queues import choose_queue
from gpualloc.solver.topology import span_message

log = logging.getLogger("gpualloc.decide")
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,50}[a-z0-9])?")
# a victim's pod still terminating this long after its grace period is stuck (a lost node):
# the jobs it made room for are planned again, and may evict elsewhere
STUCK_TERMINATING_SECONDS = 60.0
Obj = dict[str, Any]


@dataclass(frozen=True)
class Decision:
    plan: Plan
    snapshot: Snapshot
    policy: Policy
    writes: tuple[Write | PatchPolicyStatus | PatchQueueStatus, ...]
    phases: Mapping[str, str] = field(default_factory=dict)  # job key -> reported phase
    refused: Mapping[str, str] = field(default_factory=dict)  # job key -> why it is Invalid
    notes: tuple[str, ...] = ()  # problems of no one job: a malformed node, a bad policy
    placed: int = 0
    created: int = 0
    evicted_jobs: int = 0
    recheck_in: float | None = None  # seconds until the next placed pod's bind deadline
    memo: Memo | None = None  # pass to the next decide call: parses it may reuse


# a job's parse: check_pod_template's error (or None), then job_from_k8s's Job or error; errors
# as SpecError's (object, field, message), raised afresh each round
_Error = tuple[str, str, str]
_Parsed = tuple[_Error | None, Job | _Error]
_ParseKey = tuple[str, int, int | None]


@dataclass(frozen=True)
class Memo:
    """Each job's parse by (uid, generation, desired replicas), valid for one `context`
    (the policy's allowed pod settings and the nodes, which sizing from spec.model reads).
    Read-only: decide builds a new one each round, holding the jobs of that round."""

    context: tuple[object, ...] = ()
    parsed: Mapping[_ParseKey, _Parsed] = field(default_factory=dict)
    # job reports that left the status unchanged: status.report_key -> (phase, Events)
    reports: Mapping[Hashable, tuple[str, tuple[tuple[str, str, str], ...]]] = field(
        default_factory=dict
    )


def key_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Work:
    """One job's preparation (step 3)."""

    obj: Obj
    key: str
    pods: list[Obj] = field(default_factory=list)  # owned, live, staying
    writes: list[Write] = field(default_factory=list)
    create: dict[str, Obj] = field(default_factory=dict)  # pod name -> gated pod to create
    model: Job | None = None  # None: not planned this round
    outcome: Outcome = field(default_factory=Outcome)
    desired: int = 0

    def doom(self, pods: list[Obj], grace: int | None = None, evict: bool = False) -> None:
        names = {p["metadata"]["name"] for p in pods}
        for pod in pods:
            meta = pod["metadata"]
            self.writes.append(DeletePod(self.key, meta["namespace"], meta["name"], grace, evict))
        self.pods = [p for p in self.pods if p["metadata"]["name"] not in names]

    def note(self, type_: str, reason: str, message: str) -> None:
        events = (*self.outcome.events, (type_, reason, message))
        self.outcome = replace(self.outcome, events=events)


def decide(state: ClusterState, previous: Plan | None = None, memo: Memo | None = None) -> Decision:
    """One round. `memo`: the previous Decision's, to reuse job parses (same result)."""
    notes: list[str] = []
    # -- 1. policy and nodes
    try:
        policy = policy_from_k8s(state.policy)
    except SpecError as err:
        notes.append(f"{err}; using the built-in defaults")
        policy = Policy()
    nodes: list[Node] = []
    for obj in state.nodes:
        try:
            node = node_from_k8s(obj, state.unhealthy_gpus.get(key_of(obj).split("/")[-1], 0))
        except (SpecError, ValueError, TypeError, KeyError) as err:
            notes.append(f"node left out: {err}")
            continue
        if node is not None:
            nodes.append(node)
    node_names = {n.name for n in nodes}
    all_node_names = {(o.get("metadata") or {}).get("name") for o in state.nodes}
    queues, queue_errors = read_queues(state.queues)
    notes += [f"GPUQueue {name} cannot be used: {why}" for name, why in queue_errors.items()]

    # -- 2. pods by owner
    jobs_by_key = {key_of(j): j for j in state.jobs}
    owned: dict[str, list[Obj]] = defaultdict(list)  # job key -> its pods (UID-checked)
    taken: dict[tuple[str, str], Obj] = {}  # (namespace, name) -> any pod
    for pod in state.pods:
        meta = pod.get("metadata") or {}
        taken[str(meta.get("namespace")), str(meta.get("name"))] = pod
        owner = _owner(pod, jobs_by_key)
        if owner is not None:
            owned[owner].append(pod)

    # -- 3. each job alone
    services = {key_of(s) for s in state.services}
    context: tuple[object, ...] = (
        policy.allowed_pod_settings,
        policy.topology_levels,
        tuple(nodes),
    )
    known = memo.parsed if memo is not None and memo.context == context else {}
    parses = _Parses(known, {})
    works: dict[str, _Work] = {}
    for job in state.jobs:
        key = key_of(job)
        if (job.get("metadata") or {}).get("deletionTimestamp"):
            continue  # being deleted: no new pods, nothing to report
        work = _Work(job, key)
        works[key] = work
        try:
            _prepare(
                work, owned[key], taken, state, policy, nodes, all_node_names, services, parses
            )
        except SpecError as err:
            work.writes, work.create, work.model = [], {}, None
            work.outcome = replace(work.outcome, invalid=err.message and str(err))
        except SizingWait as err:
            work.outcome = replace(work.outcome, unscheduled=str(err))
        except Exception as err:  # a bug must not take planning down for everyone
            log.exception("job %s could not be prepared", key)
            work.writes, work.create, work.model = [], {}, None
            work.outcome = replace(
                work.outcome, invalid=f"could not be read ({type(err).__name__}: {err})"
            )
        if state.queues and work.model is not None:  # GPUQueues: the job's queue, or why not
            job_model = work.model
            choice = choose_queue(
                job_model.namespace,
                job_model.queue,
                job_model.priority,
                queues,
                policy.default_queue,
            )
            if choice.refused:
                work.writes, work.create, work.model = [], {}, None
                work.outcome = replace(
                    work.outcome, invalid=f"{job['kind']} {key}: {choice.refused}"
                )
            elif choice.waiting:
                work.model = None
                work.outcome = replace(work.outcome, unscheduled=choice.waiting)
            else:
                work.model = replace(job_model, queue=choice.queue)

    # -- 4. plan
    active = {k: w for k, w in works.items() if w.model is not None}
    victims = _terminating_victims(state, owned, jobs_by_key, previous)
    room_for = {v: previous.room_for[v] for v in victims if previous and v in previous.room_for}
    held = _held(state.pods)
    reserved = previous.reserved if previous is not None else {}
    # a job an earlier eviction made room for holds that room in the plan (as if running
    # there: its queue's usage counts it) until the victims are gone, rather than evicting anew
    awaiting: dict[str, list[str]] = defaultdict(list)
    for earlier, made_room_for in room_for.items():
        for key in made_room_for:
            waiter = active.get(key)
            if waiter and key in reserved and not any(committed_node(p) for p in waiter.pods):
                awaiting[key].append(earlier)
    for key in _fit_now(awaiting, reserved, active, held, nodes):
        del awaiting[key]  # GPUs freed since hold it: planned afresh, its room given back
    running = _running(held, state.now, active, awaiting, reserved, owned, node_names)
    models = _with_moves(active, state.now, policy)
    snapshot = Snapshot(tuple(nodes), tuple(running), models, tuple(queues), now=state.now)
    # victims whose beneficiaries are unknown (a restart lost them): no new evictions until
    # they are gone, or the planner would pick more victims for the capacity they still hold
    in_flight = bool(victims - room_for.keys())
    plan_policy = replace(policy, preemption=False) if in_flight else policy
    result = solve(snapshot, plan_policy, previous)

    # -- 5. writes: evictions first, then pins and creates of placed pods
    held_nodes: set[str] = set()
    moved: set[str] = set()  # re-placed once their pods are gone (see _with_moves)
    for eviction in result.evictions:
        victim = works[eviction.job]
        held_nodes |= {n for p in victim.pods if (n := committed_node(p))}
        grace = _grace(victim.obj, policy)
        victim.doom(list(victim.pods), grace, evict=True)
        victim.create = {}
        victim.outcome = replace(
            victim.outcome, evicted=eviction.reason, moved=bool(eviction.moved_to)
        )
        if eviction.moved_to:
            moved.add(eviction.job)
    nodes_by_name = {n.name: n for n in nodes}
    used = usage_by_node(running)  # terminating pods and this round's victims included
    room = {n: free_capacity(nodes_by_name[n], used.get(n)) for n in held_nodes & node_names}
    by_job: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for p in result.placements:
        by_job[p.job].append((p.replica, p.node, p.gpus))
    # the GPUs free now on nodes where this round evicts go to the higher priorities first
    order = sorted(by_job, key=lambda k: -(m.priority if (m := active[k].model) else 0))
    stamp = iso(state.now)
    pins: list[Write] = []
    placed_creates: list[Write] = []
    placed_total = 0
    deferred: list[str] = []  # waiting for the GPUs of this round's victims
    for key in order:
        placements = by_job[key]
        if key in moved:
            continue  # its pods are being evicted; the next rounds place it first
        work = active[key]
        if key in awaiting and work.outcome.evicted is None:
            by = ", ".join(sorted(awaiting[key]))
            wait = f"waits for the GPUs of the preempted {by}, still terminating"
            work.outcome = replace(work.outcome, unscheduled=wait)
            continue
        actions = _placement_actions(work, placements, room, stamp)
        if actions is None:
            deferred.append(key)
            wait = f"placed on {', '.join(sorted({n for _, n, _ in placements}))} once the "
            wait += "preempted pods there have terminated"
            work.outcome = replace(work.outcome, unscheduled=wait)
            continue
        placed: dict[int, tuple[str, int]] = {}
        for replica, target, gpus, write in actions:
            placed[replica] = (target, gpus)
            if isinstance(write, PinPod):
                pins.append(write)
            elif isinstance(write, CreatePod):
                placed_creates.append(write)
                work.create.pop(write.pod["metadata"]["name"], None)
        placed_total += sum(1 for *_, w in actions if w is not None)
        span = (
            span_message(work.model, result.placements, nodes_by_name, policy.topology_levels)
            if work.model is not None
            else None
        )
        work.outcome = replace(work.outcome, placed=placed, span=span)
    result = _with_room_for(result, room_for, awaiting, deferred, snapshot, previous)
    reasons = {u.job: u.reason for u in result.unscheduled}
    if in_flight:
        reasons = {k: f"{r} (preempted pods are still terminating)" for k, r in reasons.items()}

    deletes = [w for work in works.values() for w in work.writes if isinstance(w, DeletePod)]
    services_to_create = [
        w for work in works.values() for w in work.writes if isinstance(w, CreateService)
    ]
    queued = [
        CreatePod(work.key, pod, placed=False)
        for work in works.values()
        for pod in work.create.values()
    ]

    # -- 6. report
    known_reports = memo.reports if memo is not None else {}
    kept_reports: dict[Hashable, tuple[str, tuple[tuple[str, str, str], ...]]] = {}
    reports: list[Write] = []
    phases: dict[str, str] = {}
    refused: dict[str, str] = {}
    for key, work in works.items():
        outcome = work.outcome
        if outcome.unscheduled is None and key in reasons:
            outcome = replace(outcome, unscheduled=reasons[key])
        if key in state.write_failures:
            outcome = replace(outcome, write_error=state.write_failures[key])
        if outcome.invalid:
            refused[key] = outcome.invalid
        memo_key = report_key(work.obj, work.pods, outcome, work.desired)
        kept = known_reports.get(memo_key) if memo_key is not None else None
        if kept is None:
            report = job_report(work.obj, work.pods, outcome, work.desired, stamp)
            kept = (report.status["phase"], tuple(report.events))
            meta = work.obj["metadata"]
            if status_changed(work.obj.get("status") or {}, report.status):
                namespace = meta.get("namespace", "default")
                kind = work.obj["kind"]
                reports.append(PatchJobStatus(key, kind, namespace, meta["name"], report.status))
                memo_key = None  # written: the job's next version is another key
        if memo_key is not None:
            kept_reports[memo_key] = kept
        phases[key] = kept[0]
        reports += [RecordEvent(key, work.obj, *event) for event in kept[1]]
    policy_writes: list[PatchPolicyStatus] = []
    if state.policy and (state.policy.get("status") or {}).get("lastStatus") != result.status:
        policy_writes.append(
            PatchPolicyStatus(state.policy["metadata"]["name"], {"lastStatus": result.status})
        )
    writes = (*deletes, *pins, *placed_creates, *services_to_create, *queued, *reports)
    queue_patches = queue_writes(state.queues, result, queue_errors, stamp)
    return Decision(
        plan=result,
        snapshot=snapshot,
        policy=policy,
        writes=(*writes, *policy_writes, *queue_patches),
        phases=phases,
        refused=refused,
        notes=tuple(notes),
        placed=placed_total,
        created=len(placed_creates) + len(queued),
        evicted_jobs=len(result.evictions),
        recheck_in=_next_bind_deadline(state, policy.unbound_timeout_seconds),
        memo=Memo(context, parses.kept, kept_reports),
    )


def _owner(pod: Obj, jobs: Mapping[str, Obj]) -> str | None:
    """The job key of the job that owns `pod` by UID; None for anybody else's pod, even one
    labelled as a job's (a squatter never counts as placed)."""
    meta = pod.get("metadata") or {}
    name = (meta.get("labels") or {}).get(JOB_LABEL)
    if not name:
        return None
    key = f"{meta.get('namespace') or 'default'}/{name}"
    job = jobs.get(key)
    if job is None:
        return None
    uid = (job.get("metadata") or {}).get("uid")
    refs = meta.get("ownerReferences") or []
    return key if uid and any(r.get("uid") == uid for r in refs) else None


def _terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _grace(job: Obj, policy: Policy) -> int:
    own = (job.get("spec") or {}).get("preemptionGracePeriodSeconds")
    if isinstance(own, int) and not isinstance(own, bool) and 0 <= own <= 3600:
        return own
    return policy.grace_period_seconds


def _world_size(pods: list[Obj]) -> tuple[int, int] | None:
    """(WORLD_SIZE, GPUs per worker) a running gang's pods were created with."""
    for pod in pods:
        containers = (pod.get("spec") or {}).get("containers") or []
        for env in (containers[0].get("env") or []) if containers else []:
            if env.get("name") == "WORLD_SIZE" and str(env.get("value", "")).isdigit():
                resources = containers[0].get("resources") or {}
                gpus = (resources.get("requests") or {}).get("nvidia.com/gpu", "0")
                return int(env["value"]), int(gpus) if str(gpus).isdigit() else 0
    return None


def _finished(job: Obj) -> bool:
    """A training job that ended (not refused) stays ended until its spec changes."""
    status = job.get("status") or {}
    if job.get("kind") != JobKind.TRAINING or status.get("phase") not in ("Succeeded", "Failed"):
        return False
    if any(
        c.get("type") == "Invalid" and c.get("status") == "True"
        for c in status.get("conditions") or []
    ):
        return False
    generation = (job.get("metadata") or {}).get("generation")
    return bool(status.get("observedGeneration") == generation)


@dataclass(frozen=True)
class _Parses:
    """The memo being read (`known`) and the one being built for the next round (`kept`)."""

    known: Mapping[_ParseKey, _Parsed]
    kept: dict[_ParseKey, _Parsed]

    def parse(self, job: Obj, policy: Policy, nodes: list[Node], desired: int | None) -> _Parsed:
        meta = job.get("metadata") or {}
        uid, generation = meta.get("uid"), meta.get("generation")
        key = None
        if isinstance(uid, str) and isinstance(generation, int):
            key = (uid, generation, desired)
        parsed = self.known.get(key) if key is not None else None
        if parsed is None:
            template_error: _Error | None = None
            try:
                check_pod_template(job, policy.allowed_pod_settings)
            except SpecError as err:
                template_error = (err.obj, err.field, err.message)
            result: Job | _Error
            try:
                result = job_from_k8s(job, nodes, desired, policy.topology_levels)
            except SpecError as err:
                result = (err.obj, err.field, err.message)
            parsed = (template_error, result)  # SizingWait and bugs propagate, not kept
        if key is not None:
            self.kept[key] = parsed
        return parsed


def _prepare(
    work: _Work,
    pods: list[Obj],
    taken: Mapping[tuple[str, str], Obj],
    state: ClusterState,
    policy: Policy,
    nodes: list[Node],
    node_names: set[Any],
    services: set[str],
    parses: _Parses,
) -> None:
    job, key = work.obj, work.key
    kind = job.get("kind")
    training = kind == JobKind.TRAINING
    live = [p for p in pods if not _terminating(p)]
    work.pods = list(live)
    if _finished(job):
        # no survivor keeps GPUs for a gang that ended
        work.doom([p for p in live if _phase(p) not in ("Succeeded", "Failed")])
        work.outcome = replace(work.outcome, finished=True)
        return
    name = str((job.get("metadata") or {}).get("name"))
    if not _NAME.fullmatch(name):  # admission refuses these; jobs created before it did not
        raise SpecError(
            f"{kind} {key}",
            "metadata.name",
            "must be a DNS-1035 label of at most 52 characters (start with a letter): it "
            "names the job's Service and its pods' hostnames",
        )
    desired = state.desired_replicas.get(key)
    if desired is not None:  # autoscaling: never above the cap, whatever Prometheus says
        desired = max(0, min(desired, policy.max_pods_per_job))
    template_error, parsed = parses.parse(job, policy, nodes, desired)
    if template_error is not None:
        raise SpecError(*template_error)
    failure = state.write_failures.get(key, "")
    if failure.startswith("CreatePod 422"):  # the pod spec itself: no retry can succeed
        raise SpecError(
            f"{kind} {key}", "spec.template", f"the API server refuses its pods: {failure[10:]}"
        )
    if not isinstance(parsed, Job):
        raise SpecError(*parsed)
    model = parsed
    if model.replicas > policy.max_pods_per_job:
        raise SpecError(
            f"{kind} {key}",
            "spec",
            f"asks for {model.replicas} pods; AllocationPolicy spec.limits.maxPodsPerJob "
            f"allows {policy.max_pods_per_job} per job",
        )
    spec = job.get("spec") or {}
    if training and (fixed := _world_size(live)) is not None and fixed[0] != model.replicas:
        if spec.get("workers") is None or spec.get("gpusPerWorker") is None:
            # sized from the model: a node added later never resizes a running gang
            size, gpus = fixed
            model = replace(
                model,
                replicas=size,
                min_replicas=min(model.min_replicas, size),
                gpus_per_replica=gpus or model.gpus_per_replica,
            )
        else:  # the user changed workers: the gang restarts at its new size
            work.note("Normal", "Resized", f"workers {fixed[0]} -> {model.replicas}: restarting")
            work.doom(list(live))
            live = []
    work.desired = model.replicas

    if training and any(_phase(p) == "Failed" for p in live):
        restarts = int((job.get("status") or {}).get("restarts") or 0)
        allowed = int(((spec.get("failurePolicy") or {}).get("maxRestarts")) or 0)
        if restarts < allowed:
            work.note(
                "Warning",
                "Restarting",
                f"a worker failed; restarting the whole gang ({restarts + 1}/{allowed})",
            )
            work.doom(list(live))
            work.outcome = replace(work.outcome, restarts=restarts + 1)
        else:
            # the gang failed: survivors give their GPUs back, the failed pod stays for logs
            work.doom([p for p in live if _phase(p) not in ("Failed", "Succeeded")])
            work.outcome = replace(work.outcome, gang_failed=True)
        return
    if training and len(live) >= model.replicas and all(_phase(p) == "Succeeded" for p in live):
        return  # done: job_report says Succeeded

    # pods bound or pinned to a node that is gone are lost: re-place them (a gang whole)
    lost = [p for p in live if (n := committed_node(p)) is not None and n not in node_names]
    failed = [p for p in live if not training and _phase(p) == "Failed"]
    unbound = _unbound(live, state.now, policy.unbound_timeout_seconds)
    if lost:
        work.outcome = replace(work.outcome, lost=True)
    for pod in unbound:
        work.note(
            "Warning",
            "Unbound",
            f"pod {pod['metadata']['name']} stayed unbound on {committed_node(pod)} for over "
            f"{policy.unbound_timeout_seconds}s (a constraint gpualloc does not model: a "
            "hostPort, another extended resource, a volume's zone?); placing it again",
        )
    # grace 0: a pod on a vanished node has no kubelet to confirm its end, and a pod never
    # bound or already failed has nothing to shut down
    if training and (lost or unbound):
        work.doom(list(live), grace=0)
    else:
        work.doom([*lost, *failed, *unbound], grace=0)
    work.doom([p for p in work.pods if replica_index(p) >= model.replicas], grace=None)

    namespace, name = key.split("/", 1)
    present = {p["metadata"]["name"] for p in pods}  # terminating ones keep their names
    conflicts = []
    for i in range(model.replicas):
        pod_id = pod_name(name, str(kind), i)
        if pod_id in present:
            continue
        if (namespace, pod_id) in taken:
            conflicts.append(pod_id)
            continue
        work.create[pod_id] = build_pod(job, i, model.gpus_per_replica, model.replicas)
    if conflicts:
        work.create = {}
        work.outcome = replace(
            work.outcome,
            conflict=f"pod {namespace}/{conflicts[0]} exists and is not this job's (its "
            "ownerReference is another object's); delete it or rename the job",
        )
        return
    if training and key not in services:
        work.writes.append(CreateService(key, build_service(job)))
    # a gang whose pods are being deleted waits for them to go before it is placed again
    deleting = any(_terminating(p) for p in pods) or any(
        isinstance(w, DeletePod) for w in work.writes
    )
    if not (training and deleting):
        work.model = model


def _refused_by_scheduler(pod: Obj) -> bool:
    """kube-scheduler tried and could not bind it (not merely: has not got to it yet, as in a
    burst of thousands of pods)."""
    return any(
        c.get("type") == "PodScheduled"
        and c.get("status") == "False"
        and c.get("reason") == "Unschedulable"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _unbound(pods: list[Obj], now: float, timeout: int) -> list[Obj]:
    """Pods gpualloc pinned and ungated that kube-scheduler found unschedulable and has not
    bound in `timeout`."""
    stuck = []
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") or is_gated(pod) or committed_node(pod) is None:
            continue
        if not _refused_by_scheduler(pod):
            continue
        at = _placed_at(pod)
        if at is not None and now - at > timeout:
            stuck.append(pod)
    return stuck


def _placed_at(pod: Obj) -> float | None:
    """When gpualloc pinned the pod (its placed-at annotation)."""
    return rfc3339_seconds(((pod.get("metadata") or {}).get("annotations") or {}).get(PLACED_AT))


def _next_bind_deadline(state: ClusterState, timeout: int) -> float | None:
    """When the earliest pinned-but-unbound pod's timeout runs out (from now), if any."""
    deadlines = [
        at + timeout - state.now
        for pod in state.pods
        if not (pod.get("spec") or {}).get("nodeName")
        and not is_gated(pod)
        and not _terminating(pod)
        and (at := _placed_at(pod)) is not None
    ]
    return max(1.0, min(deadlines) + 1.0) if deadlines else None


def _with_moves(active: Mapping[str, _Work], now: float, policy: Policy) -> tuple[Job, ...]:
    """The jobs to plan. A job the plan moved waits for its pods to go and is then placed
    before anything else, so the capacity its move counted on is its own (its priority is
    raised above every other job's while its Moved condition is True: until it is placed
    again, for an hour at most; a later preemption of it is an ordinary one)."""
    models = {k: w.model for k, w in active.items() if w.model is not None}
    top = max((m.priority for m in models.values()), default=0)
    out = []
    for key, model in models.items():
        status = active[key].obj.get("status") or {}
        moved_at = rfc3339_seconds(status.get("lastMovedTime")) or 0.0
        if model.moved_at != moved_at:  # a status field: not in the parse memo
            model = replace(model, moved_at=moved_at)
        moving = any(
            c.get("type") == "Moved" and c.get("status") == "True"
            for c in status.get("conditions") or []
            if isinstance(c, Mapping)
        )
        waiting = status.get("phase") not in ("Allocated", "Running", "Succeeded", "Failed")
        window = max(3600, policy.defragmentation.cooldown_seconds)
        if moving and moved_at and waiting and now - moved_at < window:
            model = replace(model, priority=top + 1)
        out.append(model)
    return tuple(out)


def _placement_actions(
    work: _Work, placements: list[tuple[int, str, int]], room: dict[str, Free], stamp: str
) -> list[tuple[int, str, int, Write | None]] | None:
    """The write that carries out each placement of one job (None: already done), or None
    when the job must wait: all or nothing, so a gang is never half pinned. `room`: what is
    free now on the nodes where this round evicts (the victims' GPUs are not, yet); the job's
    new pods there are written only if they fit in it, and take it."""
    kind = str(work.obj["kind"])
    name = work.obj["metadata"]["name"]
    by_name = {p["metadata"]["name"]: p for p in work.pods}
    actions: list[tuple[int, str, int, Write | None]] = []
    cpu, memory = (work.model.cpu_milli, work.model.memory_mib) if work.model else (0, 0)
    left: dict[str, Free] = {}  # what the job's new pods leave of `room`
    for replica, node, gpus in placements:
        pod_id = pod_name(name, kind, replica)
        if pod_id in work.create:
            pod = pinned(work.create[pod_id], node, stamp)
            actions.append((replica, node, gpus, CreatePod(work.key, pod, placed=True)))
        elif pod_id in by_name and is_gated(by_name[pod_id]):
            pod = by_name[pod_id]
            meta = pod["metadata"]
            patch = tuple(placement_patch(pod, node, stamp))
            actions.append(
                (replica, node, gpus, PinPod(work.key, meta["namespace"], meta["name"], patch))
            )
        elif pod_id in by_name and committed_node(by_name[pod_id]) == node:
            actions.append((replica, node, gpus, None))
            continue
        else:
            return None  # its pod is being deleted or cannot be created: wait
        if node in room:
            left[node] = left.get(node, room[node]) - Free(gpus, cpu, memory)
    if not all(f.holds(NOTHING) for f in left.values()):
        return None  # it needs the victims' GPUs: placed once their pods are gone
    room.update(left)
    return actions


def _terminating_victims(
    state: ClusterState,
    owned: Mapping[str, list[Obj]],
    jobs: Mapping[str, Obj],
    previous: Plan | None,
) -> set[str]:
    """Evicted jobs whose pods are still terminating: the victims the last plan knows of,
    and any job reported Preempted (after a restart). One stuck well past its pods' grace
    period (a lost node) holds nothing back any more."""
    known = previous.room_for if previous is not None else {}
    out: set[str] = set()
    for key, pods in owned.items():
        phase = (jobs[key].get("status") or {}).get("phase")
        if key not in known and phase != "Preempted":
            continue
        deadlines = [
            rfc3339_seconds(p["metadata"]["deletionTimestamp"]) or state.now
            for p in pods
            if _terminating(p)
        ]
        if deadlines and state.now < max(deadlines) + STUCK_TERMINATING_SECONDS:
            out.add(key)
    return out


def _held(pods: tuple[Obj, ...]) -> list[tuple[Obj, RunningPod]]:
    """The pods that hold resources on a node (bound, or committed there), read once."""
    out = []
    for pod in pods:
        try:
            held = pod_from_k8s(pod)
        except (SpecError, ValueError, TypeError, KeyError):
            continue
        if held is not None:
            out.append((pod, held))
    return out


def _fit_now(
    awaiting: Mapping[str, list[str]],
    reserved: Mapping[str, tuple[Placement, ...]],
    active: Mapping[str, _Work],
    held: list[tuple[Obj, RunningPod]],
    nodes: list[Node],
) -> list[str]:
    """The awaiting jobs whose every replica GPUs free now would hold (a job ended since its
    victims were evicted), highest priority first, each fitted by best fit after the ones
    before; every reserved room is counted as taken, so none is given twice."""
    if not awaiting:
        return []
    used = usage_by_node(h for _, h in held)
    free = {n.name: free_capacity(n, used.get(n.name)) for n in nodes}
    for placements in (reserved[k] for k in awaiting):
        for p in placements:
            if p.node in free:
                f = free[p.node]
                free[p.node] = replace(f, gpus=max(0, f.gpus - p.gpus))
    out = []
    models = [m for k in awaiting if (m := active[k].model) is not None]
    for model in sorted(models, key=lambda m: (-m.priority, m.key)):
        if model.topology or model.gpus_per_replica == 0:
            continue
        trial = dict(free)
        for _ in range(model.replicas):
            fits = fitting(trial, model, nodes)
            if not fits:
                break
            best = min(fits, key=lambda n: (trial[n.name].gpus, n.name))
            trial[best.name] -= per_replica(model)
        else:
            free = trial
            out.append(model.key)
    return out


def _running(
    held: list[tuple[Obj, RunningPod]],
    now: float,
    active: Mapping[str, _Work],
    awaiting: Mapping[str, list[str]],
    reserved: Mapping[str, tuple[Placement, ...]],
    owned: Mapping[str, list[Obj]],
    node_names: set[str],
) -> list[RunningPod]:
    """The pods that hold resources, as the planner sees them. Pods of jobs not planned
    (terminating ones included) hold capacity for no job; a job awaiting its victims holds
    the room reserved for it, which their terminating pods give up to it."""
    staying = {p["metadata"]["uid"] for w in active.values() for p in w.pods}
    leaving = {
        p["metadata"]["uid"]
        for v in {v for by in awaiting.values() for v in by}
        for p in owned.get(v, ())
        if _terminating(p)
    }
    handed: dict[str, Free] = {}  # node -> what the awaiting jobs' rooms take there
    running: list[RunningPod] = []
    for key in awaiting:
        model = active[key].model
        cpu, memory = (model.cpu_milli, model.memory_mib) if model else (0, 0)
        for p in reserved[key]:
            running.append(
                RunningPod(f"{key}#{p.replica}", p.node, p.gpus, cpu, memory, key, p.replica, now)
            )
            handed[p.node] = handed.get(p.node, NOTHING) + Free(p.gpus, cpu, memory)
    for pod, pod_held in held:
        if pod_held.node not in node_names:
            continue
        uid = (pod.get("metadata") or {}).get("uid")
        if uid not in staying:
            # not a planned job's: capacity held by someone else (terminating pods included)
            pod_held = replace(pod_held, job=None, replica=None)
        if uid in leaving and (give := handed.get(pod_held.node)):
            given = Free(
                min(pod_held.gpus, give.gpus),
                min(pod_held.cpu_milli, give.cpu_milli),
                min(pod_held.memory_mib, give.memory_mib),
            )
            handed[pod_held.node] = give - given
            pod_held = replace(
                pod_held,
                gpus=pod_held.gpus - given.gpus,
                cpu_milli=pod_held.cpu_milli - given.cpu_milli,
                memory_mib=pod_held.memory_mib - given.memory_mib,
            )
        running.append(pod_held)
    return running


def _with_room_for(
    result: Plan,
    room_for: Mapping[str, tuple[str, ...]],
    awaiting: Mapping[str, list[str]],
    deferred: list[str],
    snapshot: Snapshot,
    previous: Plan | None,
) -> Plan:
    """The plan with whom each victim still terminating made room for (the earlier victims'
    and this plan's: the jobs it placed on their nodes) and where those jobs go, for the
    next rounds. A queue's hold for a victim stays while a job it made room for waits."""
    jobs = {j.key: j for j in snapshot.jobs}
    fresh = {
        e.job: e.for_jobs
        or tuple(
            sorted({j.key for j in beneficiaries(e.job, snapshot.pods, result.placements, jobs)})
        )
        for e in result.evictions
    }
    waiting = set(awaiting) | set(deferred)
    reserved = {
        key: tuple(p for p in result.placements if p.job == key)
        for made_room_for in fresh.values()
        for key in made_room_for
        if key in deferred
    }
    if previous is not None:
        reserved |= {k: previous.reserved[k] for k in awaiting if k not in reserved}
    placed = {p.job for p in result.placements}
    holds = dict(result.holds)
    for victim, hold in (previous.holds if previous else {}).items():
        if victim not in holds and victim not in placed and set(hold.for_jobs) & waiting:
            holds[victim] = hold
    return replace(result, room_for={**room_for, **fresh}, reserved=reserved, holds=holds)
