"""One-pod-at-a-time placement at GPU-device level: the published baselines and FGD.

- first-fit: the first node (in node order) that fits; the first device that fits;
- best-fit: the node left with the least free CPU and GPU, 0.5 * CPU / max CPU +
  0.5 * GPU milli / max GPU milli, scored as the FGD simulator's BestFit does (an integer
  node score, then kube-scheduler's min-max normalization, so near ties are ties); the
  tightest device;
- spread: the opposite node score (kube-scheduler's LeastAllocated); the emptiest device;
- fgd: the node and device where the expected fragmentation F grows least (ATC'23 FGD);
  with `integer_score`, as the published simulator scores it (`published_fgd_score`).
Ties go to the lowest node index (the published simulator gives them to the smallest node
name; the replay orders nodes by their seeded names, `sim/openb.py`), then the lowest
device index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gpualloc.model.devices import MILLI, DevicePlacement, PodRequest
from gpualloc.solver.devices.devicestate import DeviceState, FloatArray, IntArray
from gpualloc.solver.devices.fragmentation import Workload, node_fragmentation


class DevicePolicy(Protocol):
    def choose(self, state: DeviceState, pod: PodRequest) -> DevicePlacement | None: ...


def _share_device(state: DeviceState, node: int, milli: int, rule: str) -> int:
    left = state.gpu_left[node]
    fitting = np.flatnonzero(left >= milli)
    if rule == "first":
        return int(fitting[0])
    values = left[fitting]
    pick = np.argmin(values) if rule == "tightest" else np.argmax(values)
    return int(fitting[pick])


def _placement(state: DeviceState, pod: PodRequest, node: int, rule: str) -> DevicePlacement:
    if pod.is_share:
        return DevicePlacement(node, (_share_device(state, node, pod.gpu_milli, rule),))
    return DevicePlacement(node, state.whole_devices(node, pod.whole_gpus))


class FirstFit:
    def choose(self, state: DeviceState, pod: PodRequest) -> DevicePlacement | None:
        ok = np.flatnonzero(state.fits(pod))
        return _placement(state, pod, int(ok[0]), "first") if ok.size else None


def fit_score(state: DeviceState, pod: PodRequest, rows: IntArray) -> FloatArray:
    """Share of CPU and GPU left free after placing the pod (lower = tighter)."""
    max_cpu = float(state.cpu_total.max())
    max_gpu = float(state.gpus.max() * MILLI) or 1.0
    cpu = (state.cpu_left[rows] - pod.cpu_milli) / max_cpu
    gpu = (state.free_gpu_milli(rows) - pod.gpu_request_milli) / max_gpu
    # the simulator's order of operations, so that its integer scores come out alike
    return np.asarray(cpu * 0.5 + gpu * 0.5, dtype=np.float64)


def published_best_fit_score(state: DeviceState, pod: PodRequest, rows: IntArray) -> IntArray:
    """The published BestFit node score: int(100 x (1 - fit_score)), then NormalizeScore
    (min-max to 0..100 with integer division) over the candidate nodes."""
    raw = np.trunc((1.0 - fit_score(state, pod, rows)) * 100.0).astype(np.int64)
    high, low = int(raw.max()), int(raw.min())
    if high == low:
        return np.zeros_like(raw)
    return np.asarray((raw - low) * 100 // (high - low), dtype=np.int64)


class BestFit:
    def choose(self, state: DeviceState, pod: PodRequest) -> DevicePlacement | None:
        ok = np.flatnonzero(state.fits(pod))
        if not ok.size:
            return None
        best = int(np.argmax(published_best_fit_score(state, pod, ok)))
        return _placement(state, pod, int(ok[best]), "tightest")


class Spread:
    def choose(self, state: DeviceState, pod: PodRequest) -> DevicePlacement | None:
        ok = np.flatnonzero(state.fits(pod))
        if not ok.size:
            return None
        return _placement(state, pod, int(ok[np.argmax(fit_score(state, pod, ok))]), "emptiest")


def fragmentation_delta(
    state: DeviceState, pod: PodRequest, rows: IntArray, workload: Workload
) -> FloatArray:
    """Growth of F on each candidate node, [len(rows), devices]: for a share, per device it
    could use (inf where it does not fit); for other pods, the same value in every column.
    A node's value depends only on its state and the pod's shape: it is kept per shape in
    the workload and computed again only for nodes whose state changed (their stamp)."""
    shape = (pod.cpu_milli, pod.gpu_milli if pod.is_share else 0, pod.whole_gpus)
    stamp, growth = workload.deltas.get(shape, (None, None))
    if stamp is None or growth is None or growth.shape != state.gpu_left.shape:
        stamp = np.zeros(len(state.nodes), dtype=np.int64)  # stamps start at 1: none valid
        growth = np.zeros(state.gpu_left.shape, dtype=np.float64)
        workload.deltas[shape] = (stamp, growth)
    stale = rows[stamp[rows] != state.stamp[rows]]
    if stale.size:
        growth[stale] = _delta(state, pod, stale, workload)
        stamp[stale] = state.stamp[stale]
    return growth[rows]


def _delta(state: DeviceState, pod: PodRequest, rows: IntArray, workload: Workload) -> FloatArray:
    left = state.gpu_left[rows]
    cpu = state.cpu_left[rows]
    model = state.model[rows]
    before = node_fragmentation(left, cpu, model, workload)
    width = left.shape[1]
    after_cpu = cpu - pod.cpu_milli
    if pod.is_share:
        # one what-if node per (candidate, device that fits): that device loses the share;
        # devices with as much free milli as an earlier one of the node give the same node
        fits = left >= pod.gpu_milli  # [C, G]
        same = np.tril(left[:, :, None] == left[:, None, :], k=-1)  # [C, G, earlier G]
        first = same.argmax(axis=2)
        first = np.where(same.any(axis=2), first, np.arange(width)[None, :])  # [C, G]
        node, device = np.nonzero(fits & (first == np.arange(width)[None, :]))
        trial = left[node].copy()
        trial[np.arange(len(node)), device] -= pod.gpu_milli
        after = np.full(left.shape, np.inf)
        after[node, device] = node_fragmentation(trial, after_cpu[node], model[node], workload)
        after = np.take_along_axis(after, first, axis=1)
        return np.where(fits, after - before[:, None], np.inf)
    trial = left.copy()
    if pod.whole_gpus:
        free = trial == MILLI
        take = free & (np.cumsum(free, axis=1) <= pod.whole_gpus)
        trial[take] = 0
    after = node_fragmentation(trial, after_cpu, model, workload)
    return np.repeat((after - before)[:, None], width, axis=1)


def published_fgd_score(growth: FloatArray) -> FloatArray:
    """The published simulator's FGD score of a placement: int(100 x sigmoid(-growth of F
    in GPUs)), a kube-scheduler node score from 0 to 100; -1 where it does not fit (inf).
    Growths within a step score alike, and the tie goes to the first node by name: a
    packing bias that places markedly better than the exact minimum on openb `default`."""
    fits = np.isfinite(growth)
    # the simulator's arithmetic: x = (F before - F after) / 1000, int64(sigmoid(x) * 100)
    x = -np.where(fits, growth, 0.0) / MILLI
    with np.errstate(over="ignore"):
        score = np.floor(1.0 / (1.0 + np.exp(-x)) * 100.0)
    return np.asarray(np.where(fits, score, -1.0), dtype=np.float64)


@dataclass(frozen=True)
class Options:
    """One pod's options: the nodes that fit it and, per node and device, the growth of F
    (plus any penalty); inf where a share does not fit a device."""

    rows: IntArray
    growth: FloatArray  # [len(rows), devices]


class FGD:
    """`integer_score` ranks placements by `published_fgd_score` instead of the exact
    growth of F."""

    def __init__(self, workload: Workload, integer_score: bool = False) -> None:
        self.workload = workload
        self.integer_score = integer_score

    def options(
        self, state: DeviceState, pod: PodRequest, penalty: FloatArray | None = None
    ) -> Options | None:
        """Where the pod fits and what each placement costs; `penalty` (milli per node)
        adds to the growth of F. None if it fits nowhere."""
        ok = np.flatnonzero(state.fits(pod))
        if not ok.size:
            return None
        delta = fragmentation_delta(state, pod, ok, self.workload)
        if penalty is not None:
            delta = delta + penalty[ok][:, None]
        return Options(ok, delta)

    def pick(self, state: DeviceState, pod: PodRequest, options: Options) -> DevicePlacement:
        """The best of the options: the highest score, then the lowest node, then device."""
        # other pods' growth is the same in every column: score one
        delta = options.growth if pod.is_share else options.growth[:, :1]
        # the exact growth, rounded so that float noise never decides a tie
        score = published_fgd_score(delta) if self.integer_score else -np.round(delta, 6)
        flat = int(np.argmax(score))  # row-major: lowest node, then lowest device
        row, device = divmod(flat, score.shape[1])
        node = int(options.rows[row])
        if pod.is_share:
            return DevicePlacement(node, (device,))
        return DevicePlacement(node, state.whole_devices(node, pod.whole_gpus))

    def choose(
        self, state: DeviceState, pod: PodRequest, penalty: FloatArray | None = None
    ) -> DevicePlacement | None:
        found = self.options(state, pod, penalty)
        return None if found is None else self.pick(state, pod, found)
