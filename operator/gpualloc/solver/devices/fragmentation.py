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
from dataclasses import dataclass

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


def typical_workload(
    pods: Iterable[PodRequest],
    models: tuple[str, ...],
    popularity: float = 0.95,
    step: int = 1,
    cpu_pods: bool = False,
) -> Workload:
    """The most popular pod shapes, taken `step` at a time until they cover `popularity`
    of all (GPU) pods, renormalized (as in the FGD paper's experiments: 95%, 1; the
    simulator's built-in defaults are 60%, 10). CPU-only pods count only with `cpu_pods`
    (the published experiments count them)."""
    counts: Counter[tuple[int, int, int, tuple[str, ...]]] = Counter()
    for p in pods:
        if p.gpu_request_milli == 0 and not cpu_pods:
            continue
        counts[p.cpu_milli, p.gpu_milli, p.num_gpu, p.gpu_spec] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(counts.values())
    taken = 0
    covered = 0.0
    while taken < len(ranked) and covered < popularity * total:
        more = ranked[taken : taken + step]
        covered += sum(c for _, c in more)
        taken += len(more)
    chosen = ranked[:taken]
    weights = np.array([c for _, c in chosen], dtype=np.float64)
    access = np.array(
        [[not spec or m in spec for (_, _, _, spec), _ in chosen] for m in models],
        dtype=np.bool_,
    ).reshape(len(models), len(chosen))
    return Workload(
        cpu_milli=np.array([k[0] for k, _ in chosen], dtype=np.int64),
        gpu_milli=np.array([k[1] for k, _ in chosen], dtype=np.int64),
        num_gpu=np.array([k[2] for k, _ in chosen], dtype=np.int64),
        prob=weights / max(weights.sum(), 1e-12),
        access=access,
    )


def node_fragmentation(
    gpu_left: IntArray, cpu_left: IntArray, model: IntArray, workload: Workload
) -> FloatArray:
    """F(n) for each row: gpu_left [N, G] (absent devices < 0), cpu_left [N], model [N].
    Identical rows (common: many nodes of a kind start empty) are computed once."""
    rows = np.column_stack([gpu_left, cpu_left, model])
    # a 64-bit key per row (wrapping arithmetic); rows are compared after, so a collision
    # only costs the shortcut, never correctness
    key = rows.astype(np.uint64) @ _MIXER[: rows.shape[1]]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    if len(first) < len(rows) and np.array_equal(rows[first][inverse.reshape(-1)], rows):
        width = gpu_left.shape[1]
        unique = rows[first]
        values = _fragmentation(unique[:, :width], unique[:, width], unique[:, width + 1], workload)
        return np.asarray(values[inverse.reshape(-1)], dtype=np.float64)
    return _fragmentation(gpu_left, cpu_left, model, workload)


def _fragmentation(
    gpu_left: IntArray, cpu_left: IntArray, model: IntArray, workload: Workload
) -> FloatArray:
    left = np.clip(gpu_left, 0, None)
    total = left.sum(axis=1).astype(np.float64)  # [N]
    fit = left[:, :, None] >= workload.gpu_milli[None, None, :]  # [N, G, T]
    runs = (
        (fit.sum(axis=1) >= workload.num_gpu[None, :])
        & (cpu_left[:, None] >= workload.cpu_milli[None, :])
        & workload.access[model]
    )  # [N, T]
    runs &= workload.num_gpu[None, :] > 0  # to a CPU-only shape every free GPU is fragment
    small = np.where(fit, 0, left[:, :, None]).sum(axis=1)  # [N, T]
    frag = np.where(runs, small, total[:, None])
    return np.asarray(frag @ workload.prob, dtype=np.float64)
