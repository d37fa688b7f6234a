"""What wakes the planning loop: the debounce (a burst is planned once, right after it ends)
and which pod changes count."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gpualloc.controller import handlers
from gpualloc.controller.handlers import Controller
from gpualloc.controller.podwatch import pod_fingerprint


def _controller(debounce: float) -> Controller:
    # _quiet touches neither the API nor the lease
    return Controller(cast(Any, None), cast(Any, None), debounce=debounce, resync=60)


def test_waits_until_the_burst_has_been_quiet_for_the_debounce() -> None:
    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        controller = _controller(0.2)

        async def burst() -> None:
            for i in range(6):  # one change every 50 ms, for 250 ms
                controller.poke(f"job/{i}", i)
                await asyncio.sleep(0.05)

        controller.poke("job/start", 0)
        task = asyncio.create_task(burst())
        await controller._quiet()
        returned = loop.time()
        await task
        return returned, controller.last_change

    returned, last_change = asyncio.run(scenario())
    assert returned >= last_change + 0.2


def test_plans_at_once_when_the_last_change_is_already_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def counting_sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(delay)

    async def scenario() -> None:
        controller = _controller(0.1)
        controller.poke("node/a", 1)
        await real_sleep(0.15)
        monkeypatch.setattr(handlers.asyncio, "sleep", counting_sleep)
        await controller._quiet()

    asyncio.run(scenario())
    assert sleeps == []


def test_unchanged_fingerprint_is_not_a_change() -> None:
    async def scenario() -> tuple[bool, bool]:
        controller = _controller(0.1)
        controller.poke("pod/a", ("node-1", None, False))
        controller.dirty.clear()
        controller.poke("pod/a", ("node-1", None, False))  # e.g. kwok marked it Running
        repeat = controller.dirty.is_set()
        controller.poke("pod/a", None)  # deleted
        return repeat, controller.dirty.is_set()

    repeat, deleted = asyncio.run(scenario())
    assert (repeat, deleted) == (False, True)


def test_a_pod_matters_when_bound_finished_or_deleted_not_when_merely_running() -> None:
    pending = {"metadata": {"name": "p"}, "spec": {}, "status": {"phase": "Pending"}}
    bound = {**pending, "spec": {"nodeName": "gpu-1"}}
    running = {**bound, "status": {"phase": "Running"}}
    failed = {**bound, "status": {"phase": "Failed"}}
    prints = [pod_fingerprint("MODIFIED", p) for p in (pending, bound, running, failed)]
    assert prints[0] != prints[1]  # bound: capacity taken
    assert prints[1] == prints[2]  # kwok/kubelet marked it Running: no news
    assert prints[2] != prints[3]  # failed: capacity back
    assert pod_fingerprint("DELETED", running) is None


def test_only_gpualloc_pods_and_pods_asking_for_gpus_wake_the_loop() -> None:
    from gpualloc.controller.podwatch import matters

    web = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w"}]}}
    ours = {"metadata": {"labels": {"gpualloc.io/job": "llama"}}, "spec": {}}
    gpu = {
        "metadata": {},
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }
    assert [matters(p) for p in (web, ours, gpu)] == [False, True, True]


def test_the_slim_pod_keeps_what_the_planner_reads() -> None:
    """The pod store keeps only what planning reads; its start time is among it (victims
    are the newest, lost work is counted from it): without it every pod looked unstarted."""
    from gpualloc.controller.podwatch import slim_pod
    from gpualloc.k8s.convert import pod_from_k8s

    pod = {
        "metadata": {"name": "w-0", "namespace": "t", "labels": {"gpualloc.io/job": "w"}},
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "4"}}}],
        },
        "status": {"phase": "Running", "startTime": "2026-11-30T09:00:00Z"},
    }
    full, slim = pod_from_k8s(pod), pod_from_k8s(slim_pod(pod))
    assert full is not None and full.started > 0
    assert slim == full
