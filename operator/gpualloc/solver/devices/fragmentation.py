"""Expected GPU fragmentation of a node under a target workload (FGD, Weng et al., ATC'23).

For one node and one typical pod shape m, the node's free GPU milli is *fragment* if m
cannot run there (too few fitting GPUs, too little CPU, a GPU model m does not accept);
if m can run, only the free milli of devices too small for m is fragment. A CPU-only
shape uses no GPU, so all the free GPU milli is fragment to it (as in the published
simulator, whose FGD counts CPU-only pods in its target workload). A node's
fragmentation is the expectation over the workload's shape distribution:
    F(n) = sum_m p_m * frag(n, m).
FGD places each pod where F grows least. All functions work on many nodes at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gpualloc.model.devices import PodRequest

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_MIXER = np.random.default_rng(0).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


@dataclass(frozen=True)
class Workload:
    """Typical pod shapes and their probabilities."""

    cpu_milli: IntArray  # [T]
    gpu_milli: IntArray  # [T] per GPU
    num_gpu: IntArray  # [T]
    prob: FloatArray  # [T], sums to 1
    access: BoolArray  # [models, T]: may shape t use a GPU of that model
    # F of node states seen before (device order does not matter to F): a node changes
    # once per placement, so most rows of the next query are known
    memo: dict[bytes, float] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # per pod shape, the growth of F on each node and the node state it was computed for
    # (`device_policies.fragmentation_delta`): between two pods of a shape only the nodes
    # placed on since change
    deltas: dict[tuple[int, ...], tuple[IntArray, FloatArray]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


def typical_workload(
    pods: Iterable[PodRequest],
    models: tuple[str, ...],
    popularity_pct: int = 95,
    step: int = 1,
    cpu_pods: bool = False,
) -> Workload:
    """The most popular pod shapes, taken `step` at a time until they cover `popularity_pct`
    percent of all (GPU) pods, renormalized (as in the FGD paper's experiments: 95%, 1; the
    simulator's built-in defaults are 60%, 10). CPU-only pods count only with `cpu_pods`
    (the published experiments count them). Probabilities are computed as the published
    simulator computes them, (count / total) / (covered / total), to the last bit."""
    counts: Counter[tuple[int, int, int, tuple[str, ...]]] = Counter()
    for p in pods:
        if p.gpu_request_milli == 0 and not cpu_pods:
            continue
        counts[p.cpu_milli, p.gpu_milli, p.num_gpu, p.gpu_spec] += 1
    # most popular first; equal counts in descending (CPU, GPU milli, GPUs, "|"-joined spec),
    # the published simulator's order (it decides which shapes make the cut)
    ranked = sorted(
        counts.items(),
        key=lambda kv: (kv[1], kv[0][0], kv[0][1], kv[0][2], "|".join(kv[0][3])),
        reverse=True,
    )
    total = float(sum(counts.values()))
    taken = 0
    covered = 0.0
    while taken < len(ranked) and covered < popularity_pct * total / 100:
        more = ranked[taken : taken + step]
        covered += sum(c for _, c in more)
        taken += len(more)
    chosen = ranked[:taken]
    prob = np.array([c / total for _, c in chosen], dtype=np.float64)
    if taken < len(ranked):
        prob = prob / (covered / total)
    access = np.array(
        [[not spec or m in spec for (_, _, _, spec), _ in chosen] for m in models],
        dtype=np.bool_,
    ).reshape(len(models), len(chosen))
    return Workload(
        cpu_milli=np.array([k[0] for k, _ in chosen], dtype=np.int64),
        gpu_milli=np.array([k[1] for k, _ in chosen], dtype=np.int64),
        num_gpu=np.array([k[2] for k, _ in chosen], dtype=np.int64),
        prob=prob,
        access=access,
    )


MEMO_LIMIT = 400_000  # node states remembered per workload (about 80 MB), then forgotten


def node_fragmentation(
    gpu_left: IntArray, cpu_left: IntArray, model: IntArray, workload: Workload
) -> FloatArray:
    """F(n) for each row: gpu_left [N, G] (absent devices < 0), cpu_left [N], model [N].
    Rows are put in a canonical form (devices sorted); each distinct one is looked up in
    the workload's memo and only the new ones are computed."""
    rows = np.column_stack([np.sort(gpu_left, axis=1), cpu_left, model])
    # a 64-bit key per row (wrapping arithmetic) to group equal rows; rows are compared
    # after, so a collision only costs the grouping, never correctness
    key = rows.astype(np.uint64) @ _MIXER[: rows.shape[1]]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not np.array_equal(rows[first][inverse], rows):
        first = inverse = np.arange(len(rows))
    unique = np.ascontiguousarray(rows[first])
    blobs = [r.tobytes() for r in unique]
    memo = workload.memo
    values = np.fromiter((memo.get(b, np.nan) for b in blobs), np.float64, len(blobs))
    new = np.flatnonzero(np.isnan(values))
    if new.size:
        width = gpu_left.shape[1]
        fresh = unique[new]
        values[new] = _fragmentation(
            fresh[:, :width], fresh[:, width], fresh[:, width + 1], workload
        )
        if len(memo) > MEMO_LIMIT:
            memo.clear()
        memo.update(zip([blobs[k] for k in new.tolist()], values[new].tolist(), strict=True))
    return np.asarray(values[inverse], dtype=np.float64)


def _fragmentation(
    gpu_left: IntArray, cpu_left: IntArray, model: IntArray, workload: Workload
) -> FloatArray:
    """F in the published simulator's floating-point order (`NodeGpuShareFragAmount`):
    each shape adds prob x milli to one of its categories, shape by shape; F sums the
    categories but Q3. The integer FGD score turns float noise in a growth that is zero
    in exact arithmetic into 49 or 50, so the order of the sums decides placements."""
    left = np.clip(gpu_left, 0, None)
    total = left.sum(axis=1)  # [N]
    # per distinct per-GPU milli of the shapes: devices that fit it, free milli of the others
    sizes, size_of = np.unique(workload.gpu_milli, return_inverse=True)
    fit = left[:, :, None] >= sizes[None, None, :]  # [N, G, U]
    fitting = fit.sum(axis=1)[:, size_of]  # [N, T]
    small = np.where(fit, 0, left[:, :, None]).sum(axis=1)[:, size_of]  # [N, T]
    host = fitting >= workload.num_gpu[None, :]
    cpu_ok = cpu_left[:, None] >= workload.cpu_milli[None, :]
    access = workload.access[model]  # [N, T]
    gpu_shape = workload.num_gpu > 0
    # a GPU shape's free GPU is fragment unless it runs (Q3: then its too-small devices
    # count, in Q2); to a CPU-only shape every free GPU is fragment (XL or XR)
    runs = access & host & cpu_ok
    milli = np.where(runs & gpu_shape[None, :], small, total[:, None])
    # [T, N]; sums run over the shapes one after another, as the simulator adds them: an
    # accumulation (numpy's sum may add pairwise, e.g. when N is 1)
    amount = np.ascontiguousarray((workload.prob[None, :] * milli).T)
    host, cpu_ok, access = host.T, cpu_ok.T, access.T
    g, c = gpu_shape, ~gpu_shape
    parts = (
        (g, access & ~host & ~cpu_ok),  # Q1
        (g, access & cpu_ok),  # Q2 (and Q3's small devices)
        (g, access & host & ~cpu_ok),  # Q4
        (c, cpu_ok),  # XL
        (c, ~cpu_ok),  # XR
        (g, ~access),  # NA
    )
    out = np.zeros(len(left), dtype=np.float64)
    for shapes, where in parts:
        if shapes.any():
            out = out + np.cumsum(np.where(where[shapes], amount[shapes], 0.0), axis=0)[-1]
    return out
