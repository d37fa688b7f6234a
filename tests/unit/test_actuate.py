"""The actuator against a fake API: per-job backoff, order, and no write once the lease is
lost (the API server is faked here only; tests/cluster covers the real one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpualloc.controller.actuate import Backoff, Outage, actuate
from gpualloc.controller.state import CreatePod, DeletePod, PatchJobStatus, PinPod, RecordEvent

pytestmark = pytest.mark.unit
Obj = dict[str, Any]


class Refused(Exception):
    """As the API server refuses a write: it answered (an HTTP status), unlike an outage."""

    status = 403


class FakeApi:
    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.sent: list[str] = []
        self.refuse = refuse

    def _write(self, what: str) -> str:
        if what in self.refuse:
            raise Refused(f"refused {what}")
        self.sent.append(what)
        return str(len(self.sent) + 100)

    def create_pod(self, pod: Obj) -> str | None:
        return self._write(f"create {pod['metadata']['name']}")

    def pin_pod(self, namespace: str, name: str, patch: list[Obj]) -> str | None:
        return self._write(f"pin {name}")

    def delete_pod(self, namespace: str, name: str, grace: int | None, evict: bool) -> bool:
        self._write(f"delete {name}")
        return True

    def create_service(self, service: Obj) -> str | None:
        return self._write(f"service {service['metadata']['name']}")

    def patch_job_status(self, kind: str, namespace: str, name: str, status: Obj) -> str | None:
        return self._write(f"status {name}")

    def record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        self._write(f"event {obj['metadata']['name']} {reason}")

    def patch_policy_status(self, name: str, status: Obj) -> None:
        self._write("policy")

    def map(self, fn: Callable[[Any], Any], items: list[Any], in_flight: int | None) -> Any:
        return [fn(i) for i in items]


def _pod(name: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "ns"}}


JOBS = {"ns/a": {"metadata": {"name": "a"}}, "ns/b": {"metadata": {"name": "b"}}}
WRITES = [
    DeletePod("ns/b", "ns", "b-worker-0"),
    PinPod("ns/a", "ns", "a-worker-0", ()),
    CreatePod("ns/a", _pod("a-worker-1"), placed=True),
    CreatePod("ns/b", _pod("b-worker-1"), placed=False),
    PatchJobStatus("ns/a", "LLMTrainingJob", "ns", "a", {}),
    RecordEvent("ns/a", JOBS["ns/a"], "Normal", "Allocated", "placed"),
]


def test_writes_go_in_order_and_their_versions_are_kept() -> None:
    api = FakeApi()
    acted = actuate(WRITES, api, Backoff(), JOBS)
    assert api.sent == [
        "delete b-worker-0",
        "pin a-worker-0",
        "create a-worker-1",
        "create b-worker-1",
        "status a",
        "event a Allocated",
    ]
    assert acted.placed == 2 and acted.created == 2
    assert acted.versions == {"Pod": 104, "LLMTrainingJob": 105}


def test_a_failing_write_backs_off_its_job_alone() -> None:
    now = [0.0]
    backoff = Backoff(clock=lambda: now[0])
    api = FakeApi(refuse={"create b-worker-1"})
    first = actuate(WRITES, api, backoff, JOBS)
    assert first.failed == 1
    assert "event b FailedCreatePod" in api.sent  # reported on the job
    assert backoff.errors["ns/b"] == "CreatePod 403: refused create b-worker-1"
    again = FakeApi()
    actuate(WRITES, again, backoff, JOBS)  # within the backoff: b's pod writes wait
    assert "delete b-worker-0" not in again.sent and "create b-worker-1" not in again.sent
    assert "pin a-worker-0" in again.sent  # a goes on
    now[0] = 10.0  # past the first backoff (1 s, jittered)
    later = FakeApi()
    actuate(WRITES, later, backoff, JOBS)
    assert "create b-worker-1" in later.sent
    assert "ns/b" not in backoff.errors


def test_no_write_once_the_lease_is_lost_even_mid_batch() -> None:
    api = FakeApi()
    allowed = iter([True, True, True])  # the batch check, then one write, then lost
    acted = actuate(WRITES, api, Backoff(), JOBS, may_write=lambda: next(allowed, False))
    assert api.sent == ["delete b-worker-0"]
    assert acted.stopped


def test_a_round_fails_as_a_whole_only_when_no_write_reaches_the_api_server() -> None:
    class Down(FakeApi):
        def _write(self, what: str) -> str:
            raise ConnectionError("connection refused")

    with pytest.raises(Outage):
        actuate(WRITES, Down(), Backoff(), JOBS)
