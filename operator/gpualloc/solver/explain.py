"""Why a job was not placed, in words a person can act on."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from gpualloc.model import Job, Node, NodeRequirements, Placement
from gpualloc.solver.capacity import Free
from gpualloc.solver.eligibility import rejection
from gpualloc.solver.topology import display, node_domain, scope, short_name


def _products(job: Job) -> str:
    products = job.requirements.products
    return " of " + "|".join(products) if products else ""


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _unit(job: Job) -> str:
    return "worker" if job.kind == "LLMTrainingJob" else "replica"


def no_eligible_node(job: Job, nodes: Sequence[Node]) -> str | None:
    """A reason when no node could ever take the job, whatever else runs."""
    need = job.gpus_per_replica
    if not nodes:
        return "the cluster has no GPU nodes"
    largest = max(n.gpus for n in nodes)
    if need > largest:
        return f"needs {need} GPUs on one node; the largest node has {largest}"
    big = [n for n in nodes if n.gpus >= need]
    rejections = Counter(rejection(job.requirements, n) for n in big)
    if rejections[None]:
        return None
    req = job.requirements
    if rejections["product"] == len(big):
        have = sorted({n.product for n in big})
        return (
            f"no node allows its products ({', '.join(req.products)}); "
            f"nodes with {need}+ GPUs have {', '.join(have)}"
        )
    if rejections["gpu memory"] and not rejections["product"] and len(rejections) == 1:
        most = max(n.gpu_memory_mib for n in big)
        return f"needs {req.min_gpu_memory_mib} MiB per GPU; the most any node has is {most}"
    parts = [f"{plural(count, 'node')}: {why}" for why, count in rejections.most_common()]
    return f"no node with {need}+ GPUs accepts it ({'; '.join(parts)})"


class Explainer:
    """Reasons for many jobs at once; work shared by jobs with the same requirements is
    done once, so explaining thousands of pending jobs stays cheap."""

    def __init__(
        self,
        nodes: Sequence[Node],
        free: Mapping[str, Free],
        placements: Sequence[Placement],
        jobs_by_key: Mapping[str, Job],
        solver_status: str,
        levels: Sequence[str] = (),
    ) -> None:
        self.nodes = nodes
        self.levels = levels  # the policy's topology levels (a job's level alone without)
        self.free = free
        self.status = solver_status
        self.jobs_by_key = jobs_by_key
        # GPUs placed per node and priority, to say who outranked a job
        self.placed: dict[str, Counter[int]] = defaultdict(Counter)
        for p in placements:
            other = jobs_by_key.get(p.job)
            if other is not None:
                self.placed[p.node][other.priority] += p.gpus
        self._usable: dict[NodeRequirements, list[Node]] = {}
        self._static: dict[tuple[NodeRequirements, int], str | None] = {}
        self._fitting: dict[tuple[NodeRequirements, int], tuple[int, list[Node]]] = {}
        self._rivals: dict[tuple[NodeRequirements, int], tuple[int, int]] = {}
        # (requirements, GPUs, level) -> (roomiest domain and its free slots, one slot a node)
        self._room: dict[
            tuple[NodeRequirements, int, str],
            tuple[tuple[tuple[str | None, ...], int] | None, bool],
        ] = {}

    def _usable_nodes(self, req: NodeRequirements) -> list[Node]:
        if req not in self._usable:
            self._usable[req] = [n for n in self.nodes if rejection(req, n) is None]
        return self._usable[req]

    def never_fits(self, job: Job) -> str | None:
        """Why no node could ever take the job, whatever else runs (None: some could)."""
        key = (job.requirements, job.gpus_per_replica)
        if key not in self._static:
            self._static[key] = no_eligible_node(job, self.nodes)
        return self._static[key]

    def why(self, job: Job, needed: int) -> str:
        """The most specific reason, from never-fits to was-outranked."""
        never = self.never_fits(job)
        if never:
            return never
        key = (job.requirements, job.gpus_per_replica)
        need = job.gpus_per_replica
        req = job.requirements
        if key not in self._fitting:
            usable = self._usable_nodes(req)
            slots = sum(self.free[n.name].gpus // need for n in usable)
            self._fitting[key] = (slots, [n for n in usable if self.free[n.name].gpus >= need])
        slots, fitting = self._fitting[key]
        unit = _unit(job) + ("s" if needed != 1 else "")
        gang = f"needs {needed} {unit} x {need} GPUs{_products(job)}"
        if slots < needed:
            cpu = max((self.free[n.name].cpu_milli for n in fitting), default=0)
            if fitting and job.cpu_milli > cpu:
                return f"{gang}; nodes with the GPUs free have at most {cpu / 1000:g} CPU free"
            verb = "has" if len(fitting) == 1 else "have"
            return f"{gang}; only {plural(len(fitting), 'node')} {verb} {need} free"
        if job.topology.required is not None:
            gang += f" in one {short_name(job.topology.required)}"
            lacking = self._no_domain_with_room(job, needed, fitting)
            if lacking:
                return f"{gang}; {lacking}"
        if self.status not in ("OPTIMAL", "FEASIBLE", "HEURISTIC"):
            return f"{gang}; the solver found no plan in its time limit ({self.status})"
        higher, equal = self._outranked_by(req, job.priority)
        if higher:
            return f"{gang}; outranked by higher-priority jobs using {higher} GPUs on its nodes"
        if equal:
            return (
                f"{gang}; outranked by larger jobs of equal priority, or ones estimated to "
                f"finish sooner, using {equal} GPUs"
            )
        return f"{gang}; its nodes' free GPUs went to a better overall plan"

    def _no_domain_with_room(self, job: Job, needed: int, fitting: Sequence[Node]) -> str:
        """Why no domain of the job's required level holds the gang now ('' if one does)."""
        level = job.topology.required
        assert level is not None
        name, need = short_name(level), job.gpus_per_replica
        key = (job.requirements, need, level)
        if key not in self._room:  # the roomiest domain, shared by jobs alike
            room: Counter[tuple[str | None, ...]] = Counter()
            for n in fitting:
                domain = node_domain(n, scope(level, self.levels))
                if domain[0] is not None:
                    room[domain] += self.free[n.name].gpus // need
            ranked = sorted(room.items(), key=lambda item: (-item[1], display(item[0])))
            one_each = all(self.free[n.name].gpus < 2 * need for n in fitting)
            self._room[key] = (ranked[0] if ranked else None, one_each)
        roomiest, one_each = self._room[key]
        if roomiest is None:
            return f"no node with {need} free GPUs has the {level} label"
        best, most = roomiest
        if most >= needed:
            return ""
        unit = _unit(job) + ("s" if needed != 1 else "")
        space = f"{needed} nodes with {need} free" if one_each else f"room for {needed} {unit}"
        return f"no {name} has {space} (the most is {most}, in {name} {display(best)})"

    def _outranked_by(self, req: NodeRequirements, priority: int) -> tuple[int, int]:
        """GPUs placed on the job's nodes by higher- and by equal-priority jobs."""
        if (req, priority) not in self._rivals:
            higher = equal = 0
            for n in self._usable_nodes(req):
                for other, gpus in self.placed.get(n.name, Counter()).items():
                    if other > priority:
                        higher += gpus
                    elif other == priority:
                        equal += gpus
            self._rivals[req, priority] = (higher, equal)
        return self._rivals[req, priority]
