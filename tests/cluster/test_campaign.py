"""The fault and bad-input campaign (issue 11, section 6) on the real local control plane.

1. A corpus of hostile objects (tests/cluster/hostile/corpus.py: jobs, malformed nodes, a pod
   squatting on a worker's name, bad AllocationPolicies) applied next to valid jobs. Each
   hostile object must be refused by the API server or reported on its own status; the valid
   jobs run in their usual time; the operator's RSS stays under 300 MiB and no job ever has
   more pods than its cap.
2. Crash consistency: the operator is SIGKILLed at seeded random points of a burst of gang
   creations and restarted; afterwards nothing is lost, duplicated, half-placed or overbooked.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.cluster.conftest import GROUP, PLURAL, VERSION, Env, Kube
from tests.cluster.hostile.corpus import (
    BAD_POLICIES,
    INFERENCE,
    SERVICE_ACCOUNT,
    TRAINING,
    Case,
    job_cases,
    node_cases,
    node_manifest,
    squatter,
)
from tests.cluster.operator_harness import (
    H100,
    OperatorProcess,
    inference,
    job,
    pod_dicts,
    pod_gpus,
    pod_node,
    rss_mib,
    training,
)
from tests.cluster.prometheus_harness import Policy

pytestmark = pytest.mark.cluster

Obj = dict[str, Any]
JOB_LABEL = "gpualloc.io/job"
RSS_LIMIT_MIB = 300.0
DEFAULT_CAP = 512  # AllocationPolicy spec.limits.maxPodsPerJob when unset
TEST_CAP = 64  # the cap this campaign sets, so a runaway job is caught early
GOOD_POLICY: Obj = {"limits": {"maxPodsPerJob": TEST_CAP}, "solver": {"timeLimitSeconds": 5}}
VALID_WITHIN = 60.0  # a valid job's usual time to Running, hostile neighbours or not
REPORTED_WITHIN = 90.0  # a hostile job's time to be reported on its status
SQUATTED = "h-squatted"
SEED = 11
KILLS = 11
GANGS = 12


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def operator(
    kube: Kube, crds: None, cap: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The campaign's operator, started once the campaign's policy is in place."""
    op = OperatorProcess(kube.kubeconfig, tmp_path_factory.mktemp("campaign"), "campaign")
    op.start().wait_leading()
    yield op
    op.stop()


def _revive(op: OperatorProcess) -> None:
    """Start the operator again if a test killed it (the watchdog does, to spare the
    machine), so the next test has one."""
    if op.proc is None or op.proc.poll() is not None:
        op.start()
        op.wait_leading(timeout=60)


@pytest.fixture(scope="module")
def cap(kube: Kube, crds: None) -> Iterator[int]:
    """Sets the campaign's policy; the pod cap per job in force (what the API stored: a
    schema without spec.limits prunes it, and the operator's default applies)."""
    policy = Policy(kube)
    before = policy.get()
    policy.set_spec(GOOD_POLICY)
    stored = policy.get() or {}
    yield int(((stored.get("spec") or {}).get("limits") or {}).get("maxPodsPerJob", DEFAULT_CAP))
    if before is None:
        policy.delete()
    else:
        policy.set_spec(before.get("spec") or {})


def _refusal(err: ApiException) -> str:
    """The API server's message for a refused request."""
    try:
        return str(json.loads(err.body).get("message", err.body))[:300]
    except (TypeError, ValueError):
        return f"{err.status} {err.reason}"


def _refused(err: ApiException) -> bool:
    """A refusal at admission (validation, schema, CEL, decoding), not an outage."""
    return err.status in (400, 403, 413, 422)


# -- the watchdog --------------------------------------------------------------------------
Check = Callable[[list[Obj]], list[str]]


class Watchdog(threading.Thread):
    """Samples, every half second, the operator's RSS and the namespace's pods.

    Records the largest RSS, the most pods each job ever had, every pod name and node each
    job ever held, and what `checks` find wrong in a sample (one line per object, the first
    time). Beyond 1 GiB of RSS or twice a job's cap it kills the operator: the machine is
    shared, and the test has failed anyway."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        operator: OperatorProcess,
        cap: Callable[[str], int],
        checks: tuple[Check, ...] = (),
        rss_limit: float | None = RSS_LIMIT_MIB,
    ) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace, self.operator = kube, namespace, operator
        self.cap, self.checks, self.rss_limit = cap, checks, rss_limit
        self.rss_max = 0.0
        self.rss_samples = 0
        self.most_pods: Counter[str] = Counter()
        self.ever: dict[str, set[str]] = defaultdict(set)  # job -> pod names ever seen
        self.held: dict[str, set[str]] = defaultdict(set)  # job -> nodes its pods held
        self.found: dict[str, str] = {}  # "object: problem" lines, keyed by the object
        self.errors: list[str] = []
        self.tripped = threading.Event()
        self.latest: list[Obj] = []
        self._halt = threading.Event()

    @property
    def violations(self) -> list[str]:
        return list(self.found.values())

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.sample()
            except Exception as err:  # an API hiccup must not end the sampling
                self.errors.append(repr(err)[:200])
            self._halt.wait(0.5)

    def sample(self) -> None:
        proc = self.operator.proc
        if proc is not None and proc.poll() is None:
            rss = rss_mib(proc.pid)
            if rss is not None:
                self.rss_samples += 1
                self.rss_max = max(self.rss_max, rss)
                if self.rss_limit is not None and rss > self.rss_limit:
                    self._found(f"operator RSS: {rss:.0f} MiB > {self.rss_limit:.0f} MiB")
                if rss > 1024:
                    self._trip()
        pods = pod_dicts(self.kube.core, self.namespace)
        self.latest = pods
        per_job: Counter[str] = Counter()
        for pod in pods:
            name = (pod.get("metadata") or {}).get("labels", {}).get(JOB_LABEL)
            if not name:
                continue
            per_job[name] += 1
            self.ever[name].add(pod["metadata"]["name"])
            if node := pod_node(pod):
                self.held[name].add(node)
        for name, count in per_job.items():
            self.most_pods[name] = max(self.most_pods[name], count)
            if count > self.cap(name):
                self._found(f"job {name}: {count} pods > at most {self.cap(name)}")
            if count > 2 * self.cap(name):
                self._trip()
        for check in self.checks:
            for problem in check(pods):
                self._found(problem)

    def _found(self, problem: str) -> None:
        self.found.setdefault(problem.split(":")[0], problem)

    def _trip(self) -> None:
        if not self.tripped.is_set():
            self.tripped.set()
            self._found("watchdog: killed the operator to protect the shared machine")
            self.operator.kill()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


def overbooked(allocatable: dict[str, int]) -> Check:
    """A check: no node's pods hold more GPUs than the node has."""

    def check(pods: list[Obj]) -> list[str]:
        held: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for pod in pods:
            node = pod_node(pod)
            if node in allocatable:
                held[node].append((pod["metadata"]["name"], pod_gpus(pod)))
        return [
            f"node {n}: pods hold {sum(g for _, g in ps)} GPUs of its {allocatable[n]}: {ps}"
            for n, ps in held.items()
            if sum(g for _, g in ps) > allocatable[n]
        ]

    return check


# -- job status ------------------------------------------------------------------------------
def _invalid(status: Obj) -> bool:
    return any(
        c.get("type") == "Invalid" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def reported(status: Obj) -> bool:
    """The job says on its own status that it cannot run, and why."""
    why = bool((status.get("message") or "").strip())
    return why and (status.get("phase") in ("Failed", "Unschedulable") or _invalid(status))


def _conditions(status: Obj) -> str:
    return ",".join(f"{c.get('type')}={c.get('status')}" for c in status.get("conditions") or [])


def _shown(status: Obj) -> str:
    return f"phase {status.get('phase')!r}, message {str(status.get('message'))[:160]!r}" + (
        ", condition Invalid" if _invalid(status) else ""
    )


# -- 1. the bad-input corpus -------------------------------------------------------------------
def valid_jobs(namespace: str, pool: str) -> list[Obj]:
    """What users wait for while the hostile objects are around."""
    return [
        training("valid-gang", namespace, pool, 2, 4, 1000, gpu={"products": [H100]}),
        inference("valid-infer", namespace, pool, 2, 1, 1000, gpu={"minMemoryMiB": 40960}),
        job(TRAINING, "valid-sized", namespace, pool, 1000, model={"parameters": "7B"},
            gpu={"products": [H100]}),
    ]  # fmt: skip


@dataclass
class Corpus:
    """What the campaign saw; each test of TestBadInputCorpus checks one promise on it."""

    env: Env
    cap: int
    cases: list[Case]
    watchdog: Watchdog
    refused: dict[str, str] = field(default_factory=dict)  # object id -> API message
    errors: dict[str, str] = field(default_factory=dict)  # object id -> unexpected API error
    status: dict[str, Obj] = field(default_factory=dict)  # case id -> last status seen
    reported_after: dict[str, float] = field(default_factory=dict)  # case id -> seconds
    running_after: dict[str, float] = field(default_factory=dict)  # valid job -> seconds
    nodes: dict[str, str] = field(default_factory=dict)  # node case id -> accepted node
    memory_of: dict[str, int | None] = field(default_factory=dict)  # node -> MiB promised
    squatter_before: Obj = field(default_factory=dict)
    squatter_after: Obj | None = None
    squatter_counted: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> str:
        most = self.watchdog.most_pods.most_common(3)
        lines = [
            f"corpus run: {self.elapsed:.0f} s, cap {self.cap}, RSS max "
            f"{self.watchdog.rss_max:.0f} MiB, most pods {most}"
        ]
        for key, message in self.refused.items():
            lines.append(f"  refused   {key[:40]}: {message[:150]}")
        for key, status in self.status.items():
            after = self.reported_after.get(key, self.running_after.get(key))
            when = f"{after:.0f}s" if after is not None else "never"
            lines.append(f"  {when:>6}    {key[:40]}: {_shown(status)} {_conditions(status)}")
        lines += [f"  node      {k}: accepted as {v}" for k, v in self.nodes.items()]
        lines += [f"  watchdog  {v}" for v in self.watchdog.violations]
        for pod in self.watchdog.latest:  # why a valid job is not running, pod by pod
            name = pod["metadata"]["name"]
            if name.startswith("valid-") and pod.get("status", {}).get("phase") != "Running":
                scheduled = [c.get("message") for c in pod["status"].get("conditions") or []
                             if c.get("type") == "PodScheduled"]  # fmt: skip
                lines.append(f"  pod       {name}: held node {pod_node(pod)}, {scheduled}")
        return "\n".join(lines)


class CorpusRun:
    """Applies the corpus and watches until everything is settled or the bound passes."""

    def __init__(self, kube: Kube, operator: OperatorProcess, cap: int) -> None:
        self.kube = kube
        self.env = Env(kube)
        self.operator = operator
        self.cap = cap
        self.allocatable: dict[str, int] = {}  # GPUs of the test's nodes, for `overbooked`

    def create_job(self, corpus: Corpus, key: str, obj: Obj) -> float | None:
        """Creates a job; its creation time, or None when the API server refused it."""
        try:
            self.env.apply(obj)
        except ApiException as err:
            (corpus.refused if _refused(err) else corpus.errors)[key] = _refusal(err)
            return None
        return time.monotonic()

    def create_nodes(self, corpus: Corpus) -> None:
        for case in node_cases():
            name = f"{self.env.pool}-bad-{case.id}"
            try:
                self.kube.core.create_node(node_manifest(case, name, self.env.pool))
            except ApiException as err:
                (corpus.refused if _refused(err) else corpus.errors)[f"node {case.id}"] = _refusal(
                    err
                )
                continue
            self.env.nodes.append(name)
            self.allocatable[name] = int(float(case.allocatable_gpus))
            corpus.nodes[case.id] = name
            corpus.memory_of[name] = case.memory_mib

    def start_squatter(self, corpus: Corpus) -> None:
        pod = squatter(self.env.namespace, self.env.pool, SQUATTED)
        self.kube.core.create_namespaced_pod(self.env.namespace, pod)

        def bound() -> Obj | None:
            pod = self._squatter()
            return pod if pod and pod["spec"].get("nodeName") else None

        corpus.squatter_before = self.kube.wait_for(
            bound, timeout=30, what="the squatting pod bound by kube-scheduler"
        )

    def _squatter(self) -> Obj | None:
        try:
            resp = self.kube.core.read_namespaced_pod(
                f"{SQUATTED}-worker-0", self.env.namespace, _preload_content=False
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        pod: Obj = json.loads(resp.data)
        return pod

    def run(self) -> Corpus:
        env = self.env
        pool_nodes = env.add_nodes(4, H100)
        self.kube.core.create_namespaced_service_account(
            env.namespace, {"metadata": {"name": SERVICE_ACCOUNT}}
        )
        cases = job_cases(env.namespace, env.pool, pool_nodes[0])
        squatted = training(SQUATTED, env.namespace, env.pool, workers=2, gpus=1)
        cases.append(Case(SQUATTED, squatted, "its worker-0 name is held by another pod"))
        self.allocatable.update(dict.fromkeys(pool_nodes, 8))  # malformed ones join if accepted
        watchdog = Watchdog(
            self.kube, env.namespace, self.operator, lambda _: self.cap,
            checks=(overbooked(self.allocatable),),
        )  # fmt: skip
        corpus = Corpus(env, self.cap, cases, watchdog)
        watchdog.start()
        started = time.monotonic()
        self.start_squatter(corpus)
        self.create_nodes(corpus)
        self.add_memory_probe(corpus, cases)
        created: dict[str, float] = {}
        valid = valid_jobs(env.namespace, env.pool)
        # valid jobs in the middle of the hostile ones: applied together, as a tenant would
        order: list[tuple[str, Obj]] = [(c.id, c.obj) for c in cases]
        third = len(order) // 3
        order[third:third] = [(j["metadata"]["name"], j) for j in valid[:2]]
        order[2 * third :] = [(valid[2]["metadata"]["name"], valid[2]), *order[2 * third :]]
        for key, obj in order:
            at = self.create_job(corpus, key, obj)
            if at is not None:
                created[key] = at
        self.watch(corpus, created, {j["metadata"]["name"] for j in valid})
        corpus.squatter_after = self._squatter()
        # the operator may settle in seconds: keep watching its RSS (and the caps) through the
        # rounds that follow the burst too
        while time.monotonic() - started < 15 and not watchdog.tripped.is_set():
            time.sleep(0.5)
        watchdog.stop()
        corpus.elapsed = time.monotonic() - started
        return corpus

    def add_memory_probe(self, corpus: Corpus, cases: list[Case]) -> None:
        """A valid job needing 40 GiB GPUs, allowed only onto the nodes whose memory label is
        not a number: it must wait (Unschedulable), never be placed on an unproven promise."""
        unproven = [n for n, mib in corpus.memory_of.items() if mib is None]
        if not unproven:
            return
        probe = inference("probe-memory", self.env.namespace, self.env.pool, 1, 1,
                          gpu={"minMemoryMiB": 40960})  # fmt: skip
        probe["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": unproven}
                ]}
            ]}
        }}  # fmt: skip
        cases.append(Case("probe-memory", probe, "only nodes with a malformed memory label"))

    def watch(self, corpus: Corpus, created: dict[str, float], valid: set[str]) -> None:
        """Polls the jobs until every valid job runs and every hostile one is reported, or
        the bound passes (or the watchdog has killed the operator)."""
        custom, ns = self.env.custom, self.env.namespace
        hostile = {c.id: c for c in corpus.cases if c.id in created}
        deadline = time.monotonic() + max(VALID_WITHIN, REPORTED_WITHIN)
        while time.monotonic() < deadline and not corpus.watchdog.tripped.is_set():
            now = time.monotonic()
            objs = {
                o["metadata"]["name"]: o
                for plural in PLURAL.values()
                for o in custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]
            }
            for name in valid & objs.keys():
                corpus.status[name] = objs[name].get("status") or {}
                if corpus.status[name].get("phase") == "Running":
                    corpus.running_after.setdefault(name, now - created[name])
            for key, case in hostile.items():
                status = (objs.get(case.name) or {}).get("status") or {}
                corpus.status[key] = status
                if reported(status):
                    corpus.reported_after.setdefault(key, now - created[key])
            if SQUATTED in objs:
                self.check_squatted(corpus, objs[SQUATTED])
            waiting_valid = (valid & created.keys()) - corpus.running_after.keys()
            waiting_hostile = hostile.keys() - corpus.reported_after.keys()
            if not waiting_valid and not waiting_hostile:
                return
            time.sleep(1)

    def check_squatted(self, corpus: Corpus, obj: Obj) -> None:
        """The squatted job's status may count only pods the job owns (by UID) that hold a
        node, never the squatter. The pods are read after the status, so they are at least
        as new as what it counts."""
        status = obj.get("status") or {}
        uid = obj["metadata"]["uid"]
        pods = self.kube.core.list_namespaced_pod(
            self.env.namespace, label_selector=f"{JOB_LABEL}={SQUATTED}", _preload_content=False
        )
        holding = {
            int(p["metadata"]["labels"].get("gpualloc.io/replica", -1))
            for p in json.loads(pods.data)["items"]
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
            and pod_node(p)
        }
        counted = {a.get("replica") for a in status.get("allocation") or []}
        if counted - holding or (status.get("placed") or 0) > len(holding):
            corpus.squatter_counted.append(
                f"status counts pods the job does not own: placed {status.get('placed')}, "
                f"allocation {status.get('allocation')}, own pods holding a node: {holding}"
            )


class TestBadInputCorpus:
    """One corpus run (class scope), one test per promise so each is reported on its own."""

    @pytest.fixture(scope="class")
    @classmethod
    def corpus(cls, kube: Kube, operator: OperatorProcess, cap: int) -> Iterator[Corpus]:
        run = CorpusRun(kube, operator, cap)
        try:
            corpus = run.run()
            print(corpus.summary())  # shown with -rA: what happened to every object
            yield corpus
        finally:
            run.env.close()
            _revive(operator)

    def test_api_server_never_errors(self, corpus: Corpus) -> None:
        assert not corpus.errors, f"API errors other than a refusal: {corpus.errors}"

    def test_valid_jobs_run_in_their_usual_time(self, corpus: Corpus) -> None:
        late = {
            name: corpus.running_after.get(name)
            for name in ("valid-gang", "valid-infer", "valid-sized")
            if corpus.running_after.get(name, math.inf) > VALID_WITHIN
        }
        detail = {n: corpus.refused.get(n) or _shown(corpus.status.get(n, {})) for n in late}
        assert not late, f"not Running within {VALID_WITHIN:.0f} s: {detail}"

    def test_hostile_jobs_are_refused_or_reported(self, corpus: Corpus) -> None:
        unreported = []
        for case in corpus.cases:
            if case.id in corpus.refused or case.id == "probe-memory":
                continue
            after = corpus.reported_after.get(case.id, math.inf)
            if after <= REPORTED_WITHIN:
                continue
            status = corpus.status.get(case.id, {})
            if case.name_only and _runs_with_rendezvous(corpus, case):
                continue
            unreported.append(f"{case.kind} {case.name[:40]} ({case.why}): {_shown(status)}")
        assert not unreported, (
            f"{len(unreported)} hostile jobs neither refused by the API server nor reported "
            f"(Failed / Invalid / Unschedulable with a message) within {REPORTED_WITHIN:.0f} s:\n"
            + "\n".join(unreported)
        )

    def test_reported_failures_have_a_warning_event(self, corpus: Corpus) -> None:
        silent = []
        for case in corpus.cases:
            status = corpus.status.get(case.id, {})
            if case.id in corpus.refused or not (status.get("phase") == "Failed"
                                                 or _invalid(status)):  # fmt: skip
                continue
            events = corpus.env.kube.core.list_namespaced_event(
                corpus.env.namespace, field_selector=f"involvedObject.name={case.name}"
            ).items
            if not any(e.type == "Warning" for e in events):
                silent.append(case.name)
        assert not silent, f"reported Failed/Invalid without a Warning Event: {silent}"

    def test_confused_deputy_templates_never_get_a_pod(self, corpus: Corpus) -> None:
        granted = {
            c.name: sorted(corpus.watchdog.ever[c.name])
            for c in corpus.cases
            if c.security and c.id not in corpus.refused and corpus.watchdog.ever[c.name]
        }
        assert not granted, f"pods created from templates the policy does not allow: {granted}"

    def test_operator_rss_stays_under_300_mib(self, corpus: Corpus) -> None:
        assert corpus.watchdog.rss_samples > 10, "the operator's RSS was hardly sampled"
        rss = [v for v in corpus.watchdog.violations if "RSS" in v]
        assert not rss, f"{rss} (largest sample {corpus.watchdog.rss_max:.0f} MiB)"

    def test_no_job_ever_has_more_pods_than_its_cap(self, corpus: Corpus) -> None:
        over = {j: n for j, n in corpus.watchdog.most_pods.items() if n > corpus.cap}
        assert not over, f"most pods seen per job over the cap of {corpus.cap}: {over}"
        assert not corpus.watchdog.tripped.is_set(), corpus.watchdog.violations

    def test_no_node_is_ever_overbooked(self, corpus: Corpus) -> None:
        """Pods bound or pinned to a node never ask more GPUs than it has: a template's
        own GPU requests count (kube-scheduler counts them), or a valid pod pinned beside
        them can never bind."""
        over = [v for v in corpus.watchdog.violations if v.startswith("node ")]
        assert not over, over

    def test_squatting_pod_is_neither_adopted_counted_nor_touched(self, corpus: Corpus) -> None:
        before, after = corpus.squatter_before, corpus.squatter_after
        assert after is not None, "gpualloc deleted the squatting pod"

        def identity(pod: Obj) -> Obj:
            meta, spec = pod["metadata"], pod["spec"]
            return {
                "uid": meta["uid"],
                "labels": meta.get("labels"),
                "annotations": meta.get("annotations"),
                "ownerReferences": meta.get("ownerReferences"),
                "deletionTimestamp": meta.get("deletionTimestamp"),
                "schedulingGates": spec.get("schedulingGates"),
                "affinity": spec.get("affinity"),
                "nodeName": spec.get("nodeName"),
            }

        assert identity(after) == identity(before), "gpualloc changed the squatting pod"
        assert not corpus.squatter_counted, corpus.squatter_counted[0]
        status = corpus.status.get(SQUATTED, {})
        assert SQUATTED in corpus.reported_after, f"conflict not reported: {_shown(status)}"
        assert f"{SQUATTED}-worker-0" in status.get("message", ""), (
            f"the report does not name the squatting pod: {_shown(status)}"
        )

    def test_malformed_nodes_are_refused_or_never_trusted(self, corpus: Corpus) -> None:
        unproven = {n for n, mib in corpus.memory_of.items() if mib is None}
        misplaced = {
            j: sorted(corpus.watchdog.held[j] & unproven)
            for j in ("valid-infer", "probe-memory")
            if corpus.watchdog.held[j] & unproven
        }
        assert not misplaced, (
            f"jobs needing 40 GiB GPUs held nodes whose memory label is no number: {misplaced}"
        )
        if "probe-memory" in corpus.status:
            status = corpus.status["probe-memory"]
            assert status.get("phase") == "Unschedulable" and status.get("message"), (
                f"probe-memory (only malformed-memory nodes allowed): {_shown(status)}"
            )
        accepted = sorted(corpus.nodes)
        refused = sorted(k for k in corpus.refused if k.startswith("node "))
        assert len(accepted) + len(refused) == len(node_cases()), (accepted, refused)


def _runs_with_rendezvous(corpus: Corpus, case: Case) -> bool:
    """A job hostile only by its name is also handled when it runs and its workers'
    MASTER_ADDR names a Service that exists (gpualloc derived valid names)."""
    if corpus.status.get(case.id, {}).get("phase") != "Running":
        return False
    pods = corpus.env.pods(case.name)
    if not pods or any(p.status.phase != "Running" for p in pods):
        return False
    master = {e.name: e.value for e in pods[0].spec.containers[0].env or []}.get("MASTER_ADDR")
    parts = (master or "").split(".")
    if len(parts) < 3:
        return False
    try:
        corpus.env.kube.core.read_namespaced_service(parts[1], corpus.env.namespace)
    except ApiException:
        return False
    return True


# -- 1b. bad cluster-wide policies -------------------------------------------------------------
def test_bad_default_policies_never_stop_planning(
    kube: Kube, operator: OperatorProcess, cap: int
) -> None:
    """Each bad `default` policy is refused, or planning goes on under it: a new 1-GPU job
    runs within 30 s. The good policy is restored after each one."""
    _revive(operator)
    policy = Policy(kube)
    env = Env(kube)
    watchdog = Watchdog(kube, env.namespace, operator, lambda _: cap)
    outcome: dict[str, str] = {}
    stalled: list[str] = []
    try:
        env.add_nodes(1)
        watchdog.start()
        for i, (case, spec) in enumerate(BAD_POLICIES):
            try:
                policy.set_spec(spec)
            except ApiException as err:
                if not _refused(err):
                    raise
                outcome[case] = f"refused: {_refusal(err)[:100]}"
                continue
            name = f"probe-{i}"
            env.apply(inference(name, env.namespace, env.pool, replicas=1, gpus=1))
            try:
                env.wait_phase(INFERENCE, name, "Running", timeout=30)
                outcome[case] = "accepted; planning went on"
            except TimeoutError:
                phase = env.phase(INFERENCE, name)
                stalled.append(f"{case} {spec}: a new job still {phase} after 30 s")
                operator.kill()  # a stuck loop would spoil the next case: start afresh
                operator.start()
                operator.wait_leading(timeout=60)
            finally:
                policy.set_spec(GOOD_POLICY)
                env.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, env.namespace, PLURAL[INFERENCE], name
                )
    finally:
        policy.set_spec(GOOD_POLICY)
        watchdog.stop()
        env.close()
        _revive(operator)
    print("\n".join(f"{case}: {what}" for case, what in outcome.items()))
    assert not stalled, f"planning stopped under an accepted policy: {stalled}; all: {outcome}"
    rss = [v for v in watchdog.violations if "RSS" in v]
    assert not rss, f"{rss}; outcomes: {outcome}"


# -- 2. crash consistency ----------------------------------------------------------------------
def kill_at_first_pod(
    kube: Kube, namespace: str, jobs: list[str], op: OperatorProcess, delay: float
) -> None:
    """SIGKILLs the operator `delay` seconds after the first pod of `jobs` is created, so
    the kill lands inside the writes of the round that places them (~0.1 s here: a delay
    from the jobs' creation alone seldom does)."""
    stream = watch.Watch()
    selector = f"{JOB_LABEL} in ({','.join(jobs)})"
    for _ in stream.stream(
        kube.core.list_namespaced_pod, namespace, label_selector=selector, timeout_seconds=10
    ):
        stream.stop()
        break
    time.sleep(delay)
    op.kill()


def test_sigkill_during_a_burst_of_gangs_loses_and_duplicates_nothing(
    kube: Kube, operator: OperatorProcess, cap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 gangs of 2-4 workers are created while the operator is SIGKILLed 11 times at
    seeded random points and restarted; afterwards every gang runs whole, exactly once,
    and no node ever holds more GPUs than it has."""
    monkeypatch.setenv("GPUALLOC_LEASE_SECONDS", "4")  # a restarted replica leads quickly
    _revive(operator)
    rng = random.Random(SEED)
    gangs = {f"g{i:02d}": (rng.randint(2, 4), rng.choice((1, 2, 4))) for i in range(GANGS)}
    # 1, 2 and 4 divide 8, so first-fit fills whole nodes: the burst fits in `nodes`
    nodes = math.ceil(sum(w * g for w, g in gangs.values()) / 8) + 1
    env = Env(kube)
    names = env.add_nodes(nodes)
    watchdog = Watchdog(
        kube, env.namespace, operator,
        cap=lambda name: gangs[name][0] if name in gangs else cap,
        checks=(overbooked(dict.fromkeys(names, 8)),), rss_limit=None,
    )  # fmt: skip
    try:
        watchdog.start()
        batches = [list(gangs)[k * GANGS // KILLS : (k + 1) * GANGS // KILLS] for k in range(KILLS)]
        for batch in batches:
            for name in batch:
                workers, gpus = gangs[name]
                env.apply(training(name, env.namespace, env.pool, workers, gpus))
            if rng.random() < 0.75:  # mostly amid the writes, else anywhere in the round
                kill_at_first_pod(kube, env.namespace, batch, operator, rng.uniform(0, 0.05))
            else:
                time.sleep(rng.uniform(0.0, 1.5))
                operator.kill()
            now = pod_dicts(kube.core, env.namespace)
            want = sum(gangs[n][0] for n in list(gangs)[: list(gangs).index(batch[-1]) + 1])
            held = sum(1 for p in now if pod_node(p))
            phases = [env.phase(TRAINING, n) for n in batch]
            print(f"kill after {batch}: {len(now)} of {want} pods, {held} holding a node, {phases}")
            operator.start()
            operator.wait_leading(timeout=60)
        jobs = {n: env.get(TRAINING, n) for n in gangs}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
            (j.get("status") or {}).get("phase") != "Running" for j in jobs.values()
        ):
            time.sleep(1)
            jobs = {n: env.get(TRAINING, n) for n in gangs}
        pods = pod_dicts(kube.core, env.namespace)
    finally:
        watchdog.stop()
        env.close()
    lost = {n: _shown(j.get("status") or {}) for n, j in jobs.items()
            if (j.get("status") or {}).get("phase") != "Running"}  # fmt: skip
    assert not lost, f"not Running 120 s after the last of {KILLS} kills: {lost}"
    problems = watchdog.violations
    by_job: dict[str, list[Obj]] = defaultdict(list)
    for pod in pods:
        by_job[pod["metadata"]["labels"][JOB_LABEL]].append(pod)
    for name, (workers, _) in gangs.items():
        mine = by_job[name]
        replicas = sorted(int(p["metadata"]["labels"]["gpualloc.io/replica"]) for p in mine)
        if replicas != list(range(workers)):
            problems.append(f"{name}: replicas {replicas}, want 0..{workers - 1} once each")
        uid = jobs[name]["metadata"]["uid"]
        if any(all(r.get("uid") != uid for r in p["metadata"].get("ownerReferences") or [])
               for p in mine):  # fmt: skip
            problems.append(f"{name}: a pod not owned by the job")
        if len({pod_node(p) is not None for p in mine}) > 1:
            problems.append(f"{name}: only some workers ungated")
    assert not problems, problems
