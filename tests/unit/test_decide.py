"""The decide step on literal scenarios: given nodes + jobs + pods, the writes it makes.

Like KAI's allocate tests: each case is a cluster written out in full and the outcome a user
would see (which pods are created where, which are deleted, what the job's status says).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gpualloc.controller.decide import Decision, decide
from gpualloc.controller.pods import PLACED_AT, build_pod, pinned
from gpualloc.controller.state import (
    ClusterState,
    CreatePod,
    CreateService,
    DeletePod,
    PatchJobStatus,
    PinPod,
    RecordEvent,
)
from gpualloc.model import JobKind, Placement, Plan

pytestmark = pytest.mark.unit
Obj = dict[str, Any]
H100 = "NVIDIA-H100-80GB-HBM3"
NOW = 1_800_000_000.0


def node(name: str, gpus: int = 8, product: str = H100, **labels: str) -> Obj:
    return {
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": "81559"}
            | labels,
        },
        "spec": {},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "96", "memory": "1Ti"}},
    }


def job(name: str, kind: str = "LLMTrainingJob", status: Obj | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}} | spec,
        "status": status or {},
    }


def gang(name: str, workers: int, gpus: int, **spec: Any) -> Obj:
    return job(name, workers=workers, gpusPerWorker=gpus, **spec)


def pod_of(j: Obj, replica: int, node_name: str | None = None, phase: str = "Running") -> Obj:
    """A pod of `j` as it is once placed (bound to `node_name`) or still gated (None)."""
    spec = j["spec"]
    gpus = spec.get("gpusPerWorker") or spec.get("gpusPerReplica") or 1
    size = spec.get("workers") or spec.get("replicas") or 1
    pod = build_pod(j, replica, gpus, size)
    if node_name is not None:
        pod = pinned(pod, node_name)
        pod["spec"]["nodeName"] = node_name
    pod["metadata"]["uid"] = f"pod-{j['metadata']['name']}-{replica}"
    pod["status"] = {"phase": phase if node_name else "Pending"}
    return pod


def run(
    nodes: list[Obj],
    jobs: list[Obj],
    pods: list[Obj] = (),  # type: ignore[assignment]
    policy: Obj | None = None,
    services: list[Obj] = (),  # type: ignore[assignment]
) -> Decision:
    state = ClusterState(
        nodes=tuple(nodes),
        pods=tuple(pods),
        jobs=tuple(jobs),
        services=tuple(services),
        policy=policy,
        now=NOW,
    )
    return decide(state)


def created(d: Decision, placed: bool | None = None) -> dict[str, str | None]:
    """Pod name -> the node it is created pinned to (None: created gated)."""
    out: dict[str, str | None] = {}
    for w in d.writes:
        if isinstance(w, CreatePod) and (placed is None or w.placed == placed):
            terms = (
                w.pod["spec"]
                .get("affinity", {})
                .get("nodeAffinity", {})
                .get("requiredDuringSchedulingIgnoredDuringExecution", {})
                .get("nodeSelectorTerms", [])
            )
            pin = [f["values"][0] for t in terms for f in t.get("matchFields", [])]
            out[w.pod["metadata"]["name"]] = pin[0] if w.placed else None
    return out


def deleted(d: Decision) -> dict[str, DeletePod]:
    return {w.name: w for w in d.writes if isinstance(w, DeletePod)}


def status(d: Decision, name: str) -> Obj:
    found = [w.status for w in d.writes if isinstance(w, PatchJobStatus) and w.name == name]
    assert found, f"no status written for {name}"
    return found[-1]


def events(d: Decision, name: str) -> list[tuple[str, str]]:
    return [
        (w.type, w.reason)
        for w in d.writes
        if isinstance(w, RecordEvent) and w.obj["metadata"]["name"] == name
    ]


# -- placement ----------------------------------------------------------------------------
def test_a_gang_on_two_free_nodes_is_created_pinned_one_worker_per_node() -> None:
    d = run([node("a"), node("b")], [gang("llama", 2, 8)])
    assert sorted(created(d, placed=True).values()) == ["a", "b"]
    assert [w.service["metadata"]["name"] for w in d.writes if isinstance(w, CreateService)] == [
        "llama"
    ]
    assert status(d, "llama")["phase"] == "Allocated"
    assert events(d, "llama") == [("Normal", "Allocated")]


def test_a_gang_that_does_not_fit_gets_gated_pods_and_its_reason() -> None:
    d = run([node("a")], [gang("big", 2, 8)])
    assert created(d) == {"big-worker-0": None, "big-worker-1": None}
    assert status(d, "big")["phase"] == "Unschedulable"
    assert "only 1 node has 8 free" in status(d, "big")["message"]


def test_an_existing_gated_pod_is_pinned_in_one_patch() -> None:
    j = job("chat", "LLMInferenceJob", replicas=1, gpusPerReplica=2)
    d = run([node("a")], [j], [pod_of(j, 0)])
    (pin,) = [w for w in d.writes if isinstance(w, PinPod)]
    assert pin.name == "chat-replica-0"
    assert pin.patch[0]["value"]["nodeAffinity"]  # narrows to the node...
    assert any(op["path"] == "/spec/schedulingGates" for op in pin.patch)  # ...and ungates
    assert any(PLACED_AT in (op.get("value") or {}) for op in pin.patch)  # for the timeout


# -- isolation: a bad job hurts only itself -----------------------------------------------
BAD_JOBS = [
    ("tolerations as strings", {"template": {"spec": {"tolerations": ["x"]}}}, "tolerations"),
    ("containers as a string", {"template": {"spec": {"containers": "x"}}}, "containers"),
    ("nodeSelector of lists", {"template": {"spec": {"nodeSelector": {"a": ["b"]}}}}, "nodeSel"),
    (
        "affinity with a bad operator",
        {
            "template": {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": "k", "operator": "Near"}]}
                                ]
                            }
                        }
                    }
                }
            }
        },
        "nodeSelectorTerms[0]",
    ),
    ("priority 2^40", {"priority": 2**40}, "spec.priority"),
    ("model of a quadrillion parameters", {"model": {"parameters": "1000T"}}, "spec.model"),
    ("workers above the cap", {"workers": 600, "gpusPerWorker": 1}, "maxPodsPerJob"),
    (
        "a privileged container",
        {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "m", "image": "x", "securityContext": {"privileged": True}}
                    ]
                }
            }
        },
        "privileged",
    ),
    ("the operator's service account", {"template": {"spec": {"serviceAccountName": "x"}}}, "serv"),
    ("hostPath", {"template": {"spec": {"volumes": [{"name": "v", "hostPath": {}}]}}}, "hostPath"),
    ("hostNetwork", {"template": {"spec": {"hostNetwork": True}}}, "hostNetwork"),
    ("a label that is not a string", {"template": {"metadata": {"labels": {"a": 1}}}}, "labels"),
    (
        "GPUs asked in an init container",
        {
            "template": {
                "spec": {
                    "initContainers": [
                        {"name": "i", "resources": {"limits": {"nvidia.com/gpu": "16"}}}
                    ]
                }
            }
        },
        "initContainers[0].resources",
    ),
]


@pytest.mark.parametrize(("case", "spec", "field"), BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
def test_a_bad_job_is_refused_on_its_own_status_and_the_good_one_is_placed(
    case: str, spec: Obj, field: str
) -> None:
    bad = gang("bad", 1, 1)
    bad["spec"] = {**bad["spec"], **spec}
    if "model" in spec:
        del bad["spec"]["gpusPerWorker"]
    d = run([node("a"), node("b")], [bad, gang("good", 2, 8)])
    assert sorted(created(d, placed=True).values()) == ["a", "b"]  # the good gang
    assert not any(name.startswith("bad-") for name in created(d))
    refused = status(d, "bad")
    assert refused["phase"] == "Failed"
    assert field in refused["message"]
    assert {"type": "Invalid", "status": "True"}.items() <= refused["conditions"][0].items()
    assert ("Warning", "Failed") in events(d, "bad")


def test_privileged_is_accepted_when_the_policy_allows_it() -> None:
    j = gang("sys", 1, 1)
    j["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    policy = {"metadata": {"name": "default"}, "spec": {"security": {"allowPrivileged": True}}}
    d = run([node("a")], [j], policy=policy)
    assert created(d, placed=True) == {"sys-worker-0": "a"}


def test_a_model_whose_products_match_no_node_waits_instead_of_sizing_against_nothing() -> None:
    j = job("typo", model={"parameters": "70B"}, gpu={"products": ["NVIDIA-H1OO"]})
    d = run([node("a")], [j])
    assert created(d) == {}  # not 185,000 gated pods
    assert status(d, "typo")["phase"] == "Unschedulable"
    assert "no node has GPUs it may use (NVIDIA-H1OO)" in status(d, "typo")["message"]


def test_the_pod_cap_comes_from_the_policy() -> None:
    policy = {"metadata": {"name": "default"}, "spec": {"limits": {"maxPodsPerJob": 4}}}
    d = run([node("a")], [gang("wide", 5, 1), gang("ok", 4, 1)], policy=policy)
    assert "allows 4 per job" in status(d, "wide")["message"]
    assert len(created(d, placed=True)) == 4


def test_a_squatting_pod_is_a_conflict_never_counted_or_touched() -> None:
    j = gang("llama", 1, 8)
    squatter = pod_of(j, 0, "a")
    squatter["metadata"]["ownerReferences"] = []  # same name and label, not the job's
    d = run([node("a"), node("b")], [j], [squatter])
    assert created(d) == {}
    assert not any(
        getattr(w, "name", None) == "llama-worker-0"
        for w in d.writes
        if isinstance(w, (DeletePod, PinPod))
    )
    st = status(d, "llama")
    assert st["phase"] == "Unschedulable" and st["placed"] == 0
    assert "is not this job's" in st["message"]
    assert ("Warning", "Conflict") in events(d, "llama")
    assert d.snapshot.pods[0].job is None  # its GPUs count as someone else's


def test_a_job_being_deleted_gets_no_new_pods() -> None:
    j = gang("bye", 1, 8)
    j["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    d = run([node("a")], [j])
    assert d.writes == ()


def test_a_bad_node_is_left_out_and_noted() -> None:
    bad = node("bad")
    bad["metadata"]["labels"]["nvidia.com/gpu.memory"] = "lots"
    d = run([bad, node("a")], [gang("g", 1, 8)])
    assert created(d, placed=True) == {"g-worker-0": "a"}
    assert any("bad" in n for n in d.notes)


# -- gangs --------------------------------------------------------------------------------
def test_a_running_gang_sized_from_the_model_keeps_its_size_when_nodes_change() -> None:
    j = job("sft", model={"parameters": "70B"})
    # created when only 4-GPU nodes existed: 2 workers x 4 (WORLD_SIZE 2)
    running = [pod_of(gang("sft", 2, 4), i, n) for i, n in enumerate(("a", "b"))]
    for pod in running:
        pod["metadata"]["ownerReferences"][0]["uid"] = "uid-sft"
    d = run([node("a", 4), node("b", 4), node("c", 8)], [j], running)
    assert created(d) == {} and deleted(d) == {}
    assert d.snapshot.jobs[0].replicas == 2


def test_a_failed_worker_restarts_the_whole_gang_while_restarts_are_left() -> None:
    j = gang("g", 2, 8, failurePolicy={"maxRestarts": 1})
    pods = [pod_of(j, 0, "a", "Failed"), pod_of(j, 1, "b")]
    d = run([node("a"), node("b")], [j], pods)
    assert set(deleted(d)) == {"g-worker-0", "g-worker-1"}
    assert status(d, "g")["restarts"] == 1
    assert ("Warning", "Restarting") in events(d, "g")


def test_a_gang_out_of_restarts_fails_and_its_survivors_give_their_gpus_back() -> None:
    j = gang("g", 2, 8, failurePolicy={"maxRestarts": 1}, status={"restarts": 1})
    j["status"] = {"restarts": 1, "phase": "Running"}
    pods = [pod_of(j, 0, "a", "Failed"), pod_of(j, 1, "b")]
    d = run([node("a"), node("b")], [j], pods)
    assert set(deleted(d)) == {"g-worker-1"}  # the failed one stays for its logs
    assert status(d, "g")["phase"] == "Failed"


def test_the_rendezvous_service_is_reconciled_every_round() -> None:
    j = gang("g", 1, 8)
    running = [pod_of(j, 0, "a")]
    missing = run([node("a")], [j], running)
    assert any(isinstance(w, CreateService) for w in missing.writes)
    service = {"metadata": {"name": "g", "namespace": "ns"}}
    present = run([node("a")], [j], running, services=[service])
    assert not any(isinstance(w, CreateService) for w in present.writes)


def test_a_pod_bound_to_a_vanished_node_restarts_its_gang() -> None:
    j = gang("g", 2, 8)
    pods = [pod_of(j, 0, "a"), pod_of(j, 1, "gone")]
    d = run([node("a"), node("b")], [j], pods)
    assert set(deleted(d)) == {"g-worker-0", "g-worker-1"}
    assert created(d) == {}  # new pods once the old ones are gone


def test_a_placed_pod_unbound_past_the_timeout_is_placed_again() -> None:
    j = job("chat", "LLMInferenceJob", replicas=1, gpusPerReplica=1)
    stuck = pod_of(j, 0)
    stuck = pinned(stuck, "a", "2027-01-15T07:56:40Z")  # 200 s before NOW
    refused = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    stuck["status"] = {"phase": "Pending", "conditions": [refused]}
    d = run([node("a")], [j], [stuck])
    assert set(deleted(d)) == {"chat-replica-0"}
    assert ("Warning", "Unbound") in events(d, "chat")
    recent = pinned(pod_of(j, 0), "a", "2027-01-15T07:59:40Z")  # 20 s: not yet
    recent["status"] = {"phase": "Pending", "conditions": [refused]}
    assert deleted(run([node("a")], [j], [recent])) == {}
    # not yet tried by a busy kube-scheduler (a burst): slow is not stuck
    queued = pinned(pod_of(j, 0), "a", "2027-01-15T07:56:40Z")
    queued["status"] = {"phase": "Pending"}
    assert deleted(run([node("a")], [j], [queued])) == {}


# -- preemption ---------------------------------------------------------------------------
def test_preemption_evicts_gracefully_and_pins_the_preemptor_only_once_victims_are_gone() -> None:
    low = gang("low", 1, 8, priority=0, preemptible=True)
    high = gang("high", 1, 8, priority=100)
    d = run([node("a")], [low, high], [pod_of(low, 0, "a")])
    victim = deleted(d)["low-worker-0"]
    assert victim.evict and victim.grace_seconds == 30
    assert created(d, placed=True) == {}  # not pinned onto GPUs still in use
    assert created(d) == {"high-worker-0": None}
    assert "once the preempted pods there have terminated" in status(d, "high")["message"]
    assert status(d, "low")["phase"] == "Preempted"


def test_a_preemptor_fitting_the_free_gpus_binds_at_once_a_gang_needing_a_victims_waits() -> None:
    low = gang("low", 1, 6, preemptible=True)
    pair = gang("pair", 2, 2, priority=100)  # 4 GPUs: 2 free now + 2 of the victim's
    small = job("small", "LLMInferenceJob", replicas=1, gpusPerReplica=2, priority=100)
    d = run([node("a")], [low, pair, small], [pod_of(low, 0, "a")])
    assert set(deleted(d)) == {"low-worker-0"}
    assert created(d, placed=True) == {"small-replica-0": "a"}  # the 2 free GPUs, now
    assert created(d)["pair-worker-0"] is None and created(d)["pair-worker-1"] is None
    assert "once the preempted pods there have terminated" in status(d, "pair")["message"]


def _terminating(pod: Obj, gone_by: str = "2027-01-15T08:00:20Z") -> Obj:
    pod["metadata"]["deletionTimestamp"] = gone_by
    return pod


def test_a_job_waits_for_the_room_its_victim_leaves_and_others_may_still_preempt() -> None:
    low = gang("low", 1, 8, preemptible=True, status={"phase": "Preempted"})
    other = gang("other", 1, 8, preemptible=True)
    high = gang("high", 1, 8, priority=100)
    later = gang("later", 1, 8, priority=100)
    state = ClusterState(
        nodes=(node("a"), node("b")),
        pods=(_terminating(pod_of(low, 0, "a")), pod_of(other, 0, "b")),
        jobs=(low, other, high, later),
        now=NOW,
    )
    high_on_a = (Placement("ns/high", JobKind.TRAINING, 0, "a", 8),)
    earlier = Plan(
        "OPTIMAL", 0, 0, 0, room_for={"ns/low": ("ns/high",)}, reserved={"ns/high": high_on_a}
    )
    d = decide(state, earlier)
    assert set(deleted(d)) == {"other-worker-0"}  # for `later`, not a second one for `high`
    assert "preempted ns/low, still terminating" in status(d, "high")["message"]
    assert created(d, placed=True) == {}  # neither is pinned onto GPUs still in use
    assert d.plan.room_for == {"ns/low": ("ns/high",), "ns/other": ("ns/later",)}
    assert d.plan.reserved == {
        "ns/high": high_on_a,
        "ns/later": (Placement("ns/later", JobKind.TRAINING, 0, "b", 8),),
    }
    # a victim the plan knows of counts whatever its reported phase (placed, waiting again)
    low["status"] = {"phase": "Unschedulable"}
    again = decide(state, earlier)
    assert "preempted ns/low, still terminating" in status(again, "high")["message"]
    assert again.plan.room_for == d.plan.room_for
    # the victim gone, its room goes to the job it was evicted for
    state = replace(state, pods=(pod_of(other, 0, "b"),))
    assert created(decide(state, d.plan), placed=True) == {"high-worker-0": "a"}


def test_a_job_awaiting_its_victim_takes_gpus_freed_elsewhere_at_once() -> None:
    low = gang("low", 1, 8, preemptible=True, status={"phase": "Preempted"})
    high = gang("high", 1, 8, priority=100)
    state = ClusterState(
        nodes=(node("a"), node("b")),  # b: its job ended since low was evicted for high
        pods=(_terminating(pod_of(low, 0, "a")),),
        jobs=(low, high),
        now=NOW,
    )
    earlier = Plan(
        "OPTIMAL",
        0,
        0,
        0,
        room_for={"ns/low": ("ns/high",)},
        reserved={"ns/high": (Placement("ns/high", JobKind.TRAINING, 0, "a", 8),)},
    )
    d = decide(state, earlier)
    assert created(d, placed=True) == {"high-worker-0": "b"} and deleted(d) == {}


def test_no_new_victims_while_victims_of_unknown_purpose_terminate() -> None:
    """After a restart the last plan is lost: whom the terminating victims made room for is
    unknown, so no round evicts until they are gone (or the planner would evict anew for the
    capacity they still hold); one stuck past its grace period stops holding that back."""
    low = gang("low", 1, 8, preemptible=True, status={"phase": "Preempted"})
    other = gang("other", 1, 8, preemptible=True)
    high = gang("high", 1, 8, priority=100)
    nodes = [node("a"), node("b")]
    leaving = _terminating(pod_of(low, 0, "a"))
    d = run(nodes, [low, other, high], [leaving, pod_of(other, 0, "b")])
    assert deleted(d) == {}
    assert "preempted pods are still terminating" in status(d, "high")["message"]
    stuck = _terminating(pod_of(low, 0, "a"), "2027-01-15T07:58:00Z")  # due 2 minutes ago
    d = run(nodes, [low, other, high], [stuck, pod_of(other, 0, "b")])
    assert set(deleted(d)) == {"other-worker-0"}


def test_grace_period_per_job_overrides_the_policy() -> None:
    low = gang("low", 1, 8, preemptible=True, preemptionGracePeriodSeconds=5)
    high = gang("high", 1, 8, priority=100)
    d = run([node("a")], [low, high], [pod_of(low, 0, "a")])
    assert deleted(d)["low-worker-0"].grace_seconds == 5


def test_a_job_named_against_the_service_rules_is_refused_not_half_run() -> None:
    d = run([node("a")], [gang("7b-sft", 1, 8), gang("sft-7b", 1, 8)])
    assert "DNS-1035" in status(d, "7b-sft")["message"]
    assert created(d, placed=True) == {"sft-7b-worker-0": "a"}


def test_a_pod_spec_the_api_server_refuses_makes_the_job_invalid_until_it_changes() -> None:
    j = gang("huge-annotation", 1, 8)
    state = ClusterState(
        nodes=(node("a"),),
        pods=(),
        jobs=(j,),
        now=NOW,
        write_failures={"ns/huge-annotation": "CreatePod 422: metadata.annotations: Too long"},
    )
    d = decide(state)
    assert status(d, "huge-annotation")["phase"] == "Failed"
    assert (
        "refuses its pods: 422: metadata.annotations: Too long"
        in status(d, "huge-annotation")["message"]
    )
    assert created(d) == {}


def test_a_node_without_a_memory_label_is_not_used_to_size_a_model() -> None:
    unknown = node("unknown")
    del unknown["metadata"]["labels"]["nvidia.com/gpu.memory"]
    d = run([unknown, node("a")], [job("sft", model={"parameters": "7B"})])
    assert status(d, "sft")["phase"] == "Allocated"


def test_a_memo_of_job_parses_gives_the_same_decision_and_follows_spec_changes() -> None:
    bad = gang("bad", 1, 1)
    bad["spec"]["template"]["spec"]["hostNetwork"] = True  # refused unless the policy allows
    jobs = [gang("wide", 2, 8), gang("small", 1, 2), bad, job("sft", model={"parameters": "7B"})]
    state = ClusterState(nodes=(node("a"), node("b")), pods=(), jobs=tuple(jobs), now=NOW)
    first = decide(state)
    assert first.memo is not None and len(first.memo.parsed) == 4
    again, fresh = decide(state, first.plan, first.memo), decide(state, first.plan)
    assert again.writes == fresh.writes and again.refused == fresh.refused
    assert "hostNetwork" in again.refused["ns/bad"]
    # a spec change bumps the generation: the memo's parse of the old spec is not used
    wider = gang("wide", 2, 4)
    wider["metadata"]["generation"] = 2
    changed = ClusterState(nodes=state.nodes, pods=(), jobs=(wider, *jobs[1:]), now=NOW)
    assert created(decide(changed, first.plan, first.memo), placed=True) == created(
        decide(changed, first.plan), placed=True
    )
    assert {
        w.pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
        for w in decide(changed, first.plan, first.memo).writes
        if isinstance(w, CreatePod) and w.job == "ns/wide"
    } == {"4"}
    # other nodes (they size spec.model jobs): the memo is not used at all
    bigger = ClusterState(nodes=(node("a", gpus=4),), pods=(), jobs=tuple(jobs), now=NOW)
    assert decide(bigger, None, first.memo).writes == decide(bigger).writes


def test_a_memo_of_job_reports_gives_the_same_writes_round_after_round() -> None:
    """Job reports that left a status unchanged are kept by (job and pods' versions, the
    outcome): a later round with the same key writes exactly what a fresh report would."""
    jobs = [gang("run", 1, 8), gang("wait", 2, 8), job("chat", "LLMInferenceJob", replicas=1)]
    running = pod_of(jobs[0], 0, "a")
    for n, obj in enumerate([*jobs, running]):
        obj["metadata"]["resourceVersion"] = str(n + 1)
    state = ClusterState(nodes=(node("a"), node("b")), pods=(running,), jobs=tuple(jobs), now=NOW)

    def written(d: Decision) -> ClusterState:
        """The state once the round's status writes are in (each a new resourceVersion)."""
        by_name = {w.name: w.status for w in d.writes if isinstance(w, PatchJobStatus)}
        new = []
        for j in state.jobs:
            j = {**j, "metadata": dict(j["metadata"])}
            if j["metadata"]["name"] in by_name:
                j["status"] = by_name[j["metadata"]["name"]]
                j["metadata"]["resourceVersion"] += "x"
            new.append(j)
        return replace(state, jobs=tuple(new))

    memo, previous = None, None
    for rounds in range(4):
        fresh = decide(state, previous)
        kept = decide(state, previous, memo)
        assert kept.writes == fresh.writes and kept.phases == fresh.phases
        memo, previous = kept.memo, kept.plan
        state = replace(written(kept), now=NOW + rounds + 1)
    assert memo is not None and memo.reports  # unchanged reports were kept and reused
