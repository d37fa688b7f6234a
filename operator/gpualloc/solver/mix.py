"""A global mix plan: which node types the expected workload should go to (pure, CP-SAT).

One-pod-at-a-time policies are myopic about the second resource: CPU-hungry pods fill
nodes whose GPUs then strand for lack of CPU. Knowing the workload's shape distribution,
we solve once, for the whole cluster, how many pods of each shape each node *type*
(identical nodes) should take so that the most GPU milli fits when GPU, CPU and memory
are all counted (a fluid relaxation: per type, not per node or device). Online, a pod is
steered to types whose share of its shape is not yet used up; the device-level choice
within them is left to the fragmentation measure.

Variables: a[s, t] = pods of shape s planned on node type t (integer).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from gpualloc.model.devices import MILLI, PodRequest
from gpualloc.solver.devicestate import BoolArray, DeviceState, IntArray
from gpualloc.solver.lexicographic import Objective, solve_lexicographic

Shape = tuple[int, int, int, int, tuple[str, ...]]


@dataclass
class MixPlan:
    node_type: IntArray  # [nodes] -> type index
    share: dict[Shape, dict[int, float]]  # shape -> type -> planned fraction of its pods
    # shapes that fill a whole node: the node types they fit and the pods expected
    whole_node: dict[Shape, tuple[IntArray, float]] = field(default_factory=dict)
    expected_pods: float = 1.0
    steer: bool = True  # steer by planned shares (else only the reservations)
    arrived: Counter[Shape] = field(default_factory=Counter)
    placed: Counter[tuple[Shape, int]] = field(default_factory=Counter)

    def allowed(self, state: DeviceState, pod: PodRequest, rows: IntArray) -> IntArray:
        """The candidate `rows` to use: not a node kept empty for whole-node pods still
        expected, and of a type still short of its planned share of this shape; each rule
        is dropped when it would leave nothing."""
        keep = rows
        reserved = self._reserved_nodes(state, pod)
        if reserved.any():
            free = rows[~reserved[rows]]
            keep = free if free.size else rows
        if not self.steer:
            return keep
        preferred = self.preferred(pod, keep)
        return keep[preferred] if preferred.any() else keep

    def _reserved_nodes(self, state: DeviceState, pod: PodRequest) -> BoolArray:
        out = np.zeros(len(self.node_type), dtype=np.bool_)
        if not self.whole_node:
            return out
        to_come = max(0.0, 1.0 - sum(self.arrived.values()) / self.expected_pods)
        real = state.gpu_left >= 0
        empty = ((state.gpu_left == MILLI) | ~real).all(axis=1) & (
            state.cpu_left == state.cpu_total
        )
        for shape, (types, expected) in self.whole_node.items():
            if shape == pod.shape:
                continue
            need = math.ceil(expected * to_come)
            of_types = empty & np.isin(self.node_type, types)
            if need and int(of_types.sum()) <= need:
                out |= of_types
        return out

    def preferred(self, pod: PodRequest, rows: IntArray) -> BoolArray:
        """Among candidate `rows`, the nodes of types still short of their planned share
        of this pod's shape (counting this arrival)."""
        plan = self.share.get(pod.shape)
        if not plan:
            return np.zeros(len(rows), dtype=np.bool_)
        expected = self.arrived[pod.shape] + 1
        open_types = [t for t, q in plan.items() if self.placed[pod.shape, t] < q * expected + 0.5]
        return np.isin(self.node_type[rows], open_types)

    def fork(self) -> MixPlan:
        """A copy whose counters can move without touching these."""
        return MixPlan(
            self.node_type,
            self.share,
            self.whole_node,
            self.expected_pods,
            self.steer,
            Counter(self.arrived),
            Counter(self.placed),
        )

    def observe(self, pod: PodRequest, node: int | None) -> None:
        self.arrived[pod.shape] += 1
        if node is not None:
            self.placed[pod.shape, int(self.node_type[node])] += 1


def _node_types(state: DeviceState) -> tuple[IntArray, list[int]]:
    keys: dict[tuple[int, int, int, int], int] = {}
    types = np.zeros(len(state.nodes), dtype=np.int64)
    members: list[int] = []
    for i, n in enumerate(state.nodes):
        key = (int(state.model[i]), n.gpus, n.cpu_milli, n.memory_mib)
        if key not in keys:
            keys[key] = len(keys)
            members.append(0)
        types[i] = keys[key]
        members[keys[key]] += 1
    return types, members


def plan_mix(
    state: DeviceState,
    pod_list: Sequence[PodRequest],
    load: float = 1.0,
    time_limit_seconds: float = 10.0,
) -> MixPlan:
    """Plan for `load` x capacity of GPU request drawn from the pod list's distribution."""
    types, members = _node_types(state)
    first = [int(np.flatnonzero(types == t)[0]) for t in range(len(members))]
    counts = Counter(p.shape for p in pod_list)
    mean_milli = sum(p.gpu_request_milli for p in pod_list) / max(1, len(pod_list))
    expected_pods = load * state.total_gpu_milli / max(mean_milli, 1.0)
    example = {p.shape: p for p in pod_list}
    model = cp_model.CpModel()
    a: dict[tuple[Shape, int], cp_model.IntVar] = {}
    for shape, count in counts.items():
        pod = example[shape]
        demand = round(count / len(pod_list) * expected_pods)
        if demand == 0:
            continue
        allowed = state.model_mask(pod.gpu_spec) if pod.gpu_request_milli else None
        for t, i in enumerate(first):
            node = state.nodes[i]
            if allowed is not None and not allowed[i]:
                continue
            if pod.num_gpu > node.gpus or pod.cpu_milli > node.cpu_milli:
                continue
            if pod.memory_mib > node.memory_mib:
                continue
            a[shape, t] = model.new_int_var(0, demand, f"a{len(a)}")
        shape_vars = [v for (s, _), v in a.items() if s == shape]
        if shape_vars:
            model.add(sum(shape_vars) <= demand)
    for t, i in enumerate(first):
        node = state.nodes[i]
        here = [(example[s], v) for (s, tt), v in a.items() if tt == t]
        if not here:
            continue
        size = members[t]
        model.add(sum(p.gpu_request_milli * v for p, v in here) <= node.gpus * MILLI * size)
        model.add(sum(p.cpu_milli * v for p, v in here) <= node.cpu_milli * size)
        model.add(sum(p.memory_mib * v for p, v in here) <= node.memory_mib * size)
    milli = sum(example[s].gpu_request_milli * v for (s, _), v in a.items())
    pods = sum(a.values())
    solver, _ = solve_lexicographic(
        model,
        [
            Objective("gpu-milli", milli, state.total_gpu_milli, separate=True),
            Objective("pods", pods, len(a) * max(1, round(expected_pods))),
        ],
        time_limit=time_limit_seconds,
        relative_gap=0.0,
        num_workers=1,
    )
    share: dict[Shape, dict[int, float]] = {}
    if solver is not None:
        for (s, t), v in a.items():
            value = solver.value(v)
            if value:
                share.setdefault(s, {})[t] = float(value)
        for plan in share.values():
            total = sum(plan.values())
            for t in plan:
                plan[t] /= total
    # pods that take a whole node: keep enough empty nodes for those still to come
    whole_node: dict[Shape, tuple[IntArray, float]] = {}
    for shape, count in counts.items():
        pod = example[shape]
        fits = [t for (s, t) in a if s == shape and state.nodes[first[t]].gpus == pod.num_gpu]
        if pod.whole_gpus and fits:
            expected = count / len(pod_list) * expected_pods
            whole_node[shape] = (np.array(fits, dtype=np.int64), expected)
    return MixPlan(types, share, whole_node, expected_pods)
