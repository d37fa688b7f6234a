"""Starved VC-time of the queue benchmark (hack/bench_queues.py), and where it comes from.

A VC is starved while it has a job waiting that fits its unused nominal quota and the other
VCs borrow at least that job's GPUs beyond theirs. `explain` splits that time, for the
gpualloc-queues policy, into: a victim evicted for the VC still in its grace period; waiting
for the next round (the debounce); and rounds that ran and left the job waiting (the plan's
reason, the free GPUs and what the borrowers held, per stretch).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpualloc.sim.timeline import SimJob

HOUR = 3600.0
GRACE = 30.0  # seconds a preempted pod keeps its GPUs (the simulator's default)


def intervals(job: SimJob, end: float) -> tuple[list[tuple[float, float]], float]:
    """(runs, leaving time) of a job, cut at `end`."""
    leaves = min(job.finished if job.finished is not None else end, end)
    return [(a, min(b, end)) for a, b in job.runs if a < end], leaves


@dataclass
class Round:
    """One gpualloc round as --explain reports it: the state it saw and what it decided."""

    at: float
    free: dict[str, int]  # node -> GPUs not held (terminating pods still hold theirs)
    held: dict[str, tuple[str, ...]]  # job key -> the nodes its pods hold
    reasons: dict[str, str]  # waiting job key -> the plan's reason
    evicted: dict[str, tuple[str, ...]]  # victim -> the jobs placed on its nodes in its stead
    placed: frozenset[str]  # jobs given pods this round


@dataclass
class Reclaims:
    """Who was evicted for whom: (time, victim key, the jobs placed in its stead; a
    namespace followed by "/" when only the queue is known)."""

    log: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)

    def windows(self, grace: float = GRACE) -> dict[str, list[tuple[float, float]]]:
        """Per namespace, when a victim evicted for it was still in its grace period."""
        out: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for at, _, made_room in self.log:
            for space in {space_of(k) for k in made_room}:
                out[space].append((at, at + grace))
        return {space: _merged(w) for space, w in out.items()}

    def repeated(self, grace: float = GRACE) -> dict[str, list[tuple[float, float]]]:
        """Per namespace, the grace periods of reclaims for jobs another reclaim had evicted
        for in the 2 grace periods before (so the first one's room went elsewhere)."""
        last: dict[str, float] = {}
        out: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for at, _, made_room in sorted(self.log):
            again = [k for k in made_room if at - 2 * grace <= last.get(k, -math.inf) < at]
            for space in {space_of(k) for k in again}:
                out[space].append((at, at + grace))
            last.update(dict.fromkeys(made_room, at))
        return {space: _merged(w) for space, w in out.items()}


def space_of(key: str) -> str:
    return key.split("/", 1)[0]


def _overlap(a: float, b: float, windows: Sequence[tuple[float, float]]) -> float:
    """Seconds of [a, b] inside the union of the sorted, disjoint windows."""
    return sum(max(0.0, min(b, hi) - max(a, lo)) for lo, hi in windows if lo < b and hi > a)


def _merged(windows: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _in_flight(jobs: Sequence[SimJob], grace: float) -> list[tuple[float, float]]:
    """When some preempted pod was still within its grace period (sorted, merged)."""
    return _merged([(b, b + grace) for job in jobs for _, b in job.runs if b != job.finished])


@dataclass(frozen=True)
class Starved:
    """A stretch of time a VC was starved, with no event inside it."""

    vc: str
    start: float
    end: float
    smallest: int  # GPUs of its smallest waiting job
    room: int  # its nominal minus what it holds
    borrowed: Mapping[str, int]  # VC -> GPUs it holds beyond its nominal


def starved_spans(
    jobs: Sequence[SimJob], nominal: Mapping[str, int], start: float, end: float
) -> list[Starved]:
    """When a VC had a job waiting that fits its unused nominal while the others borrowed at
    least that job's GPUs beyond their nominal."""
    events: list[tuple[float, int, int, str]] = []  # (time, order within the job, job, state)
    for index, job in enumerate(jobs):
        if job.arrival >= end:
            continue
        runs, leaves = intervals(job, end)
        changes = [(job.arrival, "wait")]
        for a, b in runs:
            changes += [(a, "run"), (b, "wait")]
        changes.append((leaves, "gone"))
        events += [(at, k, index, what) for k, (at, what) in enumerate(changes)]
    events.sort()
    used: Counter[str] = Counter()
    waiting: dict[str, Counter[int]] = defaultdict(Counter)
    now: dict[int, str] = {}
    out: list[Starved] = []
    last = start
    for at, _, index, what in events:
        lo, hi = max(last, start), min(at, end)
        if hi > lo:
            borrowed = {v: max(0, used[v] - nominal.get(v, 0)) for v in used}
            others = sum(borrowed.values())
            for v, sizes in waiting.items():
                small = min((g for g, n in sizes.items() if n > 0), default=None)
                room = nominal.get(v, 0) - used[v]
                if small is not None and small <= room and others - borrowed.get(v, 0) >= small:
                    lent = {u: g for u, g in borrowed.items() if g > 0 and u != v}
                    out.append(Starved(v, lo, hi, small, room, lent))
        last = max(last, at)
        job = jobs[index]
        before = now.get(index)
        if before == "wait":
            waiting[job.namespace][job.gpus] -= 1
        elif before == "run":
            used[job.namespace] -= job.gpus
        if what == "wait":
            waiting[job.namespace][job.gpus] += 1
        elif what == "run":
            used[job.namespace] += job.gpus
        now[index] = what
    return out


def starved_hours(
    jobs: Sequence[SimJob],
    nominal: Mapping[str, int],
    start: float,
    end: float,
    reclaims: Reclaims | None = None,
    grace: float = GRACE,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """(VC-hours starved, per VC, parts): the parts are the VC-hours while a victim evicted
    FOR that VC was still in its grace period ("own_grace"), of those while it was a repeated
    reclaim ("repeated_grace", Reclaims.repeated), and while ANY preempted pod was in its
    grace period ("any_grace": an upper bound, all there is when who evicted for whom is
    unknown)."""
    flight = _in_flight(jobs, grace)
    own = reclaims.windows(grace) if reclaims else {}
    again = reclaims.repeated(grace) if reclaims else {}
    starved: dict[str, float] = defaultdict(float)
    parts = dict.fromkeys(("own_grace", "repeated_grace", "any_grace"), 0.0)
    for s in starved_spans(jobs, nominal, start, end):
        starved[s.vc] += s.end - s.start
        parts["any_grace"] += _overlap(s.start, s.end, flight) / HOUR
        parts["own_grace"] += _overlap(s.start, s.end, own.get(s.vc, ())) / HOUR
        parts["repeated_grace"] += _overlap(s.start, s.end, again.get(s.vc, ())) / HOUR
    total = sum(starved.values()) / HOUR
    per_vc = {v: round(t / HOUR, 2) for v, t in sorted(starved.items()) if t > 0}
    return total, per_vc, parts


@dataclass
class Piece:
    """Starved time of one VC outside its own reclaims' grace, between two rounds."""

    vc: str
    start: float
    end: float
    cause: str  # "next round" (no round ran yet) or "plan: <why the fitting jobs waited>"
    detail: list[str] = field(default_factory=list)


def _stretches(spans: Sequence[Starved]) -> list[tuple[str, float, float, Starved]]:
    """Consecutive spans of one VC joined: (vc, start, end, the first span)."""
    out: list[tuple[str, float, float, Starved]] = []
    open_: dict[str, int] = {}
    for s in sorted(spans, key=lambda s: (s.start, s.vc)):
        i = open_.get(s.vc)
        if i is not None and out[i][2] == s.start:
            out[i] = (s.vc, out[i][1], s.end, out[i][3])
        else:
            open_[s.vc] = len(out)
            out.append((s.vc, s.start, s.end, s))
    return out


def _minus(a: float, b: float, windows: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """[a, b) without the sorted, disjoint windows."""
    out, at = [], a
    for lo, hi in windows:
        if hi <= at or lo >= b:
            continue
        if lo > at:
            out.append((at, lo))
        at = max(at, hi)
    if at < b:
        out.append((at, b))
    return out


def _shape(job: SimJob) -> str:
    return f"{job.workers}x{job.gpus_per_worker}"


def explain(
    jobs: Sequence[SimJob],
    spans: Sequence[Starved],
    rounds: Sequence[Round],
    reclaims: Reclaims,
    grace: float = GRACE,
) -> list[Piece]:
    """Every starved stretch outside the VC's own reclaims' grace, cut at the rounds: before
    a stretch's first round it waits for the round; after a round that did not place its
    fitting jobs nor reclaim for it, the plan's reasons say why."""
    by_key = {j.key: j for j in jobs}
    by_vc: dict[str, list[SimJob]] = defaultdict(list)
    for j in jobs:
        by_vc[j.namespace].append(j)
    times = [r.at for r in rounds]
    own = reclaims.windows(grace)
    changed: dict[float, list[str]] = defaultdict(list)  # time -> what jobs did then
    for j in jobs:
        changed[j.arrival].append(f"{j.key} {_shape(j)} arrives")
        for a, b in j.runs:
            changed[a].append(f"{j.key} {_shape(j)} starts")
            changed[b].append(f"{j.key} {_shape(j)} " + ("ends" if b == j.finished else "evicted"))
    pieces: list[Piece] = []
    for vc, a, b, first in _stretches(spans):
        for lo, hi in _minus(a, b, own.get(vc, [])):
            cuts = [lo] + [t for t in times[bisect.bisect_right(times, lo) :] if t < hi] + [hi]
            for x, y in itertools.pairwise(cuts):
                i = bisect.bisect_right(times, x) - 1  # the last round at or before x
                r = rounds[i] if i >= 0 and rounds[i].at == x else None
                if r is None:
                    piece = Piece(vc, x, y, "next round")
                    piece.detail = [f"  at start: {', '.join(changed.get(x, [])) or 'a pod gone'}"]
                    after = bisect.bisect_left(times, y)
                    if after < len(rounds):
                        piece.detail.append("  next round: " + _did(rounds[after], vc))
                    pieces.append(piece)
                    continue
                fit = [j for j in by_vc[vc] if j.gpus <= first.room and _waiting_at(j, x)]
                why = {j.key: _why(j.key, r) for j in fit}
                kinds = sorted({re.sub(r"\d+", "N", w)[:100] for w in why.values()})
                piece = Piece(vc, x, y, "plan: " + " | ".join(kinds))
                piece.detail = [f"  {j.key} {_shape(j)}: {why[j.key]}" for j in fit]
                piece.detail.append(
                    "  free: " + ", ".join(f"{n}={f}" for n, f in sorted(r.free.items()) if f)
                )
                for u, g in sorted(first.borrowed.items()):
                    mine = [
                        f"{k}({by_key[k].gpus}) on {','.join(sorted(set(ns)))}"
                        for k, ns in r.held.items()
                        if space_of(k) == u
                    ]
                    piece.detail.append(f"  {u} borrows {g}: " + "; ".join(mine))
                pieces.append(piece)
    return pieces


def _waiting_at(job: SimJob, at: float) -> bool:
    """Arrived, not finished, not running at `at` (as starved_spans counts it)."""
    if job.arrival > at or (job.finished is not None and job.finished <= at):
        return False
    return not any(a <= at < b for a, b in job.runs)


def _why(key: str, r: Round) -> str:
    if key in r.reasons:
        return r.reasons[key]
    if key in r.placed:
        return "placed by this round; its pods wait for GPUs a terminating pod holds"
    return "not in the plan's reasons (its pods still shutting down)"


def _did(r: Round, vc: str) -> str:
    """What a round did for a VC: the victims it evicted for it, its jobs it placed."""
    evicted = [f"{v} for {','.join(f)}" for v, f in r.evicted.items() if vc in map(space_of, f)]
    placed = sorted(k for k in r.placed if space_of(k) == vc)
    return (
        f"+{r.at:.0f} evicts [{'; '.join(evicted)}] places [{', '.join(placed)}]"
        f" (evicts {len(r.evicted)} in all)"
    )


def report(pieces: Sequence[Piece], start: float) -> list[str]:
    """Seconds per cause, then every piece of a plan's choice with its detail."""
    by_cause: Counter[str] = Counter()
    for p in pieces:
        by_cause[p.cause] += p.end - p.start
    lines = [f"{secs:9.1f} s  {cause}" for cause, secs in by_cause.most_common()]
    lines.append("")
    for p in pieces:
        head = f"{p.vc} +{p.start - start:.0f}s for {p.end - p.start:.1f}s: {p.cause}"
        lines += [head, *p.detail]
    return lines
