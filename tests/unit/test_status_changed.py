"""status_changed compares in place what its definition compares on copies: every field, and
every condition's field but lastTransitionTime (controller/status.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gpualloc.controller.status import status_changed

pytestmark = pytest.mark.unit
Obj = dict[str, Any]


def _by_definition(old: Obj, new: Obj) -> bool:
    def strip(s: Obj) -> Obj:
        conds = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in s.get("conditions") or []
        ]
        return {**s, "conditions": conds}

    return strip(old or {}) != strip(new)


def _status(rng: random.Random) -> Obj:
    status: Obj = {}
    for key in ("phase", "message", "gpus", "placed"):
        if rng.random() < 0.8:
            status[key] = rng.choice(["a", "b", 0, 1])
    if rng.random() < 0.8:
        status["conditions"] = [
            {
                k: rng.choice(["True", "False", "x"])
                for k in ("type", "status", "reason", "lastTransitionTime", "message")
                if rng.random() < 0.85
            }
            for _ in range(rng.randint(0, 3))
        ]
    return status


def test_same_answer_as_the_definition_on_random_statuses() -> None:
    rng = random.Random(3)
    seen = {True: 0, False: 0}
    for _ in range(20_000):
        old = _status(rng)
        # a near copy half the time: equal but for timestamps, or one field off
        new = _status(rng) if rng.random() < 0.5 else _near_copy(old, rng)
        expected = _by_definition(old, new)
        assert status_changed(old, new) == expected, (old, new)
        seen[expected] += 1
    assert min(seen.values()) > 1000


def _near_copy(old: Obj, rng: random.Random) -> Obj:
    new = {**old, "conditions": [dict(c) for c in old.get("conditions") or []]}
    for c in new["conditions"]:
        if rng.random() < 0.5:
            c["lastTransitionTime"] = "later"
    roll = rng.random()
    if roll < 0.2:
        new["phase"] = "changed"
    elif roll < 0.3 and new["conditions"]:
        new["conditions"][0].pop(rng.choice(list(new["conditions"][0])), None)
    elif roll < 0.4:
        new.pop("conditions")
    return new


def test_an_empty_old_status_counts_as_no_status() -> None:
    assert not status_changed({}, {"conditions": []})
    assert status_changed({}, {"phase": "Pending"})
