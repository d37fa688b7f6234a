"""Topology-aware placement: domains of node-label levels in the CP-SAT plan.

A level is a node label key of AllocationPolicy spec.topology.levels (widest first). A domain
of a level is the set of nodes sharing the values of that level and of every wider one (rack
r1 of zone a is not rack r1 of zone b); a level the policy does not list is read alone.

In the model (`TopologyModel`), for each job whose shape asks for topology:
  x[j, d]  new replicas of job j in domain d of its finest requested level
  b[j, D]  1 if job j uses domain D of its required level (sum over D = p[j]: one domain)
  a[j, e]  1 if job j uses domain e of its preferred level (their sum is minimised)
  w[g, D]  gangs of group g (identical pending gangs with only a required level) in D
and the shape's replicas in domain d equal its counts on the node classes inside d, which
is exact because node classes never straddle a domain (see `grouping_key`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model

from gpualloc.model import Job, Node, Placement, TopologyRequest
from gpualloc.solver.lexicographic import Objective

if TYPE_CHECKING:
    from gpualloc.solver.cpsat import AllocationModel

# label values naming a domain; (None, node name): a node lacking one of the labels, which is
# a domain of its own (only a `preferred` level may use such a node)
Domain = tuple[str | None, ...]
DOMAINS_OBJECTIVE = "topology-domains"


def short_name(level: str) -> str:
    """What a person calls a level: topology.kubernetes.io/rack -> rack, gpu.clique -> clique."""
    return level.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def scope(level: str, levels: Sequence[str]) -> tuple[str, ...]:
    """The label keys whose values name a domain of `level`: it and every wider level."""
    return tuple(levels[: levels.index(level) + 1]) if level in levels else (level,)


def keys_of(req: TopologyRequest, levels: Sequence[str]) -> tuple[str, ...]:
    """The label keys a request's domains are counted by: the union of its levels' scopes."""
    keys: list[str] = []
    for lvl in (req.required, req.preferred):
        if lvl is not None:
            keys += [k for k in scope(lvl, levels) if k not in keys]
    return tuple(keys)


def node_domain(node: Node, keys: Sequence[str]) -> Domain:
    values = tuple(node.labels.get(k) for k in keys)
    return (None, node.name) if None in values else values


def project(domain: Domain, keys: Sequence[str], onto: Sequence[str]) -> Domain:
    """The domain of a wider level (keys `onto`) holding `domain` (keys `keys`)."""
    if domain[0] is None:
        return domain
    return tuple(v for k, v in zip(keys, domain, strict=True) if k in onto)


def display(domain: Domain) -> str:
    if domain[0] is None:
        return f"{domain[1]} (unlabelled)"
    return "/".join(str(v) for v in domain)


def effective(req: TopologyRequest, levels: Sequence[str]) -> TopologyRequest:
    """The request with `preferred` dropped where `required` already implies it (a job in one
    rack spans one zone)."""
    if req.required is not None and req.preferred in scope(req.required, levels):
        return TopologyRequest(req.required, None)
    return req


def finest(req: TopologyRequest, levels: Sequence[str]) -> str | None:
    """The narrowest level a request names (the one the plan reports domains of)."""
    named = [lvl for lvl in (req.required, req.preferred) if lvl is not None]
    return max(named, key=lambda lvl: len(scope(lvl, levels))) if named else None


def used_keys(jobs: Iterable[Job], levels: Sequence[str]) -> tuple[str, ...]:
    """Label keys some job's topology depends on (empty: no job asks for topology)."""
    keys: set[str] = set()
    for job in jobs:
        keys.update(keys_of(job.topology, levels))
    return tuple(sorted(keys))


def grouping_key(node: Node, keys: Sequence[str]) -> tuple[object, ...]:
    """What node classes must share so that no class straddles a domain; a node lacking one
    of the labels stays alone."""
    return node_domain(node, keys) if keys else ()


def allowed(req: TopologyRequest, node: Node, levels: Sequence[str]) -> bool:
    """A job with a required level may use only nodes in a domain of it."""
    return req.required is None or None not in (
        node.labels.get(k) for k in scope(req.required, levels)
    )


def groupable(req: TopologyRequest | None, levels: Sequence[str]) -> bool:
    """Identical pending gangs are counted together unless each must count its domains."""
    return req is None or effective(req, levels).preferred is None


@dataclass
class _ShapeDomains:
    keys: tuple[str, ...]  # label keys the shape's domains are counted by
    classes: dict[Domain, list[int]] = field(default_factory=dict)  # domain -> classes
    _outer: dict[tuple[str, ...], dict[Domain, Domain]] = field(default_factory=dict)

    def outer(self, onto: tuple[str, ...]) -> dict[Domain, Domain]:
        """Each domain's domain of the wider level whose keys are `onto`."""
        if onto not in self._outer:
            self._outer[onto] = {d: project(d, self.keys, onto) for d in self.classes}
        return self._outer[onto]


class TopologyModel:
    """The topology constraints and the fewest-domains objective over an `AllocationModel`."""

    def __init__(self, m: AllocationModel, levels: Sequence[str]) -> None:
        self.m = m
        self.levels = tuple(levels)
        self.model = m.model
        self.x: dict[tuple[int, Domain], cp_model.IntVar] = {}
        self.w: dict[tuple[int, Domain], cp_model.IntVar] = {}
        self.spans: list[cp_model.IntVar] = []  # a[j, e]: minimised
        # (job, required?, domain of that level) -> b[j, D] or a[j, e]
        self.uses: dict[tuple[int, bool, Domain], cp_model.IntVar] = {}
        self.shapes: dict[int, _ShapeDomains] = {}
        self._domains: dict[tuple[str, tuple[str, ...]], Domain] = {}
        classes: dict[int, list[int]] = defaultdict(list)  # shape -> classes with a count
        for s, k in m.c:
            classes[s].append(k)
        for s, shape in enumerate(m.inst.shapes):
            req = shape.key.topology
            if req:
                self._shape(s, effective(req, self.levels), sorted(classes[s]))

    def _shape(self, s: int, req: TopologyRequest, classes: list[int]) -> None:
        m, inst = self.m, self.m.inst
        info = _ShapeDomains(keys_of(req, self.levels))
        for k in classes:
            d = node_domain(inst.classes[k].representative, info.keys)
            info.classes.setdefault(d, []).append(k)
        self.shapes[s] = info
        cap = {d: sum(m.c_max[s, k] for k in ks) for d, ks in info.classes.items()}
        placed: dict[Domain, list[cp_model.LinearExprT]] = defaultdict(list)
        for j, y in m.y.items():
            if inst.jobs[j].shape == s:
                xs = self._job(j, req, info, cap)
                self.model.add(cp_model.LinearExpr.sum(list(xs.values())) == y)
                for d, x in xs.items():
                    placed[d].append(x)
        for g, z in m.z.items():
            group = m.groups[g]
            if group.shape != s:
                continue
            ws = {}
            for d, c in cap.items():  # groups have only a required level: d is its domain
                upper = min(len(group.jobs), c // group.size)
                if upper > 0:
                    ws[d] = self.w[g, d] = self.model.new_int_var(0, upper, f"w{g}")
                    placed[d].append(group.size * ws[d])
            self.model.add(cp_model.LinearExpr.sum(list(ws.values())) == z)
        for d, ks in info.classes.items():
            counts = [m.c[s, k] for k in ks]
            self.model.add(cp_model.LinearExpr.sum(placed[d]) == cp_model.LinearExpr.sum(counts))

    def _job(
        self, j: int, req: TopologyRequest, info: _ShapeDomains, cap: Mapping[Domain, int]
    ) -> dict[Domain, cp_model.IntVar]:
        m, state = self.m, self.m.inst.jobs[j]
        xs: dict[Domain, cp_model.IntVar] = {}
        upper: dict[Domain, int] = {}
        for d, c in cap.items():
            upper[d] = min(state.hi, c)
            if upper[d] > 0:
                xs[d] = self.x[j, d] = self.model.new_int_var(0, upper[d], f"x{j}")
        nodes = m.inst.node_by_name
        held = [nodes[p.node] for p in state.running if p.node in nodes]
        for lvl, one in ((req.required, True), (req.preferred, False)):
            if lvl is None:
                continue
            onto = scope(lvl, self.levels)
            outer_of = info.outer(onto)
            uses: dict[Domain, cp_model.IntVar] = {}
            for d, x in xs.items():
                outer = outer_of[d]
                if outer not in uses:
                    uses[outer] = self.model.new_bool_var(f"{'b' if one else 'a'}{j}")
                    self.uses[j, one, outer] = uses[outer]
                self.model.add(x <= upper[d] * uses[outer])
            there = {node_domain(n, onto) for n in held}
            if one:
                self.model.add(cp_model.LinearExpr.sum(list(uses.values())) == m.p[j])
                if held:  # new replicas join the domain the running ones are in
                    for outer, b in uses.items():
                        if outer not in there:
                            self.model.add(b == 0)
            else:
                for outer, a in uses.items():
                    if outer in there:
                        self.model.add(a == 1)
                self.spans.extend(uses.values())
        return xs

    def objectives(self) -> list[Objective]:
        """Fewest domains spanned by jobs that prefer a level: after every GPU level, so a
        placement is never given up to save a domain."""
        if not self.spans:
            return []
        spanned = cp_model.LinearExpr.sum(self.spans)
        return [Objective(DOMAINS_OBJECTIVE, -spanned, len(self.spans), separate=True)]

    def domain_replicas(self, solver: cp_model.CpSolver) -> dict[int, dict[Domain, int]]:
        """New replicas per job and domain; a group's gangs go to the domains oldest first."""
        result: dict[int, dict[Domain, int]] = defaultdict(dict)
        for (j, d), x in self.x.items():
            if solver.value(x):
                result[j][d] = solver.value(x)
        by_group: dict[int, list[Domain]] = defaultdict(list)
        for (g, d), w in self.w.items():
            by_group[g] += [d] * solver.value(w)
        for g, domains in by_group.items():
            group = self.m.groups[g]
            for j, d in zip(group.jobs, domains, strict=False):
                result[j][d] = group.size
        return dict(result)

    def counts_of(self, placed: Mapping[int, Sequence[str]]) -> dict[tuple[int, int], int]:
        """Replicas per (shape, class) of new replicas per job (job -> nodes)."""
        inst = self.m.inst
        class_of = {n.name: k for k, c in enumerate(inst.classes) for n in c.nodes}
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for j, nodes in placed.items():
            for name in nodes:
                counts[inst.jobs[j].shape, class_of[name]] += 1
        return dict(counts)

    def hint(self, placed: Mapping[int, Sequence[str]]) -> None:
        """Hints for the domain variables from new replicas per job (job -> nodes) that keep
        every request."""
        inst = self.m.inst
        x = {(j, d): n for j, per in self.domains_of(placed).items() for d, n in per.items()}
        group_of = {j: g for g, group in enumerate(self.m.groups) for j in group.jobs}
        w: dict[tuple[int, Domain], int] = defaultdict(int)
        used: set[tuple[int, bool, Domain]] = set()
        for j, d in x:
            if j in group_of:
                w[group_of[j], d] += 1
            s = inst.jobs[j].shape
            req = effective(inst.shapes[s].key.topology or TopologyRequest(), self.levels)
            for lvl, one in ((req.required, True), (req.preferred, False)):
                if lvl is not None:
                    used.add((j, one, self.shapes[s].outer(scope(lvl, self.levels))[d]))
        add_hints(self.model, ((var, x.get(key, 0)) for key, var in self.x.items()))
        add_hints(self.model, ((var, w.get(key, 0)) for key, var in self.w.items()))
        add_hints(self.model, ((var, int(use in used)) for use, var in self.uses.items()))

    def domains_of(self, placed: Mapping[int, Sequence[str]]) -> dict[int, dict[Domain, int]]:
        """New replicas per job and domain, from their nodes (jobs asking for topology)."""
        inst = self.m.inst
        result: dict[int, dict[Domain, int]] = {}
        for j, nodes in placed.items():
            info = self.shapes.get(inst.jobs[j].shape)
            if info is not None:
                per: dict[Domain, int] = defaultdict(int)
                for name in nodes:
                    per[self._domain(name, info.keys)] += 1
                result[j] = dict(per)
        return result

    def _domain(self, name: str, keys: tuple[str, ...]) -> Domain:
        if (name, keys) not in self._domains:
            self._domains[name, keys] = node_domain(self.m.inst.node_by_name[name], keys)
        return self._domains[name, keys]


def add_hints(model: cp_model.CpModel, hints: Iterable[tuple[cp_model.IntVar, int]]) -> None:
    """model.add_hint for many variables at once (one call each is most of a large hint)."""
    pairs = list(hints)
    model.proto.solution_hint.vars.extend(var.index for var, _ in pairs)
    model.proto.solution_hint.values.extend(value for _, value in pairs)


def spans(
    job: Job, placements: Iterable[Placement], nodes: Mapping[str, Node], levels: Sequence[str]
) -> tuple[str, list[Domain]] | None:
    """(level, domains) a placed job's replicas are in, at the narrowest level it asks for
    (the policy's narrowest level for a job that asks for none); None without topology."""
    level = finest(job.topology, levels) or (levels[-1] if levels else None)
    if level is None:
        return None
    keys = scope(level, levels)
    found = {
        node_domain(nodes[p.node], keys) for p in placements if p.job == job.key and p.node in nodes
    }
    return level, sorted(found, key=display)


def describe(level: str, domains: Sequence[Domain]) -> str:
    """'1 rack (zone-a/r1)', '2 racks (a/r1, a/r2)'."""
    name = short_name(level)
    plural = name if len(domains) == 1 else name + "s"
    return f"{len(domains)} {plural} ({', '.join(display(d) for d in domains)})"


def span_message(
    job: Job, placements: Iterable[Placement], nodes: Mapping[str, Node], levels: Sequence[str]
) -> str | None:
    """For a job's status message: 'spans 1 rack (a/r1)'; None for a job without topology."""
    if not job.topology:
        return None
    found = spans(job, placements, nodes, levels)
    if found is None or not found[1]:
        return None
    return "spans " + describe(*found)


def respects_required(
    jobs: Iterable[Job],
    placements: Iterable[Placement],
    nodes: Mapping[str, Node],
    levels: Sequence[str],
) -> bool:
    """Every job with a required level has all its replicas inside one domain of it (a plan
    that does not ignores spec.topology: topology-unaware best-fit, for instance)."""
    where: dict[str, set[Domain]] = defaultdict(set)
    required = {j.key: j.topology.required for j in jobs if j.topology.required is not None}
    for p in placements:
        level = required.get(p.job)
        if level is not None:
            node = nodes.get(p.node)
            keys = scope(level, levels)
            where[p.job].add(node_domain(node, keys) if node else (None, p.node))
    return all(len(d) == 1 and None not in next(iter(d)) for d in where.values())
